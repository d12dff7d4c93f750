"""What content raises when a message cannot be rendered.

Content does not know how a message travels, so it does not raise a channel's errors: the
channel that asked for the content reports a `RenderError` as its own PermanentError, with
the same reason (channels/common.permanent_from_render).
"""

from __future__ import annotations

from nudgeflow.errors import ContentError


class RenderError(ContentError):
    """No retry will help: no database to read from, an unknown template, a template of
    another channel, a Liquid error (with its part, line and column), no address."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
