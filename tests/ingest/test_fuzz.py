"""No body, however malformed, makes ingest answer 5xx, and a refused request stores nothing.

One server per backend serves every example of a test module run: starting a server per
example would spend the time on startup instead of on inputs. Examples stay independent
because each checks only the difference it made to the event count.
"""

from __future__ import annotations

import gzip
import json
from datetime import timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from nudgeflow.store.schema import events
from nudgeflow.store.workspaces import NewWorkspace
from tests.support import LiveServer

FUZZ = settings(
    max_examples=150,
    deadline=None,
    # Building nested JSON examples can be slow; that is the strategy, not the server.
    suppress_health_check=[HealthCheck.too_slow],
)


# -- strategies -------------------------------------------------------------------------
#
# Wholly random JSON is refused at the first check, so most examples are Segment messages
# that are valid but for at most a couple of mutations (a field set to something wild, or
# removed): that is what reaches normalization, identity resolution and the database.

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: beyond 64 bits too
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.text(st.characters(codec="utf-8", min_codepoint=0, max_codepoint=0x1F), max_size=3),  # control chars, NUL
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


# Values known to trouble a JSON or SQL layer somewhere: integers past 64 bits, nesting
# past encoder limits, NUL and lone surrogates, non-finite floats, oversized strings.
hazards = st.one_of(
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.integers(min_value=-(2**64) - 2, max_value=-(2**63) + 2),
    st.integers(min_value=100, max_value=900).map(nested),
    st.sampled_from(["\x00", "u\x00", "\ud800", "\udfff", float("nan"), float("inf"), "x" * 40_000, "é" * 513]),
)
wild = st.one_of(json_values, hazards)


def rarely(usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # Not st.one_of(usual, other): one_of flattens `other` into its many branches and
    # would draw from it far more often than from `usual`.
    return st.integers(min_value=0, max_value=9).flatmap(lambda i: other if i == 0 else usual)


TYPES = ["track", "identify", "page", "screen", "group", "alias"]
FIELDS = [
    "type",
    "userId",
    "anonymousId",
    "messageId",
    "event",
    "name",
    "previousId",
    "groupId",
    "traits",
    "properties",
    "context",
    "integrations",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "writeKey",
]
# A few ids repeat often, so identity resolution (merges, adoption) gets exercised too.
id_pool = st.one_of(st.sampled_from(["u1", "u2", "a1", "a2"]), st.text(min_size=1, max_size=12), st.integers())
offsets = st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)).map(
    lambda d: timezone(timedelta(minutes=d // timedelta(minutes=1)))
)
# Any date-time with any offset, year 1 and 9999 included (where UTC conversion overflows).
times = st.one_of(
    st.datetimes(timezones=offsets).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.integers(min_value=0, max_value=2 * 10**12),
)
trait_values = st.one_of(
    st.sampled_from(
        ["Europe/Paris", "Mars/Olympus", "ada@example.com", "+33 6 12 34 56 78", "en-US", "2024-01-01T00:00:00Z"]
    ),
    scalars,
)
traits = st.dictionaries(
    st.sampled_from(
        [
            "email",
            "phone",
            "first_name",
            "firstName",
            "last_name",
            "timezone",
            "locale",
            "created_at",
            "createdAt",
            "plan",
        ]
    ),
    trait_values,
    max_size=5,
)
objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    type_ = draw(st.sampled_from(TYPES))
    message: dict[str, Any] = {"type": type_}
    who = draw(st.sampled_from(["user", "anonymous", "both"]))
    if who != "anonymous":
        message["userId"] = draw(id_pool)
    if who != "user":
        message["anonymousId"] = draw(id_pool)
    if type_ == "track":
        message["event"] = draw(st.one_of(st.sampled_from(["Product Viewed", "Order Completed"]), st.text(min_size=1)))
    elif type_ in ("page", "screen") and draw(st.booleans()):
        message["name"] = draw(st.text(max_size=20))
    elif type_ == "group":
        message["groupId"] = draw(st.text(min_size=1, max_size=12))
    elif type_ == "alias":
        message["userId"] = draw(id_pool)
        message["previousId"] = draw(id_pool)
    if type_ in ("identify", "group") and draw(st.booleans()):
        message["traits"] = draw(traits)
    for key, values in (
        ("messageId", st.one_of(st.sampled_from(["m1", "m2", "m3"]), st.uuids().map(str))),
        ("properties", objects),
        ("context", objects),
        ("timestamp", times),
        ("originalTimestamp", times),
        ("sentAt", times),
    ):
        if draw(st.booleans()):
            message[key] = draw(values)
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        key = draw(st.sampled_from(FIELDS))
        if draw(st.booleans()):
            message.pop(key, None)
        else:
            message[key] = draw(wild)
    return message


batches = st.fixed_dictionaries(
    {"batch": rarely(st.lists(messages(), min_size=1, max_size=5), st.one_of(st.lists(messages(), max_size=2), wild))},
    optional={"sentAt": rarely(times, wild), "context": rarely(objects, wild), "writeKey": wild, "extra": wild},
)


def encode(value: Any) -> bytes:
    # Python's encoder writes NaN and Infinity, which strict JSON parsers must refuse.
    return json.dumps(value, allow_nan=True).encode()


def stored(server: LiveServer, workspace_id: str) -> int:
    with server.state.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(events).where(events.c.workspace_id == workspace_id)
            ).scalar_one()
        )


def check(server: LiveServer, ws: NewWorkspace, path: str, body: bytes, headers: dict[str, str] | None = None) -> None:
    before = stored(server, ws.workspace_id)
    with server.client(auth=(ws.write_key, "")) as client:
        response = client.post(path, content=body, headers={"content-type": "application/json", **(headers or {})})
    assert response.status_code < 500, (response.status_code, response.text)
    answer = response.json()
    if response.status_code == 200:
        assert answer["success"] is True
        return
    assert 400 <= response.status_code < 500
    assert answer["success"] is False and answer["code"] and answer["message"]
    assert answer["errors"] and all(e["field"] for e in answer["errors"])
    assert stored(server, ws.workspace_id) == before, "a refused request stored something"


# -- tests ------------------------------------------------------------------------------


@FUZZ
@given(body=rarely(batches, wild))
def test_any_json_body_to_batch_is_never_a_5xx(fuzz_server: tuple[LiveServer, NewWorkspace], body: Any) -> None:
    check(*fuzz_server, "/v1/batch", encode(body))


@FUZZ
@given(body=rarely(messages(), wild), path=st.sampled_from([f"/v1/{t}" for t in TYPES]))
def test_any_json_body_to_a_single_call_is_never_a_5xx(
    fuzz_server: tuple[LiveServer, NewWorkspace], body: Any, path: str
) -> None:
    check(*fuzz_server, path, encode(body))


@FUZZ
@given(
    body=st.binary(max_size=300),
    path=st.sampled_from(["/v1/batch", "/v1/track", "/v1/identify"]),
    zipped=st.sampled_from(["no", "header only", "compressed"]),
)
def test_any_bytes_are_never_a_5xx(
    fuzz_server: tuple[LiveServer, NewWorkspace], body: bytes, path: str, zipped: str
) -> None:
    headers = {} if zipped == "no" else {"content-encoding": "gzip"}
    check(*fuzz_server, path, gzip.compress(body) if zipped == "compressed" else body, headers)


@FUZZ
@given(body=batches)
def test_any_gzipped_batch_is_never_a_5xx(fuzz_server: tuple[LiveServer, NewWorkspace], body: Any) -> None:
    check(*fuzz_server, "/v1/batch", gzip.compress(encode(body)), {"content-encoding": "gzip"})
