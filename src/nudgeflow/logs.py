"""Structured (JSON) logs, with credentials scrubbed before anything is written."""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

# Our own key formats, and credentials in HTTP authorization values.
_SECRET = re.compile(
    r"(wk_[A-Za-z0-9_\-]{8,}|nfa_[A-Za-z0-9_\-]{8,}|(?i:basic|bearer)\s+[A-Za-z0-9+/=_\-.]{6,}"
    r"|(?i:writeKey|write_key|admin_token|password)[\"']?\s*[:=]\s*[\"']?[^\s\"',}]+)"
)
# color_message: uvicorn's copy of the message with terminal colour codes, noise in JSON.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}


def redact(text: str) -> str:
    return _SECRET.sub("[REDACTED]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(out, default=str).decode()


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Access lines are ours (see web/app.py): uvicorn's would be unstructured.
    logging.getLogger("uvicorn.access").disabled = True
