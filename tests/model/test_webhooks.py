"""The webhook step's definition and the workspace's destinations, as data: what is accepted,
what is refused and how the refusal reads."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from nudgeflow.model.journey_checks import check_journey
from nudgeflow.model.journeys import SendStep
from nudgeflow.model.webhooks import (
    MASK,
    Destination,
    WebhookSettings,
    WebhookSettingsError,
    check_url,
    json_path_get,
    new_secret,
    secret_key,
)


def journey(step: dict[str, Any]) -> dict[str, Any]:
    return {"id": "j", "name": "J", "trigger": {"type": "event", "event": "A"}, "steps": {"s": step}}


def errors(step: dict[str, Any]) -> dict[str, str]:
    _, found = check_journey(journey(step))
    return {p.path: p.message for p in found if p.severity == "error"}


def test_a_webhook_step_names_a_url_or_a_destination_and_a_body() -> None:
    ok = {
        "type": "send",
        "channel": "webhook",
        "webhook": {
            "url": "https://api.example.com/contacts/{{ profile.id | url_encode }}?src={{ journey.id }}",
            "method": "PUT",
            "body": {"email": "{{ profile.email }}", "n": 3},
            "response_traits": {"crm_id": "$.id", "first": "$.items[0].sku", "all": "$"},
        },
    }
    found, problems = check_journey(journey(ok))
    assert problems == [] and found is not None
    step = found.steps["s"]
    assert isinstance(step, SendStep) and step.webhook is not None and step.template is None
    assert errors({"type": "send", "channel": "webhook", "webhook": {"destination": "crm", "body": "{}"}}) == {}


@pytest.mark.parametrize(
    "step, path, message",
    [
        (
            {"type": "send", "channel": "webhook", "template": "t"},
            "steps.s",
            "a webhook step needs `webhook` (its url or destination, and its body)",
        ),
        (
            {"type": "send", "channel": "webhook", "template": "t", "webhook": {"destination": "crm", "body": {}}},
            "steps.s",
            "a webhook step sends `webhook.body`: it has no `template` or `variants`",
        ),
        (
            {"type": "send", "channel": "email", "template": "t", "webhook": {"destination": "crm", "body": {}}},
            "steps.s",
            "`webhook` goes only with channel: webhook (this step sends email)",
        ),
        (
            {"type": "send", "channel": "webhook", "webhook": {"url": "https://a.example/", "destination": "crm"}},
            "steps.s.webhook",
            "missing required key 'body'",
        ),
        (
            {"type": "send", "channel": "webhook", "webhook": {"body": {}}},
            "steps.s.webhook",
            "a webhook names either `url` or `destination`",
        ),
        (
            {"type": "send", "channel": "webhook", "webhook": {"url": "https://{{ profile.host }}/x", "body": {}}},
            "steps.s.webhook.url",
            "may hold Liquid only after its scheme, host and port (in the path or query): where a webhook goes is "
            "fixed in the journey",
        ),
        (
            {"type": "send", "channel": "webhook", "webhook": {"url": "gopher://a.example/", "body": {}}},
            "steps.s.webhook.url",
            "must be an absolute http:// or https:// URL (e.g. https://hooks.example.com/nudgeflow)",
        ),
        (
            {"type": "send", "channel": "webhook", "webhook": {"destination": "crm", "body": {}, "method": "GET"}},
            "steps.s.webhook.method",
            "",
        ),
        (
            {
                "type": "send",
                "channel": "webhook",
                "webhook": {"destination": "crm", "body": {}, "response_traits": {"id": "id"}},
            },
            "steps.s.webhook.response_traits.id",
            "",
        ),
    ],
)
def test_webhook_fields_are_checked_where_they_are_written(step: dict[str, Any], path: str, message: str) -> None:
    found = errors(step)
    assert path in found, found
    assert message in found[path]


def test_urls_refuse_credentials_fragments_and_liquid_before_the_path() -> None:
    assert check_url("https://hooks.example.com/a?b=1") == "https://hooks.example.com/a?b=1"
    for bad, why in [
        ("https://user:pw@hooks.example.com/", "must not carry a user or password"),
        ("https://hooks.example.com/#x", "must not have a fragment"),
        ("https://hooks.example.com/a b", "must not contain spaces or control characters"),
        ("hooks.example.com/a", "must be an absolute http:// or https:// URL"),
        ("https://hooks.example.com/{{ x }}", "may not hold Liquid here"),
    ]:
        with pytest.raises(ValueError, match=why):
            check_url(bad)
    assert check_url("https://h.example/{{ x | url_encode }}", liquid=True)
    with pytest.raises(ValueError, match="only after its scheme, host and port"):
        check_url("https://h.example{{ x }}/", liquid=True)
    with pytest.raises(ValueError, match="spaces"):
        check_url("https://h.example/a b/{{ x }}", liquid=True)


def test_secrets_are_standard_webhooks_secrets() -> None:
    made = new_secret()
    assert made.startswith("whsec_") and len(secret_key(made)) == 32
    assert secret_key("whsec_" + base64.b64encode(b"k" * 24).decode()) == b"k" * 24
    for bad, why in [
        ("s3cret", "starts with whsec_"),
        ("whsec_not base64!", "not base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "holds 24 to 64 bytes; this one holds 5"),
    ]:
        with pytest.raises(WebhookSettingsError, match=why):
            secret_key(bad)


def test_destinations_are_checked_and_masked() -> None:
    secret = new_secret()
    crm = Destination.build(
        "crm",
        {
            "url": "https://crm.example/hooks",
            "method": "put",
            "secret": secret,
            "headers": {"Authorization": "Bearer abc"},
            "allow_networks": ["10.20.0.0/16", "127.0.0.1"],
            "timeout_s": 5,
        },
    )
    assert crm.method == "PUT" and crm.allow_networks == ("10.20.0.0/16", "127.0.0.1/32")
    assert crm.masked() == {
        "name": "crm",
        "url": "https://crm.example/hooks",
        "method": "PUT",
        "secret": MASK,
        "headers": {"Authorization": MASK},
        "allow_networks": ["10.20.0.0/16", "127.0.0.1/32"],
        "timeout_s": 5.0,
    }
    settings = WebhookSettings.from_section({"secret": secret, "destinations": {"crm": crm.to_dict()}})
    assert settings.destinations["crm"] == crm
    assert WebhookSettings.from_section(settings.to_section()) == settings
    assert "Bearer abc" not in str(settings.masked()) and secret not in str(settings.masked())

    base = {"url": "https://crm.example/", "secret": secret}
    for fields, why in [
        ({"url": "ftp://x/"}, "destination 'crm': url must be an absolute http:// or https:// URL"),
        ({"method": "DELETE"}, "method 'DELETE' is not one of POST, PUT"),
        ({"headers": {"Webhook-Signature": "x"}}, "is set by Nudgeflow itself"),
        ({"headers": {"Idempotency-Key": "x"}}, "is set by Nudgeflow itself"),
        ({"headers": {"X-A": "a\r\nHost: evil"}}, "without line breaks"),
        ({"headers": {"bad name": "x"}}, "is not a header name"),
        ({"allow_networks": ["10.0.0.0/33"]}, "is not a network"),
        ({"timeout_s": 60}, "at most 30"),
        ({"secret": "nope"}, "starts with whsec_"),
        ({"colour": "red"}, "unknown field(s) colour"),
    ]:
        with pytest.raises(WebhookSettingsError, match=why.replace("(", r"\(").replace(")", r"\)")):
            Destination.build("crm", {**base, **fields})
    with pytest.raises(WebhookSettingsError, match="is not a destination name"):
        Destination.build("no spaces", base)


def test_json_paths_read_members_and_items() -> None:
    doc = {"id": "c-1", "customer": {"tier": "gold", "tags": ["a", {"k": 2}]}, "n": None}
    assert json_path_get(doc, "$") == (True, doc)
    assert json_path_get(doc, "$.id") == (True, "c-1")
    assert json_path_get(doc, "$.customer.tags[1].k") == (True, 2)
    assert json_path_get(doc, "$.n") == (True, None)  # present and null: set to null
    for missing in ("$.nope", "$.customer.tags[5]", "$.id.x", "$.customer[0]", "id"):
        assert json_path_get(doc, missing) == (False, None), missing
    assert json_path_get([1, 2], "$[1]") == (True, 2)
