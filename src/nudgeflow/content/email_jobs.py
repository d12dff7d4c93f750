"""An email as a self-contained job: what building its bytes needs.

Building an email is pure CPU: the Liquid render of a ~30 KB MJML body, link tracking,
the MIME bytes and, with a key, a DKIM signature (OpenSSL's RSA, well under a ms).
Reading what it needs (the template version, the person's context, the workspace's link
secret) is database work. `EmailJob` holds the result of the reads — plain, picklable
values — so that the email channel's `build_raw` (channels/email/build.py) can run either
inline or in one of its worker processes (channels/workers.py), where it uses a core the
serving process's GIL does not hold.

A worker gets the template as its source and compiled HTML, with a fingerprint; it parses
each fingerprint once and keeps it (a small LRU), so a version is parsed once per worker,
not once per message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nudgeflow.errors import ContentError
from nudgeflow.model.outbound import OutboundMessage


@dataclass(frozen=True)
class EmailJob:
    """Everything building the bytes needs; no connections, no locks (it crosses processes)."""

    message: OutboundMessage
    to: str
    template_fingerprint: str
    # The template itself, for a process that has not parsed this fingerprint yet; `slim`
    # leaves it out (most jobs: 2 KB instead of 25 KB through the pipe).
    template_source: Any = field(repr=False)  # content.templates.TemplateSource; None in a slim job
    template_html: str | None = field(repr=False)  # the MJML body compiled once per version (None: not MJML)
    # Never in a repr (so never in a log line that prints a job): personal data, secrets.
    context: dict[str, Any] = field(repr=False)
    secret: str = field(repr=False)  # the workspace's link signing secret
    base: str = ""  # the workspace's public base URL
    links: Any = None  # content.links.LinkPolicy: which links get click tracking (None: all)
    render_budget_ms: float | None = None  # the serving process's render budget, for a worker's render
    # Filled in by the channel from its SMTP settings:
    sender: str = ""
    reply_to: str | None = None
    date: datetime | None = None
    # One (selector, domain, PEM private key) per DKIM signature: none, RSA, or RSA and
    # Ed25519 (channels/email/signing.py).
    dkim: tuple[tuple[str, str, bytes], ...] = field(default=(), repr=False)

    def __repr__(self) -> str:
        # Ids only: the message carries the person's traits, the rest secrets and content.
        m = self.message
        return (
            f"EmailJob(workspace={m.workspace_id!r}, key={m.key!r}, template={m.template!r}, "
            f"fingerprint={self.template_fingerprint!r})"
        )


# -- the template, once per version and process ------------------------------------------------

_FINGERPRINTS: OrderedDict[int, tuple[Any, str]] = OrderedDict()  # id(compiled) -> (compiled, fingerprint)
_COMPILED: OrderedDict[str, Any] = OrderedDict()  # fingerprint -> CompiledTemplate (in workers)
_LOCK = threading.Lock()
_KEEP = 64


def fingerprint(compiled: Any) -> str:
    """A name for this compiled template that another process can trust: a hash of its
    source and compiled HTML (memoized per object; the object is kept alive with it, so
    its id cannot be reused while it is remembered)."""
    with _LOCK:
        hit = _FINGERPRINTS.get(id(compiled))
        if hit is not None and hit[0] is compiled:
            return hit[1]
    digest = hashlib.blake2b(digest_size=16)
    digest.update(compiled.source.model_dump_json().encode())
    digest.update(b"\0")
    digest.update((compiled.html or "").encode())
    value = digest.hexdigest()
    with _LOCK:
        _FINGERPRINTS[id(compiled)] = (compiled, value)
        while len(_FINGERPRINTS) > _KEEP:
            _FINGERPRINTS.popitem(last=False)
    return value


class TemplateNotLoaded(ContentError):
    """A slim job reached a process that has not parsed its template: send the full job."""


def slim(job: EmailJob) -> EmailJob:
    return dataclasses.replace(job, template_source=None, template_html=None)


def compiled_for(job: EmailJob) -> Any:
    from nudgeflow.content.templates import compile_template

    with _LOCK:
        hit = _COMPILED.get(job.template_fingerprint)
        if hit is not None:
            _COMPILED.move_to_end(job.template_fingerprint)
            return hit
    if job.template_source is None:
        raise TemplateNotLoaded(job.template_fingerprint)
    compiled = compile_template(job.template_source, compiled_html=job.template_html)
    with _LOCK:
        _COMPILED[job.template_fingerprint] = compiled
        while len(_COMPILED) > _KEEP:
            _COMPILED.popitem(last=False)
    return compiled


def job_for(
    compiled: Any, message: OutboundMessage, to: str, context: dict[str, Any], secret: str, base: str, links: Any = None
) -> EmailJob:
    """The job for a message whose template and context were read in this process. The
    compiled template is remembered under its fingerprint here too, so an inline build
    does not parse it again."""
    from nudgeflow.content.templates import render_budget_ms

    fp = fingerprint(compiled)
    with _LOCK:
        _COMPILED.setdefault(fp, compiled)
    return EmailJob(
        message=message,
        to=to,
        template_fingerprint=fp,
        template_source=compiled.source,
        template_html=compiled.html,
        context=context,
        secret=secret,
        base=base,
        links=links,
        render_budget_ms=render_budget_ms(),
    )
