"""A message's bytes as sent: a rendered email composed (mime.py) and signed (signing.py).

`build_raw` builds an `EmailJob` (content/email_jobs.py: what the reads gave, plain and
picklable) in this process or in one of the channel's worker processes
(channels/workers.py); `finish` does the last two steps for any rendered email.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from nudgeflow.channels.base import PermanentError, TransientError
from nudgeflow.channels.common import permanent_from_render
from nudgeflow.channels.email import mime, signing
from nudgeflow.channels.email.signing import DkimKey
from nudgeflow.content.email_jobs import EmailJob, compiled_for
from nudgeflow.content.email_render import build_email
from nudgeflow.content.errors import RenderError
from nudgeflow.content.rendered import RenderedEmail


def finish(
    rendered: RenderedEmail,
    to: str,
    sender: str,
    message_key: str,
    reply_to: str | None,
    date: Any,
    dkim: Sequence[DkimKey],
) -> bytes:
    """A rendered email's bytes as sent: composed, then DKIM-signed once per key (none:
    unsigned). A message that cannot be composed fails for good; a signing failure waits
    (an operator can fix the key)."""
    try:
        raw = mime.compose_raw(rendered, to, sender, message_key=message_key, reply_to=reply_to, date=date)
    except (ValueError, TypeError) as exc:
        raise PermanentError(f"cannot compose the message: {exc}") from None
    if dkim:
        # t= is the message's Date, so a message built twice is the same bytes.
        timestamp = int(date.timestamp()) if isinstance(date, datetime) else int(time.time())
        try:
            raw = signing.dkim_sign_all(raw, dkim, timestamp)
        except signing.DkimKeyError as exc:  # the operator must fix the key; says which part, never the key
            raise TransientError(f"DKIM signing failed: {exc}") from None
        except Exception as exc:
            raise TransientError(f"DKIM signing failed: {type(exc).__name__}") from None
    return raw


def build_raw(job: EmailJob) -> bytes:
    """The message's bytes as sent: rendered, tracked, composed, signed.

    Raises PermanentError for what no retry can fix (a render error with its line and
    column, a header that cannot be written) and TransientError for a DKIM failure (an
    operator can fix the key; the message waits for it)."""
    compiled = compiled_for(job)  # TemplateNotLoaded goes back to the caller as it is
    try:
        rendered = build_email(
            compiled, job.context, job.message, job.to, job.secret, job.base, job.links, budget_ms=job.render_budget_ms
        )
    except RenderError as exc:
        raise permanent_from_render(exc) from exc
    except (PermanentError, TransientError):
        raise
    except Exception as exc:
        raise PermanentError(f"render failed: {type(exc).__name__}: {exc}") from None
    if not job.sender:
        raise PermanentError("no From address configured for email (the SMTP settings' from)")
    return finish(
        rendered, job.to, job.sender, f"{job.message.workspace_id}:{job.message.key}", job.reply_to, job.date, job.dkim
    )
