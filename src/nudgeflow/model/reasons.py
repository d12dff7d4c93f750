"""Why a message was not sent: the one vocabulary of reasons, and their families.

Every message that is not sent says why, in the outbox row's `reason`, the profile's
messages in the admin API, the "Message Suppressed" event and the metrics. A reason is a
family, optionally followed by `:` and what it names:

- decided by the engine's send policies (core/policies.py, `MessageWithheld`), status
  `deferred` or `dropped`: `frequency_cap:<rule id>`, `quiet_hours`,
  `collision:<winning journey id>`, `run_ended`, `journey_paused` (a message held past its
  maximum deferral is dropped with the reason of the rule that held it);
- decided by the engine when the run is in the workspace's global control group
  (core/control_group.py, `MessageWithheld`), status `dropped`: `global_control`, for every
  marketing message of such a run;
- decided by dispatch just before sending (store/consent.py, runtime/dispatcher.py), status
  `suppressed`: `unsubscribed:<topic>` (`unsubscribed:*` for all marketing),
  `suppressed:<address reason>` (the suppression list's: hard_bounce, complaint, manual…),
  `no_consent` (an opt_in workspace's marketing message to a person with no recorded yes
  for its channel), `no_target` (no address or device for the channel).

The family alone (`frequency_cap`, `unsubscribed`…) is what metrics label by: what follows
the colon is a workspace's own rule, journey or topic id, and would make one series per id
of every workspace of the server.
"""

from __future__ import annotations

from typing import Final

FREQUENCY_CAP: Final = "frequency_cap"
QUIET_HOURS: Final = "quiet_hours"
COLLISION: Final = "collision"
JOURNEY_PAUSED: Final = "journey_paused"
RUN_ENDED: Final = "run_ended"
UNSUBSCRIBED: Final = "unsubscribed"
SUPPRESSED: Final = "suppressed"
NO_CONSENT: Final = "no_consent"
NO_TARGET: Final = "no_target"
GLOBAL_CONTROL: Final = "global_control"

FAMILIES: Final = frozenset(
    {
        FREQUENCY_CAP,
        QUIET_HOURS,
        COLLISION,
        RUN_ENDED,
        JOURNEY_PAUSED,
        UNSUBSCRIBED,
        SUPPRESSED,
        NO_CONSENT,
        NO_TARGET,
        GLOBAL_CONTROL,
    }
)
OTHER: Final = "other"  # the family of a reason outside the vocabulary (never a free text label)

ALL_MARKETING: Final = "*"  # the topic of an unsubscribe from all marketing (store/consent.ALL)


def reason(family: str, detail: str | None = None) -> str:
    """`family`, or `family:detail`."""
    return family if detail is None else f"{family}:{detail}"


def family_of(text: str | None) -> str:
    """The family of a reason, one of FAMILIES, else OTHER: a bounded label."""
    if not text:
        return OTHER
    head = text.split(":", 1)[0]
    return head if head in FAMILIES else OTHER


def frequency_cap(rule_id: str) -> str:
    return reason(FREQUENCY_CAP, rule_id)


def collision(winning_journey: str) -> str:
    return reason(COLLISION, winning_journey)


def unsubscribed(topic: str | None) -> str:
    """`unsubscribed:<topic>`; no topic (or `*`) is all marketing: `unsubscribed:*`."""
    return reason(UNSUBSCRIBED, topic or ALL_MARKETING)


def suppressed(address_reason: str) -> str:
    return reason(SUPPRESSED, address_reason)
