"""A webhook step's request, rendered: its URL (when the step gives one) and its JSON body.

The Liquid context is an email's or a push message's (content/context.py: profile, event,
journey, run, cart, recommendations, …), plus `message` (`message.key`, the idempotency
key the request also carries in its headers, and `message.step`).

The body is JSON, written one of two ways in the step (`webhook.body`):

- an object or a list: every string in it, at any depth, is Liquid and renders to a
  string; a string that is one output tag and nothing else (`"{{ event.properties.total }}"`)
  keeps its value's JSON type, so a number stays a number and a list a list. Keys are
  literal. The result is JSON by construction;
- a string: one Liquid template whose output must parse as JSON (`{{ value | json }}` writes
  a value as JSON). Output that does not parse is a RenderError that says where and why.

Parts are compiled once per step definition (the journey version is immutable) and
rendered per message, with the render budget and limits of any template. Any failure is a
RenderError naming the part (`webhook.url`, `webhook.body`, `webhook.body.items.0.name`):
no request is sent half-rendered.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import Engine

from nudgeflow.content.context import build_context
from nudgeflow.content.errors import RenderError
from nudgeflow.content.templates import TemplateError, TextParts, compile_texts
from nudgeflow.model.journeys import WebhookCall
from nudgeflow.model.outbound import OutboundMessage

MAX_BODY_BYTES = 256 * 1024  # a request body past this is refused (Standard Webhooks: keep them small)
# One output tag and nothing else: its value keeps its JSON type.
_ONE_OUTPUT = re.compile(r"^\s*\{\{-?(?P<expr>(?:(?!\}\}|\{\{|\{%).)*?)-?\}\}\s*$", re.DOTALL)
_ENDS_IN_JSON = re.compile(r"\|\s*json\s*$")
_LIQUID = re.compile(r"\{\{|\{%")
URL_PART = "webhook.url"
BODY_PART = "webhook.body"


@dataclass(frozen=True)
class RenderedWebhook:
    url: str | None  # the step's URL rendered; None when the step names a destination
    body: bytes  # compact JSON, exactly the bytes signed and sent


@dataclass(frozen=True)
class CompiledCall:
    texts: TextParts
    typed: frozenset[str]  # parts rendered as `{{ … | json }}`, parsed back to a value
    body: Any  # the body as written, for the shape to fill in
    body_is_template: bool


def _walk(value: Any, path: str, out: dict[str, str], typed: set[str]) -> None:
    if isinstance(value, str):
        if not _LIQUID.search(value):
            return
        one = _ONE_OUTPUT.match(value)
        if one is not None:
            expr = one.group("expr").strip()
            out[path] = "{{ " + (expr if _ENDS_IN_JSON.search(expr) else f"{expr} | json") + " }}"
            typed.add(path)
        else:
            out[path] = value
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(item, f"{path}.{key}", out, typed)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, f"{path}.{i}", out, typed)


@functools.lru_cache(maxsize=512)
def _compile(spec: str) -> CompiledCall:
    call = orjson.loads(spec)
    texts: dict[str, str] = {}
    typed: set[str] = set()
    if call.get("url") and _LIQUID.search(call["url"]):
        texts[URL_PART] = call["url"]
    body = call["body"]
    if isinstance(body, str):
        texts[BODY_PART] = body
    else:
        _walk(body, BODY_PART, texts, typed)
    try:
        parts = compile_texts(texts)
    except TemplateError as exc:
        raise RenderError(f"{exc}") from exc
    return CompiledCall(parts, frozenset(typed), body, isinstance(body, str))


def compile_call(call: WebhookCall) -> CompiledCall:
    """The step's Liquid, parsed once per distinct definition (RenderError for a syntax error)."""
    return _compile(orjson.dumps(call.model_dump(mode="json")).decode())


def _fill(value: Any, path: str, out: dict[str, str], typed: frozenset[str]) -> Any:
    if isinstance(value, str):
        if path not in out:
            return value
        if path in typed:
            try:
                return orjson.loads(out[path])
            except orjson.JSONDecodeError:  # the json filter always writes JSON; a guard all the same
                raise RenderError(f"{path}: the value is not JSON: {out[path][:80]!r}") from None
        return out[path]
    if isinstance(value, dict):
        return {key: _fill(item, f"{path}.{key}", out, typed) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, f"{path}.{i}", out, typed) for i, item in enumerate(value)]
    return value


def _not_json(text: str, exc: orjson.JSONDecodeError) -> RenderError:
    pos = max(0, min(exc.pos, len(text)))
    near = text[max(0, pos - 30) : pos + 30].replace("\n", " ")
    return RenderError(
        f"{BODY_PART}: the rendered text is not JSON ({exc.msg}) at line {exc.lineno}, column {exc.colno}: "
        f"…{near}… (write values with the json filter: {{{{ value | json }}}})"
    )


def render_call(compiled: CompiledCall, context: dict[str, Any], original_url: str | None) -> RenderedWebhook:
    """The request for one person's context; RenderError says what cannot be rendered."""
    try:
        out = compiled.texts.render(context)
    except TemplateError as exc:
        raise RenderError(str(exc)) from exc
    url = original_url
    if URL_PART in out:
        url = _checked_url(out[URL_PART], original_url or "")
    if compiled.body_is_template:
        text = out[BODY_PART]
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise _not_json(text, exc) from None
    else:
        value = _fill(compiled.body, BODY_PART, out, compiled.typed)
    body = orjson.dumps(value, default=str)
    if len(body) > MAX_BODY_BYTES:
        raise RenderError(f"{BODY_PART}: the rendered body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    return RenderedWebhook(url, body)


def _checked_url(rendered: str, written: str) -> str:
    """The rendered URL, which must keep the origin written in the step: the person's data
    may choose the path and query, never the host (model/webhooks.check_url already refused
    Liquid before the path; this refuses a value that smuggles one in, e.g. `@` or `//`)."""
    url = rendered.strip()
    marker = _LIQUID.search(written)
    fixed = urlsplit(written[: marker.start()] if marker is not None else written)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RenderError(f"{URL_PART}: the rendered URL is not a URL ({exc})") from None
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise RenderError(f"{URL_PART}: the rendered URL holds a space or control character (use `| url_encode`)")
    if (parts.scheme.lower(), parts.hostname, port, parts.username) != (
        fixed.scheme.lower(),
        fixed.hostname,
        fixed.port,
        None,
    ):
        raise RenderError(f"{URL_PART}: the rendered URL leaves the origin the step names ({rendered[:200]!r})")
    if parts.fragment:
        raise RenderError(f"{URL_PART}: the rendered URL has a fragment (use `| url_encode`)")
    return url


def render_webhook(engine: Engine, message: OutboundMessage, call: WebhookCall, now_ms: int) -> RenderedWebhook:
    """Render `call` for the message's person (RenderError when it cannot be)."""
    if engine is None:
        raise RenderError("no database to render the webhook from")
    compiled = compile_call(call)
    with engine.connect() as conn:
        context = build_context(conn, message.workspace_id, message.profile_id, message.context, now_ms)
    context["message"] = {"key": message.key, "step": message.step}
    return render_call(compiled, context, call.url)
