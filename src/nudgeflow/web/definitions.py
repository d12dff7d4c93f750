"""Definitions as request bodies: what the journeys and segments APIs share.

A definition comes as JSON (an object, or a list of them), or as YAML (several documents
allowed) with `Content-Type: application/yaml`. Problems are answered in one shape, 422
with `{"detail", "problems": [{path, message, severity, line, document}]}`.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from nudgeflow.errors import WebError
from nudgeflow.model.journey_checks import DocumentError, Problem, load_text
from nudgeflow.model.nul import NUL_MESSAGE, nul_path

MAX_DEFINITION_BYTES = 1024 * 1024
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


class Refused(WebError):
    """Answered as is: a status and a JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body


def problem_dicts(problems: list[Problem], document: int | None = None) -> list[dict[str, Any]]:
    out = []
    for problem in problems:
        item = problem.as_dict()
        if document is not None:
            item["document"] = document
        out.append(item)
    return out


def invalid(problems: list[dict[str, Any]], detail: str) -> Refused:
    return Refused(422, {"detail": detail, "problems": problems})


async def read_documents(request: Request, noun: str) -> list[tuple[int, Any]]:
    """The body as documents: YAML (several allowed) or JSON (an object or a list).
    `noun` names what is sent ("journey", "segment") in the refusals."""
    body = await request.body()
    if len(body) > MAX_DEFINITION_BYTES:
        raise Refused(413, {"detail": f"a {noun} definition is at most {MAX_DEFINITION_BYTES} bytes"})
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    kind: Literal["yaml", "json"] = "yaml" if content_type in YAML_TYPES else "json"
    detail = f"invalid {noun} definition"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid([Problem("", "the body is not UTF-8 text").as_dict()], detail) from None
    if not text.strip():
        raise invalid([Problem("", f"the body is empty: send a {noun} as {kind.upper()}").as_dict()], detail)
    try:
        # In a worker thread: a megabyte of YAML takes seconds to read, and on the event loop
        # every other request (ingest too) waited for it.
        return await run_in_threadpool(load_text, text, kind)
    except DocumentError as exc:  # bad syntax, a character YAML refuses, nesting past the parser's stack
        raise invalid([Problem("", str(exc), line=exc.line).as_dict()], detail) from None


def nul_problems(documents: list[tuple[int, Any]]) -> list[dict[str, Any]]:
    """A NUL character anywhere in a definition: its name, events and ids become text
    columns, and PostgreSQL text cannot hold one (it was a 500 there)."""
    out = []
    for index, doc in documents:
        found = nul_path(doc)
        if found is not None:
            out.extend(problem_dicts([Problem(found, NUL_MESSAGE)], index))
    return out
