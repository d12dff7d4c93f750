"""What the send policies did during `nudgeflow demo`: per rule, the messages they deferred
(and how many of those went out later) and dropped, and the collisions by pair of journeys.

The outbox says where each message ended (store/outbox.outcomes), but a deferred message
that is later sent loses its deferral there: its row becomes `pending`, then `sent`, and its
reason is cleared (docs/policies.md). So the demo also watches the decisions themselves: its
runtime's engine is wrapped (`WatchedEngine`) and every `MessageWithheld` it returns is noted
by message key. Keys, not counts: a decision taken twice (a batch retried) notes the same
key twice and counts once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from nudgeflow.core.effects import DEFERRED, DROPPED, Effect, MessageWithheld
from nudgeflow.model.policies import CapRule, Policies
from nudgeflow.model.reasons import COLLISION, FREQUENCY_CAP, GLOBAL_CONTROL, QUIET_HOURS, family_of

SENT = "sent"  # the outbox status of a message the channel took (store/outbox.SENT)


@dataclass
class DecisionLog:
    """The messages the engine deferred at least once: key -> the reasons, and its journey."""

    deferred: dict[str, set[str]] = field(default_factory=dict)
    journey: dict[str, str] = field(default_factory=dict)

    def note(self, effects: Iterable[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, MessageWithheld) and effect.status == DEFERRED:
                self.deferred.setdefault(effect.key, set()).add(effect.reason)
                self.journey[effect.key] = effect.journey_id


class WatchedEngine:
    """The core engine, unchanged, with the decisions it returns noted in a DecisionLog."""

    def __init__(self, engine: Any, log: DecisionLog) -> None:
        self._engine = engine
        self._log = log

    def on_event(self, state: Any, event: Any, now_ms: int) -> list[Effect]:
        effects: list[Effect] = self._engine.on_event(state, event, now_ms)
        self._log.note(effects)
        return effects

    def on_timer(self, state: Any, timer: Any, now_ms: int) -> list[Effect]:
        effects: list[Effect] = self._engine.on_timer(state, timer, now_ms)
        self._log.note(effects)
        return effects

    def __getattr__(self, name: str) -> Any:
        # Everything else the runtime may ask of an engine (a backfill, the catalog).
        return getattr(self._engine, name)


@dataclass
class PolicyRow:
    reason: str  # frequency_cap:<rule>, quiet_hours, collision:<winner>, run_ended…
    rule: str  # what the rule says, or for a collision the journey that lost
    deferred: int = 0  # messages deferred at least once for this reason
    sent_later: int = 0  # of those, sent in the end
    waiting: int = 0  # still deferred for this reason when the demo ended
    dropped: int = 0  # messages dropped for this reason
    loser: str | None = None  # a collision's losing journey


@dataclass
class PolicyReport:
    source: str = ""  # the file applied ("" when none was)
    version: int = 0
    rows: list[PolicyRow] = field(default_factory=list)
    messages: int = 0  # messages the journeys decided to send
    sent: int = 0
    deferred: int = 0  # messages deferred at least once
    sent_later: int = 0
    dropped: int = 0

    def by_reason(self, family: str) -> list[PolicyRow]:
        return [r for r in self.rows if family_of(r.reason) == family]


def describe_cap(rule: CapRule) -> str:
    """`2 emails a calendar day`, `1 push in any 4h`, with the category when not marketing."""
    per = f"a calendar {rule.calendar}" if rule.calendar else f"in any {rule.window}"
    narrowed = "" if rule.category == "marketing" else f" ({rule.category})"
    topic = f" of topic {rule.topic}" if rule.topic else ""
    noun = rule.channel if rule.limit == 1 else {"push": "pushes"}.get(rule.channel, rule.channel + "s")
    return f"{rule.limit} {noun}{topic} {per}{narrowed}"


def _rules(policies: Policies) -> list[PolicyRow]:
    """A row per rule of the document, in its order, each with what it says."""
    rows = [PolicyRow(f"{FREQUENCY_CAP}:{r.id}", describe_cap(r)) for r in policies.frequency_caps]
    rows += [PolicyRow(f"{FREQUENCY_CAP}:{r.id}", "fewer emails: " + describe_cap(r)) for r in policies.fewer.caps]
    if policies.quiet_hours:
        rows.append(
            PolicyRow(
                QUIET_HOURS,
                "; ".join(
                    f"{q.channel} {q.start} to {q.end} local: "
                    + ("deferred" if q.action == "defer" else "dropped")
                    + (f", released over {q.spread}" if q.action == "defer" and q.spread != "0m" else "")
                    for q in policies.quiet_hours
                ),
            )
        )
    group = policies.control_group
    if group is not None and group.share > 0:
        drawn = "drawn once" if group.reset == "never" else f"drawn again {group.reset}"
        rows.append(PolicyRow(GLOBAL_CONTROL, f"{group.share:.0%} of people get no marketing ({drawn})"))
    return rows


def build_report(
    policies: Policies | None, source: str, version: int, log: DecisionLog, outcomes: Sequence[Any]
) -> PolicyReport:
    """`outcomes`: store/outbox.outcomes, (key, journey_id, channel, status, reason) per message."""
    report = PolicyReport(source=source, version=version)
    rows = {r.reason: r for r in _rules(policies)} if policies is not None else {}
    pairs: dict[tuple[str, str], PolicyRow] = {}

    def row_for(reason: str, journey: str) -> PolicyRow:
        if family_of(reason) == COLLISION:
            winner = reason.split(":", 1)[1] if ":" in reason else "?"
            found = pairs.get((winner, journey))
            if found is None:
                found = pairs[(winner, journey)] = PolicyRow(reason, f"{winner} ← {journey}", loser=journey)
            return found
        found = rows.get(reason)
        if found is None:
            found = rows[reason] = PolicyRow(reason, "")
        return found

    final = {key: (journey, status, reason) for key, journey, _channel, status, reason in outcomes}
    report.messages = len(final)
    report.sent = sum(1 for _j, status, _r in final.values() if status == SENT)
    for key, reasons in log.deferred.items():
        journey, status, _reason = final.get(key, (log.journey.get(key, "?"), "", None))
        for reason in reasons:
            row = row_for(reason, journey)
            row.deferred += 1
            row.sent_later += status == SENT
        report.deferred += 1
        report.sent_later += status == SENT
    for journey, status, reason in final.values():
        if status in (DEFERRED, DROPPED) and reason:
            row = row_for(reason, journey)
            if status == DROPPED:
                row.dropped += 1
                report.dropped += 1
            else:
                row.waiting += 1
    report.rows = list(rows.values()) + sorted(pairs.values(), key=lambda r: (r.reason, r.rule))
    return report


def policy_table(report: PolicyReport, collision_window: str | None = None) -> Table:
    title = (
        f"Send policies ({report.source}, version {report.version}): "
        f"{report.deferred:,} messages deferred ({report.sent_later:,} sent later), {report.dropped:,} dropped, "
        f"of {report.messages:,} the journeys wanted to send"
    )
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("reason", no_wrap=True)
    table.add_column("rule / collision (winner ← loser)", overflow="fold")
    table.add_column("deferred", justify="right")
    table.add_column("sent later", justify="right")
    table.add_column("dropped", justify="right")
    table.add_column("still waiting", justify="right")
    window = f" (collision window {collision_window})" if collision_window else ""
    for row in report.rows:
        rule = row.rule
        if row.loser is not None:
            rule += window
        table.add_row(
            escape(row.reason),
            escape(rule),
            f"{row.deferred:,}",
            f"{row.sent_later:,}",
            f"{row.dropped:,}",
            f"{row.waiting:,}" if row.waiting else "",
        )
    return table
