"""Prometheus metrics, on a registry owned by one app (never the global default)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from nudgeflow.store.ingest_writer import WriteResult

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events_accepted = Counter(
            "nudgeflow_events_accepted", "Events committed to the event log", registry=self.registry
        )
        self.events_duplicate = Counter(
            "nudgeflow_events_duplicate", "Events whose messageId was already stored", registry=self.registry
        )
        self.events_duplicate_conflict = Counter(
            "nudgeflow_events_duplicate_conflict",
            "Repeats of a stored messageId with different content (dropped like every repeat: the first stored wins)",
            registry=self.registry,
        )
        self.events_rejected = Counter(
            "nudgeflow_events_rejected", "Events refused at ingest, by reason", ["reason"], registry=self.registry
        )
        self.events_corrected = Counter(
            "nudgeflow_events_corrected",
            "Events stored with a field corrected at ingest, by field (timestamp: more than the future limit "
            "after its receipt, stored at the time received)",
            ["field"],
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "nudgeflow_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.commit_events = Histogram(
            "nudgeflow_commit_batch_events",
            "Events written per group commit",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
            registry=self.registry,
        )
        self.commit_requests = Histogram(
            "nudgeflow_commit_batch_requests",
            "Requests answered per group commit",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200),
            registry=self.registry,
        )

    def on_commit(self, result: WriteResult, requests: int) -> None:
        self.events_accepted.inc(result.accepted)
        if result.duplicates:
            self.events_duplicate.inc(result.duplicates)
            if result.duplicate_conflicts:
                self.events_duplicate_conflict.inc(result.duplicate_conflicts)
        self.commit_events.observe(result.accepted + result.duplicates)
        self.commit_requests.observe(requests)

    def watch_runtime(self, runtime: Any) -> None:
        """Export the embedded runtime's counters (its `snapshot()`) and lag, read when scraped."""
        self.registry.register(_RuntimeCollector(runtime))

    def reject(self, reason: str, count: int = 1) -> None:
        self.events_rejected.labels(reason).inc(count)

    def correct(self, field: str, count: int = 1) -> None:
        self.events_corrected.labels(field).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)


# name in the runtime's snapshot -> (metric name, help)
_RUNTIME_COUNTERS = {
    "events_processed": ("nudgeflow_engine_events_processed", "Events decided by the engine"),
    "timers_fired": ("nudgeflow_engine_timers_fired", "Timers fired"),
    "messages_queued": ("nudgeflow_messages_queued", "Messages queued in the outbox"),
    "messages_sent": ("nudgeflow_messages_sent", "Messages handed to a real channel (SMTP, push service)"),
    "messages_logged": (
        "nudgeflow_messages_logged",
        "Messages the log channel took in place of an unconfigured channel (not sent)",
    ),
    "messages_failed": ("nudgeflow_messages_failed", "Messages recorded as failed"),
    "messages_retried": ("nudgeflow_messages_retried", "Transient delivery failures scheduled for a retry"),
    "messages_redelivered": (
        "nudgeflow_messages_redelivered",
        "Sends claimed again after another dispatcher's lease ran out unrecorded (it died or stalled mid-send)",
    ),
    "engine_errors": ("nudgeflow_engine_errors", "Events, timers or catalogs the engine failed on (skipped)"),
}


# name in the runtime's backlog() -> (metric name, help): read from the database when
# scraped, so every process with a runtime reports the same figures (all workspaces).
_BACKLOG_GAUGES = {
    "outbox_pending": ("nudgeflow_outbox_pending", "Outbox rows still to send (due, backing off, or leased)"),
    "outbox_due": ("nudgeflow_outbox_due", "Outbox rows due now and not yet claimed"),
    "outbox_oldest_due_seconds": (
        "nudgeflow_outbox_oldest_due_seconds",
        "How long the oldest due outbox row has waited past its attempt time",
    ),
    "timer_overdue_seconds": (
        "nudgeflow_timer_overdue_seconds",
        "How far past its due time the earliest pending timer is (0: none is due)",
    ),
}


# Messages not sent, by status (suppressed, deferred, dropped), reason family and channel.
# The family (`frequency_cap`, `collision`, `unsubscribed`…: model/reasons.FAMILIES), not
# the reason: a reason names a workspace's own rule, journey or topic, and one series per
# id of every workspace would grow without bound. The outbox keeps the full reason.
NOT_SENT = "nudgeflow_messages_not_sent"
NOT_SENT_HELP = (
    "Messages not sent: withheld by a send policy (deferred, dropped) or suppressed at dispatch, "
    "by status, reason family and channel"
)
NOT_SENT_LABELS = ("status", "reason", "channel")

# Messages failed for our side's problem (channels/base.ChannelProblem: a relay that denies
# relaying, the wrong APNs environment), by channel: every message of the channel fails the
# same way until an operator fixes its settings, so this is the one to alert on.
CHANNEL_PROBLEMS = "nudgeflow_channel_problems"
CHANNEL_PROBLEMS_HELP = (
    "Messages failed for the channel's own settings, not the person (a relay denying relaying, "
    "the wrong APNs environment), by channel"
)


class _RuntimeCollector:
    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def describe(self) -> Iterator[Metric]:
        for name, help_ in _RUNTIME_COUNTERS.values():
            yield CounterMetricFamily(name, help_)
        yield CounterMetricFamily(NOT_SENT, NOT_SENT_HELP, labels=NOT_SENT_LABELS)
        yield CounterMetricFamily(CHANNEL_PROBLEMS, CHANNEL_PROBLEMS_HELP, labels=["channel"])
        yield GaugeMetricFamily("nudgeflow_engine_lag_events", "Events in the log not yet decided")
        for name, help_ in _BACKLOG_GAUGES.values():
            yield GaugeMetricFamily(name, help_)

    def collect(self) -> Iterator[Metric]:
        values = self.runtime.snapshot()
        for key, (name, help_) in _RUNTIME_COUNTERS.items():
            yield CounterMetricFamily(name, help_, value=values.get(key, 0))
        not_sent = CounterMetricFamily(NOT_SENT, NOT_SENT_HELP, labels=NOT_SENT_LABELS)
        for labels, count in sorted(self.runtime.not_sent().items()):
            not_sent.add_metric(list(labels), count)
        yield not_sent
        problems = CounterMetricFamily(CHANNEL_PROBLEMS, CHANNEL_PROBLEMS_HELP, labels=["channel"])
        for channel, count in sorted(self.runtime.channel_problems().items()):
            problems.add_metric([channel], count)
        yield problems
        try:
            lag = self.runtime.lag()
            waiting = self.runtime.backlog()
        except Exception:  # the database is away: report no such figure rather than fail the scrape
            return
        yield GaugeMetricFamily("nudgeflow_engine_lag_events", "Events in the log not yet decided", value=lag)
        for key, (name, help_) in _BACKLOG_GAUGES.items():
            yield GaugeMetricFamily(name, help_, value=waiting.get(key, 0))
        yield from _partition_metrics(self.runtime)


def _partition_metrics(runtime: Any) -> Iterator[Metric]:
    """A partitioned engine worker's (serve --role engine): each partition's lag, and this
    worker's partitions, lease moves and fenced batches. Nothing from other processes."""
    view_of = getattr(runtime, "partition_view", None)
    view = view_of() if view_of is not None else None
    if view is None:
        return
    lag = GaugeMetricFamily(
        "nudgeflow_partition_lag_events", "Events of a partition past its decided position", labels=["partition"]
    )
    for partition, events in sorted(view["lag"].items()):
        lag.add_metric([str(partition)], events)
    yield lag
    yield GaugeMetricFamily("nudgeflow_partitions_owned", "Partitions this engine worker holds", value=view["owned"])
    yield CounterMetricFamily(
        "nudgeflow_partition_lease_moves",
        "Partition leases this engine worker took or lost",
        value=view["lease_moves"],
    )
    yield CounterMetricFamily(
        "nudgeflow_partition_fenced_batches",
        "Batches rolled back because the partition's lease had moved (their events are read again by the new owner)",
        value=view["fenced"],
    )
