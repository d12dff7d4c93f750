"""The journey checker: every kind of problem, at its path and line, in words a person can act on."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from nudgeflow.model.journey_checks import (
    DocumentError,
    FileProblem,
    Problem,
    check_journey,
    load_documents,
    validate_files,
)
from nudgeflow.model.journeys import Journey, SegmentTrigger

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "journeys"

VALID: dict[str, Any] = {
    "id": "cart",
    "name": "Cart abandonment",
    "trigger": {
        "type": "event_not_followed",
        "event": "Product Added",
        "where": [{"property": "price", "op": "gt", "value": 0}],
        "not_followed_by": {"event": "Order Completed", "within": "1h", "match": "cart_id"},
    },
    "exit": {"events": [{"event": "Order Completed", "match": "cart_id"}]},
    "goal": {"event": "Order Completed", "within": "7d", "revenue": "revenue"},
    "steps": {
        "remind": {"type": "send", "channel": "email", "template": "cart-1", "next": "wait"},
        "wait": {
            "type": "wait_for_event",
            "event": "Email Opened",
            "timeout": "1d",
            "on_event": "check",
            "on_timeout": "check",
        },
        "check": {
            "type": "branch",
            "cases": [{"when": [{"message": "remind", "status": "clicked"}], "next": "split"}],
            "default": "pause",
        },
        "pause": {"type": "wait", "duration": "2d", "next": "check"},  # a loop through a wait is fine
        "split": {"type": "split", "paths": [{"name": "a", "weight": 1, "next": "offer"}, {"name": "b", "weight": 1}]},
        "offer": {
            "type": "send",
            "channel": "push",
            "variants": [
                {"name": "ten", "template": "t10", "weight": 1},
                {"name": "free", "template": "tfree", "weight": 1},
            ],
            "next": "note",
        },
        "note": {"type": "update_profile", "set": {"last_cart": {"ref": "trigger.cart_id"}}, "next": "done"},
        "done": {"type": "exit"},
    },
}


def doc(**changes: Any) -> dict[str, Any]:
    """VALID with changes; a key "a.b.c" sets a nested value (None deletes it)."""
    out = copy.deepcopy(VALID)
    for dotted, value in changes.items():
        parts = dotted.split("__")
        target: Any = out
        for part in parts[:-1]:
            target = target[int(part)] if isinstance(target, list) else target[part]
        last: Any = int(parts[-1]) if isinstance(target, list) else parts[-1]
        if value is None and isinstance(target, dict):
            target.pop(last, None)
        else:
            target[last] = value
    return out


def problems(document: Any) -> list[tuple[str, str, str]]:
    _, found = check_journey(document)
    return [(p.severity, p.path, p.message) for p in found]


def errors(document: Any) -> dict[str, str]:
    _, found = check_journey(document)
    return {p.path: p.message for p in found if p.severity == "error"}


def test_a_valid_journey_passes_without_problems() -> None:
    journey, found = check_journey(VALID)
    assert found == []
    assert isinstance(journey, Journey) and journey.first_step == "remind"


def test_every_example_shipped_is_valid() -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert files, "examples/journeys should hold the shipped journeys"
    assert [p.format() for p in validate_files(files)] == []


# --- structural problems ----------------------------------------------------------------------


def test_unknown_operator_names_the_choices() -> None:
    found = errors(doc(trigger__where=[{"property": "price", "op": "equals", "value": 3}]))
    assert found == {
        "trigger.where.0.op": "unknown operator 'equals' (use one of eq, ne, in, not_in, gt, gte, lt, lte, "
        "exists, not_exists, contains, not_contains)"
    }


def test_paths_carry_no_union_tags() -> None:
    document = doc(steps__remind__nxt="wait")
    assert errors(document) == {"steps.remind.nxt": "unknown key 'nxt' (did you mean 'next'?)"}
    # Conditions are a tagged union too; nested inside all/not the path stays the document's.
    document = doc(
        steps__check__cases=[{"when": [{"all": [{"not": {"trait": "plan", "op": "in", "value": 3}}]}], "next": "split"}]
    )
    assert errors(document) == {"steps.check.cases.0.when.0.all.0.not": "operator 'in' needs a list as value"}


def test_unknown_step_and_trigger_types() -> None:
    found = errors(doc(steps__done={"type": "stop"}, trigger={"type": "evnt", "event": "A"}))
    assert found["steps.done"] == (
        "unknown step type 'stop' (use one of send, wait, wait_for_event, branch, split, update_profile, exit)"
    )
    assert found["trigger"].startswith("unknown trigger type 'evnt' (use one of event, event_not_followed,")
    assert errors(doc(steps__done={"tipe": "exit"}))["steps.done"].startswith("missing required key 'type'")


def test_missing_keys_are_reported_on_their_parent() -> None:
    found = errors(doc(steps__remind={"type": "send", "template": "t"}, name=None))
    assert found == {"steps.remind": "missing required key 'channel'", "": "missing required key 'name'"}


def test_bad_values_say_what_is_expected() -> None:
    found = errors(
        doc(
            steps__pause={"type": "wait", "duration": "3 days", "next": "check"},
            id="Cart!",
            holdout=2,
            priority="high",
            steps__check__cases__0__when__0__status="read",
        )
    )
    assert found["steps.pause.duration"] == (
        "'3 days' is not a duration (use a positive number, decimals "
        "allowed, and a unit: 500ms, 90s, 15m, 1h, 1.5d, 2w)"
    )
    assert found["id"].startswith("'Cart!' is not a valid journey id")
    assert found["holdout"] == "2 must be less than 1"
    assert found["priority"] == "expected a whole number, got the text 'high'"
    assert found["steps.check.cases.0.when.0.status"] == (
        "unknown message status 'read' (use one of sent, delivered, opened, clicked, capped, deferred, dropped)"
    )


def test_model_rules_read_as_sentences() -> None:
    found = errors(
        doc(steps__remind={"type": "send", "channel": "email", "next": "wait"}, entry={"filter": [{"trat": "plan"}]})
    )
    assert found == {
        "steps.remind": "a send step needs either `template` or `variants`",
        "entry.filter.0": "a condition needs one of the keys trait, event, message, segment, all, any, not",
    }


def test_not_a_mapping() -> None:
    assert problems(["a", "list"]) == [
        ("error", "", "a journey is a mapping with id, name, trigger and steps, not a list")
    ]


# --- semantic problems ------------------------------------------------------------------------


def test_references_to_missing_steps() -> None:
    found = errors(
        doc(
            start="begin",
            steps__remind__next="wiat",
            steps__wait__on_timeout="nowhere",
            steps__check__cases__0__next="vanished",
            steps__check__default="also-gone",
            steps__split__paths__1__next="lost",
        )
    )
    assert found == {
        "start": "no step named 'begin'",
        "steps.remind.next": "no step named 'wiat' (did you mean 'wait'?)",
        "steps.wait.on_timeout": "no step named 'nowhere'",
        "steps.check.cases.0.next": "no step named 'vanished'",
        "steps.check.default": "no step named 'also-gone'",
        "steps.split.paths.1.next": "no step named 'lost'",
    }


def test_cycle_without_a_wait() -> None:
    found = errors(doc(steps__note__next="offer"))
    assert found == {
        "steps.offer": "cycle without a wait: offer -> note -> offer (a run would loop without "
        "pause; put a wait or wait_for_event step in it)"
    }
    # Through a branch and a split, back to the branch.
    found = errors(doc(steps__split__paths__1__next="check"))
    assert list(found) == ["steps.check"]
    assert found["steps.check"].startswith("cycle without a wait: check -> split -> check")
    # A step that leads to itself.
    assert (
        "cycle without a wait: done -> done"
        in errors(doc(steps__done={"type": "update_profile", "next": "done"}))["steps.done"]
    )


def test_a_zero_wait_does_not_break_a_cycle() -> None:
    found = errors(doc(steps__pause={"type": "wait", "duration": "0s", "next": "check"}))
    assert found["steps.check"].startswith("cycle without a wait: check -> pause -> check")


def test_a_cycle_through_a_wait_is_allowed() -> None:
    assert errors(doc(steps__done={"type": "wait", "duration": "1d", "next": "remind"})) == {}


def test_message_conditions_must_name_an_earlier_send_step() -> None:
    assert errors(doc(steps__check__cases__0__when=[{"message": "remnd"}])) == {
        "steps.check.cases.0.when.0.message": "no step named 'remnd' (did you mean 'remind'?)"
    }
    assert errors(doc(steps__check__cases__0__when=[{"any": [{"message": "wait"}]}])) == {
        "steps.check.cases.0.when.0.any.0.message": "step 'wait' is a wait_for_event step, not a send step"
    }
    assert errors(doc(entry={"filter": [{"message": "remind"}]})) == {
        "entry.filter.0.message": "a message condition needs a run, and entry filters are checked before the run "
        "starts (use it in a branch step)"
    }
    # A send step that comes only after the branch: a warning, the journey is still valid.
    journey, found = check_journey(doc(steps__check__cases__0__when=[{"message": "offer"}]))
    assert journey is not None
    assert [(p.severity, p.path) for p in found] == [("warning", "steps.check.cases.0.when.0.message")]


@pytest.mark.parametrize(
    "trigger",
    [
        {"type": "inactivity", "window": "7d"},
        {"type": "date_relative", "trait": "trial_ends_at", "offset": "-3d"},
        {"type": "attribute_change", "trait": "plan", "from": "pro", "to": "free"},
    ],
)
def test_match_and_trigger_refs_need_a_trigger_event(trigger: dict[str, Any]) -> None:
    facts = {
        "inactivity": "trigger.last_active_at, trigger.inactive_ms",
        "date_relative": "trigger.trait, trigger.value, trigger.due",
        "attribute_change": "trigger.trait, trigger.from, trigger.to",
    }
    document = doc(trigger=trigger, steps__wait__match="cart_id")
    found = errors(document)
    kind = trigger["type"]
    assert found == {
        "exit.events.0.match": f"`match` needs a triggering event to compare with, and {kind} triggers start "
        "without one",
        "steps.wait.match": f"`match` needs a triggering event to compare with, and {kind} triggers start without one",
        "steps.note.set.last_cart.ref": f"{{ref: trigger.cart_id}} needs a triggering event to compare with, "
        f"and {kind} triggers start without one (it provides {facts[kind]})",
    }


def test_refs_to_what_a_trigger_without_event_provides() -> None:
    document = doc(
        trigger={"type": "attribute_change", "trait": "plan", "to": "free"},
        exit={"events": []},
        steps__note__set={"previous_plan": {"ref": "trigger.from"}},
    )
    assert errors(document) == {}


def test_match_with_event_triggers_is_fine() -> None:
    for trigger in (
        {"type": "event", "event": "Product Added"},
        {"type": "milestone", "event": "Order Completed", "count": 3},
        {"type": "location", "places": [{"name": "shop", "latitude": 48.1, "longitude": 11.5}], "radius_m": 200},
    ):
        assert errors(doc(trigger=trigger, steps__wait__match="cart_id")) == {}


def test_duplicate_variant_and_path_names() -> None:
    found = errors(
        doc(
            steps__offer__variants=[
                {"name": "x", "template": "a", "weight": 1},
                {"name": "x", "template": "b", "weight": 1},
            ],
            steps__split__paths=[{"name": "p", "weight": 1, "next": "offer"}, {"name": "p", "weight": 2}],
        )
    )
    assert found == {
        "steps.offer.variants.1.name": "duplicate variant name 'x' (also item 0)",
        "steps.split.paths.1.name": "duplicate path name 'p' (also item 0)",
    }


def test_primary_metric_needs_an_experiment_and_something_to_count() -> None:
    # Accepted: on a split and on a send step with variants.
    assert errors(doc(steps__split__primary_metric="conversion", steps__offer__primary_metric="click")) == {}
    push_after_split = doc(steps__split__primary_metric="open")
    assert errors(push_after_split) == {}  # the offer (push) follows path a
    assert errors(doc(steps__remind__primary_metric="click")) == {
        "steps.remind": "`primary_metric` goes only with `variants`: a send step without them is no experiment"
    }
    assert errors(doc(steps__offer__primary_metric="revenue")) == {
        "steps.offer.primary_metric": "unknown value 'revenue' (use one of conversion, open, click)"
    }
    no_goal = doc(goal=None, steps__split__primary_metric="conversion")
    assert errors(no_goal) == {
        "steps.split.primary_metric": "conversion needs the journey's `goal`: without one no run converts"
    }
    # A split that no email or push message follows has no open or click to compare.
    nothing_after = doc(
        steps__split__primary_metric="click",
        steps__split__paths=[{"name": "a", "weight": 1}, {"name": "b", "weight": 1}],
    )
    assert errors(nothing_after) == {
        "steps.split.primary_metric": "click needs a message after the split (email or push): no send step follows it"
    }


def test_minimum_per_arm_needs_an_experiment_and_enough_runs() -> None:
    assert errors(doc(steps__split__minimum_per_arm=1000, steps__offer__minimum_per_arm=100)) == {}
    assert errors(doc(steps__remind__minimum_per_arm=800)) == {
        "steps.remind": "`minimum_per_arm` goes only with `variants`: a send step without them is no experiment"
    }
    found = errors(doc(steps__split__minimum_per_arm=20))
    assert list(found) == ["steps.split.minimum_per_arm"] and "100" in found["steps.split.minimum_per_arm"]


def test_unreachable_steps_are_warnings() -> None:
    document = doc(steps__orphan={"type": "send", "channel": "email", "template": "t"})
    journey, found = check_journey(document)
    assert journey is not None
    assert found == [Problem("steps.orphan", "step 'orphan' is never reached from the start step 'remind'", "warning")]


def test_reserved_ids() -> None:
    assert errors(doc(id="schema")) == {"id": "'schema' is reserved (the admin API uses /api/journeys/schema)"}


def test_structural_and_graph_problems_are_reported_together() -> None:
    found = errors(doc(steps__pause={"type": "wait", "duration": "2 days", "next": "chek"}))
    assert set(found) == {"steps.pause.duration", "steps.pause.next"}


# --- files and line numbers -------------------------------------------------------------------

YAML_FILE = """\
# two journeys in one file
id: first
name: First
trigger:
  type: event
  event: Signed Up
  where:
    - property: plan
      op: equals
      value: pro
steps:
  hello:
    type: send
    channel: email
    template: welcome
    next: byebye
---
id: second
name: Second
trigger: {type: event, event: Signed Up}
steps:
  a: {type: update_profile, set: {x: 1}, next: b}
  b: {type: update_profile, set: {x: 2}, next: a}
  c: {type: exit}
  c: {type: exit}
"""


def test_line_numbers_for_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "journeys.yaml"
    path.write_text(YAML_FILE)
    found = validate_files([path])
    assert [(p.document, p.line, p.path, p.severity) for p in found] == [
        (0, 9, "trigger.where.0.op", "error"),
        (0, 16, "steps.hello.next", "error"),
        (1, 22, "steps.a", "error"),  # the cycle, reported at the first step's line
        (1, 25, "steps.c", "error"),  # the duplicate key, at the second occurrence
    ]
    assert found[1].format() == f"{path}:16: steps.hello.next: no step named 'byebye'"
    assert found[2].message.startswith("cycle without a wait: a -> b -> a")
    assert "duplicate key 'c' (line 24)" in found[3].message


def test_missing_keys_point_at_their_parent_line(tmp_path: Path) -> None:
    path = tmp_path / "j.yml"
    path.write_text("id: x\nname: X\ntrigger:\n  type: event\nsteps:\n  a:\n    type: send\n    template: t\n")
    found = validate_files([path])
    assert [(p.line, p.path, p.message) for p in found] == [
        (3, "trigger", "missing required key 'event'"),
        (6, "steps.a", "missing required key 'channel'"),
    ]


def test_json_files_have_lines_too(tmp_path: Path) -> None:
    path = tmp_path / "j.json"
    bad = doc(steps__remind__next="nowhere")
    path.write_text(json.dumps(bad, indent=2))
    [problem] = validate_files([path])
    assert problem.path == "steps.remind.next"
    assert problem.line is not None
    assert '"next": "nowhere"' in path.read_text().splitlines()[problem.line - 1]


def test_a_json_file_may_hold_a_list_of_journeys(tmp_path: Path) -> None:
    path = tmp_path / "many.json"
    path.write_text(json.dumps([VALID, doc(id="two", steps__remind__next="x")]))
    found = validate_files([path])
    assert [(p.document, p.path) for p in found] == [(1, "steps.remind.next")]


def test_unreadable_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: x\nsteps:\n  a: [unclosed\n")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    found = validate_files([broken, tmp_path / "missing.yaml", text])
    assert [(Path(p.file).name, p.line) for p in found] == [
        ("broken.yaml", 4),
        ("missing.yaml", None),
        ("notes.txt", None),
    ]
    assert found[0].message.startswith("not valid YAML")
    assert found[1].message == "no such file"
    assert "use .yaml, .yml or .json" in found[2].message
    with pytest.raises(DocumentError):
        load_documents(broken)


def test_empty_documents_are_skipped_and_scalars_reported(tmp_path: Path) -> None:
    path = tmp_path / "j.yaml"
    path.write_text("---\n---\njust text\n")
    found = validate_files([path])
    assert [(p.document, p.line, p.message) for p in found] == [
        (1, None, "a journey is a mapping with id, name, trigger and steps, not the text 'just text'")
    ]
    assert [i for i, _ in load_documents(path)] == [1]


def test_the_same_id_twice_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(json.dumps(VALID))
    (tmp_path / "b.yaml").write_text(json.dumps(VALID))
    found = validate_files([tmp_path])  # a directory: its journey files, sorted
    assert len(found) == 1
    assert found[0].file.endswith("b.yaml") and found[0].path == "id"
    assert found[0].message.startswith("journey 'cart' is also defined at ") and "a.yaml:1" in found[0].message


def test_file_problem_format() -> None:
    assert (
        FileProblem("a.yaml", "steps.x.next", 7, "no step named 'y'").format()
        == "a.yaml:7: steps.x.next: no step named 'y'"
    )
    assert (
        FileProblem("a.yaml", "steps.x", None, "never reached", "warning").format()
        == "a.yaml: steps.x: warning: never reached"
    )
    assert FileProblem("a.yaml", "", 3, "not valid YAML").format() == "a.yaml:3: not valid YAML"


@pytest.mark.parametrize(
    "text, kind, reason",
    [
        ("name: a\x01b", "yaml", "not valid YAML"),  # a control character YAML refuses before parsing
        ("a: " + "[" * 5000 + "]" * 5000, "yaml", "not valid YAML: nested too deeply"),
        ("[" * 5000 + "]" * 5000, "json", "not valid JSON: nested too deeply"),
    ],
)
def test_documents_yaml_or_json_cannot_read_are_a_document_error(text: str, kind: str, reason: str) -> None:
    # `nudgeflow journeys validate` and the admin API both read through load_text.
    from nudgeflow.model.journey_checks import load_text

    with pytest.raises(DocumentError, match=reason):
        load_text(text, kind)  # type: ignore[arg-type]


def _alias_bomb(levels: int, fan: int) -> str:
    """A few hundred bytes of YAML whose aliases stand for fan ** levels values."""
    lines = ["a0: &a0 [" + ", ".join(["x"] * fan) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]")
    return "\n".join([*lines, f"name: *a{levels}"])


def test_aliases_that_expand_past_any_real_document_are_a_document_error() -> None:
    # Each alias is the same object, but every reader (line index, checks, pydantic) walks it
    # once per reference: 9 levels of 9 took hours, in the web server's event loop for
    # PUT /api/journeys or /api/policies. 160,000 values are refused at once.
    from nudgeflow.model.journey_checks import load_text

    with pytest.raises(DocumentError, match="aliases expand"):
        load_text(_alias_bomb(4, 20), "yaml")
    # Aliases that reuse a little are fine.
    [(_, doc)] = load_text("base: &b {channel: email, template: t}\none: *b\ntwo: *b\n", "yaml")
    assert doc["one"] == doc["two"] == {"channel": "email", "template": "t"}


# --- channels and templates (Delivery) ------------------------------------------------------------

from nudgeflow.model.journey_checks import CHANNELS, Delivery  # noqa: E402

TEMPLATES = {"cart-1": "email", "t10": "push", "tfree": "push"}


def delivery_errors(document: dict[str, Any], delivery: Delivery) -> dict[str, str]:
    _journey, problems = check_journey(document, delivery)
    return {p.path: p.message for p in problems if p.severity == "error"}


def test_channels_and_templates_that_are_there_pass() -> None:
    journey, problems = check_journey(doc(), Delivery(templates=TEMPLATES))
    assert journey is not None and [p for p in problems if p.severity == "error"] == []


def test_without_a_delivery_channels_and_templates_are_not_checked() -> None:
    journey, _problems = check_journey(doc(steps__remind__channel="emial"))
    assert journey is not None  # the store re-checking what it holds: the definition alone


def test_an_unknown_channel_names_the_channels_there_are() -> None:
    found = delivery_errors(doc(steps__remind__channel="emial"), Delivery())
    assert found == {
        "steps.remind.channel": "unknown channel 'emial': the channels there are email, push, webhook, log "
        "(did you mean 'email'?)"
    }


def test_webhook_is_a_channel_and_its_destination_is_checked_when_known() -> None:
    step = {"type": "send", "channel": "webhook", "webhook": {"destination": "crm", "body": {"id": "{{ profile.id }}"}}}
    journey = doc()
    journey["steps"]["remind"] = {**step, "next": journey["steps"]["remind"].get("next")}
    assert delivery_errors(journey, Delivery(templates=TEMPLATES)) == {}
    _, problems = check_journey(journey, Delivery.serving((), TEMPLATES, webhook_destinations={"crn", "erp"}))
    assert [(p.path, p.message, p.severity) for p in problems] == [
        (
            "steps.remind.webhook.destination",
            "no webhook destination 'crm' in this workspace (did you mean 'crn'?): its messages fail until it is set "
            "(nudgeflow workspace webhooks destinations set crm --url …)",
            "warning",
        )
    ]


def test_extra_log_channels_of_the_deployment_are_channels() -> None:
    delivery = Delivery.serving(("email", "push", "sms"), TEMPLATES)
    assert delivery.channels == ("email", "push", "webhook", "log", "sms")
    assert delivery_errors(doc(steps__remind__channel="sms"), delivery) == {}


def test_missing_templates_and_templates_of_another_channel() -> None:
    found = delivery_errors(doc(), Delivery(templates={"cart-1": "push", "t10": "push"}, templates_from="templates/"))
    assert found == {
        "steps.remind.template": "template 'cart-1' is a push template, and this step sends email",
        "steps.offer.variants.1.template": "no template 'tfree' in templates/",
    }
    hinted = delivery_errors(doc(steps__remind__template="cart1"), Delivery(templates=TEMPLATES))
    assert hinted == {"steps.remind.template": "no template 'cart1' in this workspace (did you mean 'cart-1'?)"}


def test_log_steps_need_no_stored_template() -> None:
    # The log channel records the template's name and renders nothing.
    assert (
        delivery_errors(
            doc(steps__remind__channel="log", steps__remind__template="nowhere"), Delivery(templates=TEMPLATES)
        )
        == {}
    )


def test_template_problems_carry_the_line_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "j.yaml"
    path.write_text(
        "id: j\nname: J\ntrigger: {type: event, event: A}\nsteps:\n  a:\n    type: send\n"
        "    channel: email\n    template: missing\n"
    )
    problems = validate_files([path], Delivery(templates={}))
    assert [p.format() for p in problems] == [f"{path}:8: steps.a.template: no template 'missing' in this workspace"]


def test_the_channels_named_are_the_channels_built() -> None:
    """CHANNELS is data in model/ (which imports no channel); it must name exactly the
    channels channels/ implements."""
    import importlib
    import pkgutil

    import nudgeflow.channels as package
    from nudgeflow.channels.base import Channel

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"nudgeflow.channels.{info.name}")

    def subclasses(cls: type) -> set[type]:
        out = set(cls.__subclasses__())
        for sub in list(out):
            out |= subclasses(sub)
        return out

    built = {getattr(c, "name", None) for c in subclasses(Channel)} - {None, ""}
    assert set(CHANNELS) <= built, built


# --- decimal durations ------------------------------------------------------------------------------


def test_durations_accept_decimals() -> None:
    from nudgeflow.model.journeys import duration_ms

    assert duration_ms("1.5d") == 129_600_000
    assert duration_ms("0.5h") == 1_800_000
    assert duration_ms("-1.5d") == -129_600_000
    assert duration_ms("0.1s") == 100
    journey, problems = check_journey(doc(steps__pause__duration="1.5d", goal__within="0.5h"))
    assert journey is not None, problems
    assert journey.steps["pause"].duration == "1.5d"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "1.5.3d",
            "'1.5.3d' is not a duration (use a positive number, decimals allowed, and a unit: 500ms, 90s, 15m, "
            "1h, 1.5d, 2w)",
        ),
        (
            "-1d",
            "'-1d' is not a duration (use a positive number, decimals allowed, and a unit: 500ms, 90s, 15m, 1h, "
            "1.5d, 2w)",
        ),
        (
            ".5h",
            "'.5h' is not a duration (use a positive number, decimals allowed, and a unit: 500ms, 90s, 15m, 1h, "
            "1.5d, 2w)",
        ),
        ("0.0005s", "'0.0005s' is not a whole number of milliseconds"),
    ],
)
def test_bad_durations_say_what_is_wrong(text: str, message: str) -> None:
    assert errors(doc(steps__pause__duration=text)) == {"steps.pause.duration": message}


def test_offsets_accept_decimals_and_a_sign() -> None:
    from nudgeflow.model.journeys import duration_ms

    journey, problems = check_journey(
        {
            "id": "d",
            "name": "D",
            "trigger": {"type": "date_relative", "trait": "trial_ends_at", "offset": "-1.5d"},
            "steps": {"a": {"type": "exit"}},
        }
    )
    assert journey is not None, problems
    assert duration_ms(journey.trigger.offset) == -129_600_000  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="not a duration"):
        duration_ms("1.5.3d")


# --- location triggers with catalog places ---------------------------------------------------------

LOCATION = {
    "id": "near",
    "name": "Near",
    "trigger": {
        "type": "location",
        "radius_m": 200,
        "catalog_places": {"ids": ["flagship", "gone"], "tags": ["store", "kiosk"]},
    },
    "steps": {"a": {"type": "exit"}},
}


def test_a_location_trigger_needs_places_from_somewhere() -> None:
    bare = {**LOCATION, "trigger": {"type": "location", "radius_m": 200}}
    assert errors(bare) == {"trigger": "a location trigger needs `places`, `catalog_places` or both"}
    empty = {**LOCATION, "trigger": {"type": "location", "radius_m": 200, "catalog_places": {}}}
    assert errors(empty) == {"trigger.catalog_places": "catalog_places needs `ids`, `tags` or both"}
    typo = {**LOCATION, "trigger": {"type": "location", "radius_m": 200, "catalog_places": {"tag": ["store"]}}}
    assert errors(typo) == {"trigger.catalog_places.tag": "unknown key 'tag' (did you mean 'tags'?)"}


def test_catalog_places_the_catalog_lacks_are_warnings() -> None:
    places = {"flagship": frozenset({"store"}), "depot": frozenset()}
    journey, problems = check_journey(LOCATION, Delivery(places=places))
    assert journey is not None  # the places may be imported later
    assert [(p.path, p.message, p.severity) for p in problems] == [
        (
            "trigger.catalog_places.ids.1",
            "no place 'gone' in the places catalog: the trigger fires nowhere until "
            "one is imported (nudgeflow catalog import places FILE)",
            "warning",
        ),
        (
            "trigger.catalog_places.tags.1",
            "no place in the places catalog has the tag 'kiosk': the trigger fires "
            "nowhere until one is imported (nudgeflow catalog import places FILE)",
            "warning",
        ),
    ]
    assert check_journey(LOCATION, Delivery())[1] == []  # places not given: not checked


def test_a_bare_yaml_on_key_is_the_segment_trigger_s_on() -> None:
    # PyYAML reads `on:` as the boolean true; unquoted `on: exit` must not become "enter".
    text = "id: j\nname: J\ntrigger: {type: segment, segment: lapsed, on: exit}\nsteps: {s: {type: exit}}\n"
    doc = yaml.safe_load(text)
    assert True in doc["trigger"]
    trigger = Journey.model_validate(doc).trigger
    assert isinstance(trigger, SegmentTrigger) and trigger.on == "exit"


@pytest.mark.parametrize(
    "fragment, path",
    [
        ("trigger: {type: event, event: Segment Entered}\nsteps: {s: {type: exit}}\n", "trigger.event"),
        (
            "trigger: {type: event, event: Order Completed}\ngoal: {event: Segment Exited, within: 1d}\n"
            "steps: {s: {type: exit}}\n",
            "goal.event",
        ),
        (
            "trigger: {type: event, event: Order Completed}\nexit: {events: [{event: Segment Entered}]}\n"
            "steps: {s: {type: exit}}\n",
            "exit.events.0.event",
        ),
        (
            "trigger: {type: inactivity, window: 30d, events: [Order Completed, Segment Exited]}\n"
            "steps: {s: {type: exit}}\n",
            "trigger.events.1",
        ),
    ],
)
def test_the_engines_own_segment_events_are_refused_with_the_way_to_say_it(fragment: str, path: str) -> None:
    journey, problems = check_journey(yaml.safe_load("id: j\nname: J\n" + fragment))
    assert journey is None
    [problem] = [p for p in problems if p.path == path]
    assert "does not read its own back" in problem.message and "type: segment" in problem.message


def test_experiment_automation_settings_go_on_experiments_with_known_values() -> None:
    accepted = doc(
        steps__split__on_winner="route_to_winner",
        steps__split__guardrails="report",
        steps__offer__on_winner="keep_all",
        steps__offer__guardrails="pause",
    )
    assert errors(accepted) == {}
    assert errors(doc(steps__offer__on_winner="sometimes")) == {
        "steps.offer.on_winner": "unknown value 'sometimes' (use one of keep_all, route_to_winner)"
    }
    assert errors(doc(steps__remind__on_winner="route_to_winner", steps__remind__guardrails="report")) == {
        "steps.remind.on_winner": "on_winner applies to experiments: a send step with `variants`, or a split",
        "steps.remind.guardrails": "guardrails applies to experiments: a send step with `variants`, or a split",
    }
    # The defaults written out on a plain send are what a stored draft carries: accepted.
    assert errors(doc(steps__remind__on_winner="keep_all", steps__remind__guardrails="pause")) == {}


def test_infinity_and_nan_are_refused_where_they_are() -> None:
    """YAML's .inf and .nan are floats JSON cannot hold: stored, a filter's value became null
    and the stored version no longer read back (`lt` needs a value), so no reader of the
    workspace's live journeys, the engine's catalog included, could load them."""
    import math

    from nudgeflow.model.journey_checks import load_text

    [(_, loaded)] = load_text(
        yaml.safe_dump(doc()) + "entry:\n  filter:\n    - {trait: score, op: lt, value: .inf}\n", "yaml"
    )
    journey, problems = check_journey(loaded)
    assert journey is None
    assert [(p.path, p.severity, p.line) for p in problems if "infinity" in p.message] == [
        ("entry.filter.0.value", "error", len(yaml.safe_dump(doc()).splitlines()) + 3)
    ]
    nan = copy.deepcopy(dict(loaded))
    nan["entry"] = {"filter": [{"trait": "score", "op": "in", "value": [1, math.nan]}]}
    assert [p.path for p in check_journey(nan)[1] if "infinity" in p.message] == ["entry.filter.0.value.1"]
    nan["entry"]["filter"][0]["value"] = [1, 1e300]  # large, but a number JSON holds
    assert check_journey(nan)[0] is not None
