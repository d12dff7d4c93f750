"""The send-time section of a journey report: per send step timed by `send_time`, its messages
by arm and the feature's lift against a random hour (pure arithmetic over store/rollups.py's
report_send_time counters).

The arms (core/send_time.py): `explore` (a share of people drawn by hashing, sent at a
uniformly random hour of the window), `optimized` (the best hour for the person) and
`fallback` (nothing known: the fixed fallback hour). The draw for `explore` comes first, so
the randomized comparison is `explore` against everyone else: the feature's choice, its
fallback hour included when it knew nothing. Comparing `optimized` alone with `explore` would
compare people with history against people with or without it. So the experiment analyzed
(measure/experiments.analyze_experiment, `explore` as the control) has two arms:

- `optimized+fallback` (CHOSEN): the optimized and fallback messages together, weight
  1 - explore;
- `explore`: the explored messages, weight explore;

and each arm's recipients are its messages sent (one per person and visit of the step). It is
analyzed twice: on the open rate and on the click rate (unique, people's; machine opens and
bot clicks only with `include_machine`), with unsubscribes and complaints as guardrails. The
three arms' own counts are shown beside it, `fallback` apart.

Versions of a journey whose `explore` share differs are separate experiments (their weights
differ); versions with the same share are summed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from nudgeflow.core.send_time import EXPLORE, FALLBACK, OPTIMIZED
from nudgeflow.measure.experiments import MINIMUM_PER_ARM, Arm, analyze_experiment

ARMS = (OPTIMIZED, FALLBACK, EXPLORE)
CHOSEN = f"{OPTIMIZED}+{FALLBACK}"  # the feature's choice, whatever it rested on
COUNTERS = ("sent", "opens", "opens_machine", "clicks", "clicks_bot", "unsubscribes", "complaints")
METRICS = (("open", "opens", "opens_machine"), ("click", "clicks", "clicks_bot"))
COMPARED = (
    f"{CHOSEN} (the feature's choice, whatever it rested on) against {EXPLORE} (a random hour of the "
    "window, drawn first), at weights 1 - explore and explore; recipients are messages sent"
)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _with_machine(c: Mapping[str, int], human: str, machine: str, include_machine: bool) -> int:
    """Messages opened (clicked) by a person, or by anyone with `include_machine`. The machine
    counter holds messages opened by machines alone (store/rollups.py), but messages whose
    opens were counted before it did may be in both: no more than the messages sent, or the
    experiment's counts are impossible and the report fails."""
    if not include_machine:
        return c[human]
    return min(c[human] + c[machine], max(c["sent"], c[human]))


def _arm_counts(c: Mapping[str, int], include_machine: bool) -> dict[str, Any]:
    opens = _with_machine(c, "opens", "opens_machine", include_machine)
    clicks = _with_machine(c, "clicks", "clicks_bot", include_machine)
    return {
        "sent": c["sent"],
        "unique_opens": opens,
        "unique_clicks": clicks,
        "machine_opens": c["opens_machine"],
        "bot_clicks": c["clicks_bot"],
        "open_rate": _rate(opens, c["sent"]),
        "click_rate": _rate(clicks, c["sent"]),
        "unsubscribes": c["unsubscribes"],
        "complaints": c["complaints"],
    }


def _arm(name: str, weight: float, c: Mapping[str, int], successes: int) -> Arm:
    return Arm(name, weight, c["sent"], successes, c["unsubscribes"], c["complaints"])


def _experiment(
    arms: Mapping[str, Mapping[str, int]], explore: float, include_machine: bool, minimum_per_arm: int
) -> dict[str, Any]:
    chosen = {name: sum(arms[a][name] for a in (OPTIMIZED, FALLBACK)) for name in COUNTERS}
    out: dict[str, Any] = {}
    for metric, human, machine in METRICS:
        pairs = ((CHOSEN, chosen), (EXPLORE, arms[EXPLORE]))
        hits = {k: _with_machine(c, human, machine, include_machine) for k, c in pairs}
        report = analyze_experiment(
            [_arm(CHOSEN, 1.0 - explore, chosen, hits[CHOSEN]), _arm(EXPLORE, explore, arms[EXPLORE], hits[EXPLORE])],
            control=EXPLORE,
            primary_metric=metric,
            minimum_per_arm=minimum_per_arm,
        )
        out[f"{metric}_rate"] = asdict(report)
    return out


def send_time_section(
    rows: Sequence[Mapping[str, Any]],
    explore_shares: Mapping[tuple[int, str], float | None],
    *,
    include_machine: bool = False,
    minimum_per_arm: int = MINIMUM_PER_ARM,
) -> list[dict[str, Any]]:
    """One entry per (send step, the step that timed it, explore share), from
    store/rollups.read_send_time's rows (per version, step, timed_by, arm) and each
    (version, timed_by) step's configured `explore` share (None: the version is unknown)."""
    groups: dict[tuple[str, str, float | None], dict[str, Any]] = {}
    for row in rows:
        explore = explore_shares.get((row["version"], row["timed_by"]))
        key = (row["step"], row["timed_by"], explore)
        group = groups.setdefault(key, {"versions": set(), "arms": {a: dict.fromkeys(COUNTERS, 0) for a in ARMS}})
        group["versions"].add(row["version"])
        if row["arm"] not in group["arms"]:
            continue  # only the three arms are counted (store/rollups.py); nothing else gets here
        for name in COUNTERS:
            group["arms"][row["arm"]][name] += row[name]
    section = []
    for (step, timed_by, explore), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        arms = group["arms"]
        entry: dict[str, Any] = {
            "step": step,
            "timed_by": timed_by,
            "explore": explore,
            "versions": sorted(group["versions"]),
            "arms": [{"arm": a, **_arm_counts(arms[a], include_machine)} for a in ARMS],
            "compared": COMPARED,
        }
        if explore is None or not 0.0 < explore < 1.0:
            why = "its version is unknown" if explore is None else f"explore is {explore:g}: one arm only"
            entry["open_rate"] = entry["click_rate"] = None
            entry["no_experiment"] = f"no comparison: {why}"
        else:
            entry.update(_experiment(arms, explore, include_machine, minimum_per_arm))
            entry["no_experiment"] = None
        section.append(entry)
    return section
