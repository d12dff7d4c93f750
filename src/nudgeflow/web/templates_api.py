"""The admin API for templates: the same format as `nudgeflow templates …` and NAME.yaml files.

    GET  /api/templates                      the workspace's templates
    PUT  /api/templates/{name}               save a new version (JSON, or YAML with
                                             Content-Type: application/yaml); 422 with the
                                             error's part, line and column
    GET  /api/templates/{name}[?version=N]   one version's source (the current by default)
    POST /api/templates/{name}/render        render: {"sample": true}, {"profile": "id"},
                                             or {"context": {...}}; optional "version".
                                             In a worker thread, within the render budget
                                             (content/templates.py): a slow template never
                                             holds the event loop
    POST /api/templates/{name}/preview       render an unsaved source: {"source": {...}} and
                                             sample / profile (id, userId, anonymousId or
                                             email) / context, as for render; a push
                                             template's answer has each service's payload
                                             size (`payload`). The console's live preview
    POST /api/templates/{name}/test-send     send a template's version: an email to an address
                                             ("to") or a person ("profile"), with the sample
                                             context or that person's; a push to a person's
                                             push targets, with their context
                                             (web/template_test_send.py)

Writes go through the group committer, like every other write of the server.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from nudgeflow.content import compiled_templates
from nudgeflow.content.rendered import RenderedPush
from nudgeflow.content.sample import sample_context
from nudgeflow.content.templates import RenderedEmail, TemplateError, compile_template, parse_source, render
from nudgeflow.core.clock import to_ms
from nudgeflow.model import yaml_limits
from nudgeflow.model.iso_time import iso
from nudgeflow.store import templates as store
from nudgeflow.store.group_commit import WriterStopped
from nudgeflow.store.push_targets import targets_of
from nudgeflow.web.admin import INT32_MAX, Workspace
from nudgeflow.web.person_refs import person_id
from nudgeflow.web.state import State
from nudgeflow.web.template_preview import push_sizes, report_base
from nudgeflow.web.template_test_send import TestSendFailed, send_push_test, send_test

MAX_TEMPLATE_BYTES = 512 * 1024
EMAIL_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def _view(found: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in found.items() if not k.endswith("_at_ms") and k != "versions"}
    for key in ("created_at_ms", "updated_at_ms", "version_created_at_ms"):
        if key in found:
            out[key.removesuffix("_ms")] = iso(found[key], milliseconds=False)
    if "versions" in found:
        out["versions"] = [
            {"version": v["version"], "created_at": iso(v["created_at_ms"], milliseconds=False)}
            for v in found["versions"]
        ]
    return out


def _template_error(exc: TemplateError, status: int = 422) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "error": exc.as_dict()}, status)


def rendered_view(result: Any) -> dict[str, Any]:
    if isinstance(result, RenderedEmail):
        return {
            "channel": "email",
            "subject": result.subject,
            "preheader": result.preheader,
            "html": result.html,
            "text": result.text,
            "topic": result.topic,
        }
    return {
        "channel": "push",
        "title": result.title,
        "body": result.body,
        "image": result.image,
        "url": result.url,
        "data": result.data,
    }


async def _body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_TEMPLATE_BYTES:
        raise TemplateError(f"a template is at most {MAX_TEMPLATE_BYTES} bytes")
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8")
        if content_type in YAML_TYPES:
            # Aliases held to a budget (a few can stand for billions); in a worker thread, as
            # half a megabyte of YAML takes seconds to read, which the event loop would wait out.
            return await run_in_threadpool(yaml_limits.safe_load, text)
        import orjson

        return orjson.loads(text) if text.strip() else None
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:  # DocumentError is a ValueError
        raise TemplateError(
            f"the body is not valid {'YAML' if content_type in YAML_TYPES else 'JSON'}: {exc}"
        ) from None
    except RecursionError as exc:  # YAML nested deeper than the parser's stack: was a 500
        raise TemplateError("the body is not valid YAML: nested too deeply") from exc


def templates_router() -> APIRouter:
    router = APIRouter(prefix="/api/templates", tags=["templates"])

    @router.get("", summary="The workspace's templates")
    def list_templates(state: State, workspace_id: Workspace) -> dict[str, Any]:
        with state.engine.connect() as conn:
            found = store.list_templates(conn, workspace_id)
        return {"templates": [_view(t) for t in found]}

    @router.get("/{name}", summary="One version of a template (the current one by default)")
    def get_template(
        state: State, name: str, workspace_id: Workspace, version: int | None = Query(None, ge=1, le=INT32_MAX)
    ) -> Any:
        with state.engine.connect() as conn:
            found = store.get_template(conn, workspace_id, name, version)
        if found is None:
            what = f"no template {name!r}" if version is None else f"no version {version} of template {name!r}"
            return JSONResponse({"detail": what + " in this workspace"}, 404)
        return _view(found)

    @router.put("/{name}", summary="Save a template (JSON or YAML body): a new version when it changed")
    async def put_template(request: Request, state: State, name: str, workspace_id: Workspace) -> Any:
        """201 with the first version, 200 after (`new_version` false when the source is
        identical to the current version). 422 with `error` {message, part, line, column}
        when the template does not compile: nothing is stored."""
        try:
            doc = await _body(request)
            if not isinstance(doc, dict):
                raise TemplateError("send the template as an object of its fields (subject, body, …)")
            store.check_name(name)
            source = parse_source(doc)
        except TemplateError as exc:
            return _template_error(exc)
        except store.TemplateStoreError as exc:
            return JSONResponse({"detail": str(exc)}, 422)
        now = to_ms(state.clock.now())

        def save(conn: Connection) -> tuple[int, bool]:
            return compiled_templates.save_template(conn, workspace_id, name, source, now)

        try:
            version, new = await state.committer.run_job(save)
        except TemplateError as exc:
            return _template_error(exc)
        except store.TemplateStoreError as exc:
            return JSONResponse({"detail": str(exc)}, 409 if "needs another name" in str(exc) else 422)
        except WriterStopped:
            return JSONResponse({"detail": "the server is shutting down; try again"}, 503)
        return JSONResponse(
            {"name": name, "version": version, "new_version": new}, 201 if new and version == 1 else 200
        )

    @router.post("/{name}/render", summary="Render a template with the sample context, a profile, or a context")
    async def render_template(request: Request, state: State, name: str, workspace_id: Workspace) -> Any:
        """Body: {"sample": true}, {"profile": "ID, userId or anonymousId"} or
        {"context": {...}}, with an optional "version". 422 with `error` when rendering
        fails (a missing variable: its part, line and column)."""
        try:
            body = await _body(request) or {}
        except TemplateError as exc:
            return _template_error(exc, 400)
        if not isinstance(body, dict):
            return JSONResponse(
                {"detail": 'send an object: {"sample": true}, {"profile": id} or {"context": {…}}'}, 400
            )
        version = body.get("version")
        if version is not None and (not isinstance(version, int) or version < 1):
            return JSONResponse({"detail": "version: a positive integer"}, 400)
        now = to_ms(state.clock.now())
        engine = state.engine

        def read() -> tuple[Any, Any, str] | None:
            with engine.connect() as conn:
                compiled = compiled_templates.load_compiled(conn, workspace_id, name, version)
                if body.get("profile") is not None:
                    return (
                        compiled,
                        compiled_templates.preview_context(conn, workspace_id, str(body["profile"]), now),
                        "profile",
                    )
                if isinstance(body.get("context"), dict):
                    return compiled, body["context"], "context"
                if body.get("sample") or not body:
                    return compiled, sample_context(), "sample"
                return None

        try:
            found = await run_in_threadpool(read)
        except store.TemplateNotFound as exc:
            return JSONResponse({"detail": str(exc)}, 404)
        if found is None:
            return JSONResponse({"detail": "say what to render with: sample, profile or context"}, 400)
        compiled, context, used = found
        try:
            # Off the event loop: python-liquid is CPU-bound and the budget only bounds it.
            result = await run_in_threadpool(render, compiled, context)
        except TemplateError as exc:
            return _template_error(exc)
        return {"name": name, "context": used, **rendered_view(result)}

    @router.post("/{name}/preview", summary="Render an unsaved source (the console's live preview)")
    async def preview_template(request: Request, state: State, name: str, workspace_id: Workspace) -> Any:
        """Body: {"source": {the template's fields}} with "sample": true, "profile": a
        person (id, userId, anonymousId or email) or "context": {...}. 422 with `error`
        {message, part, line, column} when the source does not compile or render; nothing
        is stored. A push template's answer adds `payload`: each service's size and limit."""
        try:
            body = await _body(request) or {}
        except TemplateError as exc:
            return _template_error(exc, 400)
        if not isinstance(body, dict) or not isinstance(body.get("source"), dict):
            return JSONResponse({"detail": 'send {"source": {the template\'s fields}, "sample": true}'}, 400)
        try:
            store.check_name(name)
            source = parse_source(body["source"])
        except TemplateError as exc:
            return _template_error(exc)
        except store.TemplateStoreError as exc:
            return JSONResponse({"detail": str(exc)}, 422)
        now = to_ms(state.clock.now())
        engine = state.engine
        ref = body.get("profile")

        def read() -> tuple[Any, str, str, str] | None:
            with engine.connect() as conn:
                base = report_base(conn, workspace_id) if source.channel == "push" else ""
                if ref is not None:
                    pid = person_id(conn, workspace_id, str(ref))
                    if pid is None:
                        return None
                    return compiled_templates.preview_context(conn, workspace_id, pid, now), "profile", pid, base
            if isinstance(body.get("context"), dict):
                return body["context"], "context", "preview", base
            return sample_context(), "sample", "preview", base

        found = await run_in_threadpool(read)
        if found is None:
            return JSONResponse({"detail": f"no person {ref!r} in this workspace"}, 404)
        context, used, pid, base = found

        def build() -> Any:
            return render(compile_template(source), context)

        try:
            # Off the event loop, as render is: compiling and rendering are CPU-bound.
            result = await run_in_threadpool(build)
        except TemplateError as exc:
            return _template_error(exc)
        out = {"name": name, "context": used, **rendered_view(result)}
        if isinstance(result, RenderedPush):
            out["icon"] = result.icon
            out["actions"] = list(result.actions)
            out["payload"] = push_sizes(result, workspace_id, name, pid, base, now)
        return out

    @router.post("/{name}/test-send", summary="Send a test of a template to an address or a person")
    async def test_send(request: Request, state: State, name: str, workspace_id: Workspace) -> Any:
        """Body: {"to": "address"} and/or {"profile": id, userId, anonymousId or email},
        optional "version". Email: with a person, their context renders it (and it goes to
        their email unless "to" says otherwise); else the sample context. 200 with `to` and
        `key` once the SMTP server took it; 409 without SMTP settings; 502 when the server
        refused. Push: "profile" is required; it goes to each of their push targets, and 200
        has `targets`: each one's result (sent, gone, failed, not configured), 502 when none
        took it, 409 when they have none."""
        try:
            body = await _body(request) or {}
        except TemplateError as exc:
            return _template_error(exc, 400)
        if not isinstance(body, dict):
            return JSONResponse({"detail": 'send {"to": address} or {"profile": person}'}, 400)
        to, ref, version = body.get("to"), body.get("profile"), body.get("version")
        if to is not None and (not isinstance(to, str) or not EMAIL_ADDRESS.match(to.strip())):
            return JSONResponse({"detail": "to: an email address"}, 422)
        if to is None and ref is None:
            return JSONResponse({"detail": 'say who to send it to: "to" (an address) or "profile" (a person)'}, 422)
        if version is not None and (not isinstance(version, int) or version < 1):
            return JSONResponse({"detail": "version: a positive integer"}, 400)
        now = to_ms(state.clock.now())
        engine = state.engine

        def read() -> tuple[Any, Any, str | None, str | None]:
            with engine.connect() as conn:
                compiled = compiled_templates.load_compiled(conn, workspace_id, name, version)
                if ref is None:
                    return compiled, sample_context(), None, None
                pid = person_id(conn, workspace_id, str(ref))
                if pid is None:
                    raise store.TemplateNotFound(f"no person {ref!r} in this workspace")
                context = compiled_templates.preview_context(conn, workspace_id, pid, now)
                profile = context.get("profile")
                email = profile.get("email") if isinstance(profile, dict) else None
                return compiled, context, pid, email if isinstance(email, str) else None

        try:
            compiled, context, pid, their_email = await run_in_threadpool(read)
        except store.TemplateNotFound as exc:
            return JSONResponse({"detail": str(exc)}, 404)
        if compiled.channel == "push":
            return await _push_test(state, workspace_id, name, compiled, context, pid, to)
        address = (to or their_email or "").strip()
        if not EMAIL_ADDRESS.match(address):
            return JSONResponse({"detail": f"the person {ref!r} has no email address: say where to send it (to)"}, 422)
        try:
            result = await run_in_threadpool(render, compiled, context)
        except TemplateError as exc:
            return _template_error(exc)
        assert isinstance(result, RenderedEmail)
        try:
            key = await send_test(engine, state.settings, state.clock, workspace_id, name, result, address, pid)
        except TestSendFailed as exc:
            return JSONResponse({"detail": str(exc)}, exc.status)
        return {"name": name, "to": address, "key": key, "context": "profile" if pid else "sample"}

    async def _push_test(
        state: Any, workspace_id: str, name: str, compiled: Any, context: Any, pid: str | None, to: Any
    ) -> Any:
        if pid is None or to is not None:
            return JSONResponse({"detail": 'a push test goes to a person\'s devices: send {"profile": person}'}, 422)
        try:
            result = await run_in_threadpool(render, compiled, context)
        except TemplateError as exc:
            return _template_error(exc)
        assert isinstance(result, RenderedPush)

        def read_targets() -> Any:
            with state.engine.connect() as conn:
                return targets_of(conn, workspace_id, pid)

        targets = await run_in_threadpool(read_targets)
        try:
            key, answers = await send_push_test(
                state.engine, state.settings, state.clock, workspace_id, result, targets
            )
        except TestSendFailed as exc:
            return JSONResponse({"detail": str(exc)}, exc.status)
        body = {"name": name, "key": key, "context": "profile", "targets": answers}
        if not any(a["result"] == "sent" for a in answers):
            return JSONResponse({**body, "detail": "no push target took it"}, 502)
        return body

    return router
