"""No request to any operation of the OpenAPI document answers 5xx, on SQLite and PostgreSQL.

Schemathesis generates requests for every operation of /openapi.json — valid ones and ones
that break the schema (wrong types, missing fields, out-of-range numbers, NUL and control
characters, deep nesting) — and sends them to a real server on loopback with a workspace's
credentials: its write key (HTTP Basic) on the ingest routes, its admin token (Bearer) on
/api. The promises checked: the README's, bad input gets a 4xx naming what is wrong, never a
5xx; and the document's, every answer has a status code, content type and body the document
gives for that operation (schemathesis' conformance checks). Three sources of requests per
operation: schemathesis' coverage phase (boundary and invalid values, deterministic), a
hazard per path and query parameter (NUL, integers past 32 and 64 bits), and a few fuzzed
examples, derandomized: a run is the same run every time, about 3,000 requests per backend.
A longer exploration is `schemathesis run` against `nudgeflow serve` (the commit adding this
module says how it was run and what it found).

The server's own routes not in the document (/sdk, /t, the dev inbox) have their tests.
"""

from __future__ import annotations

from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.generation.hypothesis.builder import HypothesisTestConfig, HypothesisTestMode, create_test
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from nudgeflow.store.workspaces import NewWorkspace
from tests.support import LiveServer

CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 10  # drawn per operation, valid and invalid, after the coverage phase's cases

FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same examples on every run: CI is reproducible
    database=None,  # no example database: nothing carried over from an earlier run
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # a failure is reported as found, not shrunk (bounded time)
    suppress_health_check=list(HealthCheck),  # schema-driven strategies filter and build large bodies
)


def _credentials(path: str, ws: NewWorkspace) -> dict[str, Any]:
    """The workspace's own credentials, so requests get past auth to the code behind it."""
    if path.startswith("/api/"):
        return {"headers": {"Authorization": f"Bearer {ws.admin_token}"}}
    if path.startswith("/v1/"):
        return {"auth": (ws.write_key, "")}
    return {}  # webhooks carry their provider's signature; the rest is public


# Values the coverage phase does not try and that reached the database before: a NUL
# (PostgreSQL text cannot hold one) and integers beyond 32 and 64 bits.
TEXT_HAZARDS = ["a\x00b"]
INTEGER_HAZARDS = [2**31, 2**63, -(2**63) - 1, 10**20]


def _hazards(operation: Any) -> list[dict[str, Any]]:
    """For each path and query parameter, the overrides that set it to each hazard."""
    out: list[dict[str, Any]] = []
    for parameter in operation.definition.raw.get("parameters", []):
        where = {"path": "path_parameters", "query": "query"}.get(parameter.get("in"))
        if where is None:
            continue
        schema = parameter.get("schema", {})
        types = {s.get("type") for s in schema.get("anyOf", [schema])}
        values = (INTEGER_HAZARDS if "integer" in types else []) + (TEXT_HAZARDS if "string" in types else [])
        out += [{where: {parameter["name"]: value}} for value in values]
    return out


def _fuzz(operation: Any, session: requests.Session, base_url: str, credentials: dict[str, Any]) -> list[str]:
    """Every 5xx this operation answers, and every answer the document does not describe,
    as a reproducible line each.

    The hazards first, then two of schemathesis' phases, as its pytest plugin runs them
    (create_test: the plugin's builder, used directly because the schema comes from a
    server a fixture starts): coverage (deterministic boundary and invalid values of each
    parameter and field: the edges of a range, wrong types, missing fields) and fuzzing
    (EXAMPLES drawn from the schemas, valid and invalid, derandomized).
    """
    found: list[str] = []

    def check(case: Any) -> None:
        response = case.call(base_url=base_url, session=session, timeout=30, **credentials)
        # The curl lines have no credentials: they were given to call(), not to the case.
        if response.status_code >= 500:
            found.append(f"{response.status_code} {case.as_curl_command(base_url=base_url)}\n    {response.text[:300]}")
            return
        try:
            case.validate_response(response, checks=CONFORMANCE)
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' failure, or its FailureGroup of them
            reason = " ".join(str(exc).split())[:300]
            found.append(
                f"{response.status_code} not as documented: {case.as_curl_command(base_url=base_url)}\n    {reason}"
            )

    for override in _hazards(operation):
        # One case per hazard: the rest of the request drawn from the schema, derandomized.
        @settings(FUZZ, max_examples=1, phases=[Phase.generate])
        @given(case=operation.as_strategy(**override))
        def hazard(case: Any) -> None:
            check(case)

        hazard()

    test = create_test(
        operation=operation,
        test_func=check,
        config=HypothesisTestConfig(
            project=operation.schema.config,
            modes=[HypothesisTestMode.COVERAGE, HypothesisTestMode.FUZZING],
            settings=FUZZ,
        ),
    )
    test()
    return found


def test_no_request_to_any_documented_operation_answers_5xx_or_undocumented(
    fuzz_server: tuple[LiveServer, NewWorkspace],
) -> None:
    server, ws = fuzz_server
    with requests.Session() as session:
        document = session.get(f"{server.url}/openapi.json", timeout=30)
        assert document.status_code == 200
        schema = schemathesis.openapi.from_dict(document.json())
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) > 40  # the whole document: ingest, admin, journeys, catalog, webhooks…
        failures: list[str] = []
        for operation in operations:
            failures += _fuzz(operation, session, server.url, _credentials(operation.path, ws))
    assert not failures, f"{len(failures)} requests answered 5xx or not as documented:\n" + "\n".join(failures)
