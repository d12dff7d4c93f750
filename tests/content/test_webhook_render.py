"""Rendering a webhook step's body and URL with a person's context: typed values, the `json`
filter, a body that must come out as JSON, and a URL that keeps its origin."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from nudgeflow.content.errors import RenderError
from nudgeflow.content.webhook_render import MAX_BODY_BYTES, compile_call, render_call
from nudgeflow.model.journeys import WebhookCall

CONTEXT: dict[str, Any] = {
    "profile": {"id": "p 1", "email": "ada@example.com", "first_name": "Ada", "vip": True},
    "event": {"name": "Order Completed", "properties": {"total": 42.5, "items": [{"sku": "a-1", "qty": 2}]}},
    "message": {"key": "r1:s:1", "step": "s"},
}


def render(**call: Any) -> Any:
    webhook = WebhookCall.model_validate({"destination": "crm", **call})
    rendered = render_call(compile_call(webhook), CONTEXT, webhook.url)
    return rendered.url, orjson.loads(rendered.body), rendered.body


def test_every_string_is_liquid_and_one_output_tag_keeps_its_type() -> None:
    _, body, raw = render(
        body={
            "email": "{{ profile.email }}",
            "total": "{{ event.properties.total }}",
            "double": "{{ event.properties.total | times: 2 }}",
            "items": "{{ event.properties.items }}",
            "vip": "{{ profile.vip }}",
            "missing_ok": "{{ profile.phone | default: nil }}",
            "as_text": "{{ event.properties.total }} EUR",
            "already_json": "{{ event.properties.items | json }}",
            "nested": [{"sku": "{{ event.properties.items[0].sku }}"}, 7, None, False],
            "{{ literal key }}": "plain",
        }
    )
    assert body == {
        "email": "ada@example.com",
        "total": 42.5,
        "double": 85.0,
        "items": [{"sku": "a-1", "qty": 2}],
        "vip": True,
        "missing_ok": None,
        "as_text": "42.5 EUR",
        "already_json": [{"sku": "a-1", "qty": 2}],
        "nested": [{"sku": "a-1"}, 7, None, False],
        "{{ literal key }}": "plain",
    }
    assert raw == orjson.dumps(body)  # compact JSON, in the author's order


def test_a_string_body_is_a_template_whose_output_is_json() -> None:
    _, body, _ = render(body='{"to": {{ profile.email | json }}, "items": {{ event.properties.items | json }}}')
    assert body == {"to": "ada@example.com", "items": [{"sku": "a-1", "qty": 2}]}
    with pytest.raises(RenderError) as info:
        render(body='{"to": {{ profile.email }}}')
    assert info.value.reason == (
        "webhook.body: the rendered text is not JSON (unexpected character, expected a JSON value) at line 1, "
        'column 8: …{"to": ada@example.com}… (write values with the json filter: {{ value | json }})'
    )


def test_liquid_errors_name_the_part_of_the_body() -> None:
    with pytest.raises(RenderError, match=r"^webhook\.body\.nested\.0\.x:1:4: profile\.nope is undefined$"):
        render(body={"nested": [{"x": "{{ profile.nope }}"}]})
    with pytest.raises(RenderError, match=r"^webhook\.body\.a:1:1: .*never closed"):
        render(body={"a": "{% if profile.vip %}yes"})


def test_a_rendered_url_keeps_the_origin_written() -> None:
    url, _, _ = render(
        destination=None, url="https://api.example.com/c/{{ profile.id | url_encode }}?e={{ profile.email }}", body={}
    )
    assert url == "https://api.example.com/c/p+1?e=ada@example.com"
    for value, why in [
        ("x y", "holds a space or control character"),
        ("a#frag", "has a fragment"),
    ]:
        webhook = WebhookCall(url="https://api.example.com/{{ profile.id }}", body={})
        with pytest.raises(RenderError, match=why):
            render_call(compile_call(webhook), {"profile": {"id": value}}, webhook.url)
    # A value cannot move the request to another host, whatever it holds.
    webhook = WebhookCall(url="https://api.example.com/{{ profile.id }}", body={})
    for value in ("@evil.example/x", "/@evil.example", "..%2F..%2F"):
        out = render_call(compile_call(webhook), {"profile": {"id": value}}, webhook.url)
        assert out.url is not None and out.url.startswith("https://api.example.com/")
    query = WebhookCall(url="https://api.example.com?id={{ profile.id }}", body={})
    assert render_call(compile_call(query), {"profile": {"id": "7"}}, query.url).url == "https://api.example.com?id=7"


def test_a_body_past_the_limit_is_refused() -> None:
    big = "x" * (MAX_BODY_BYTES + 1)
    with pytest.raises(
        RenderError, match=rf"the rendered body is {MAX_BODY_BYTES + 9} bytes; the limit is {MAX_BODY_BYTES}$"
    ):
        render(body={"a": big})


def test_the_liquid_is_parsed_once_per_definition() -> None:
    first = WebhookCall(destination="crm", body={"a": "{{ profile.email }}"})
    again = WebhookCall(destination="crm", body={"a": "{{ profile.email }}"})
    assert compile_call(first) is compile_call(again)
