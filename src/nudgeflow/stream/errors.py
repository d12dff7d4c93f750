"""The stream layer's errors: bad settings, a stream that is not what we need, a cluster that is not there."""

from __future__ import annotations

from nudgeflow.errors import NudgeflowError


class StreamError(NudgeflowError):
    """The event stream (NATS JetStream) could not do what was asked; the layer's class."""


class StreamSettingError(StreamError, ValueError):
    """A stream setting that cannot be used (replicas 2, 0 partitions, a server URL without a host...)."""


class InvalidStreamRequest(StreamError, ValueError):
    """A publish or read the stream cannot take: a partition out of range, an empty message id, a payload
    that is not bytes or is larger than the server accepts."""


class StreamRefused(StreamError):
    """The stream exists with a weaker configuration than asked (fewer replicas, memory storage, a
    shorter duplicate window...). Nudgeflow never changes an existing stream on its own: an operator
    decides, since making a stream weaker or stronger moves data between nodes."""


class StreamUnavailable(StreamError):
    """JetStream did not answer in time, or nothing answered (no server, no stream leader, no quorum).

    For a publish this means: the event is NOT known to be stored. The caller answers an error and
    the sender retries with the same message id; the duplicate window makes the retry store it once."""
