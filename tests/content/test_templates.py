"""Templates without a database: compile once, render per person, errors with positions."""

from __future__ import annotations

from pathlib import Path

import pytest

import nudgeflow.content.templates as T
from nudgeflow.content.compiled_templates import load_template_files
from nudgeflow.content.email_text import html_to_text
from nudgeflow.content.sample import sample_context
from nudgeflow.content.templates import (
    Limits,
    RenderedEmail,
    RenderedPush,
    TemplateError,
    TemplateSource,
    compile_template,
    parse_source,
    render,
)
from tests.content.template_samples import SLOW_SUBJECT

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "templates"

CART_MJML = """\
<mjml>
  <mj-body>
    <mj-section><mj-column>
      <mj-text>Hi {{ profile.first_name | default: "there" }}, you left these behind:</mj-text>
    </mj-column></mj-section>
    {% for item in cart.items %}
    <mj-section>
      <mj-column>
        <mj-image src="{{ item.image | default: "https://cdn.example.com/none.png" }}" alt="{{ item.name }}"></mj-image>
        <mj-text>{{ item.name }}: {{ item.price | money: item.currency }}</mj-text>
      </mj-column>
    </mj-section>
    {% endfor %}
    {% if cart.items.size > 0 %}
    <mj-section><mj-column>\
<mj-button href="https://shop.example.com/cart?c={{ cart.id }}">Back to your cart</mj-button></mj-column></mj-section>
    {% endif %}
  </mj-body>
</mjml>
"""


def email(**fields: object) -> dict[str, object]:
    out: dict[str, object] = {"subject": "Hi {{ profile.first_name | default: 'there' }}", "body": CART_MJML}
    out.update(fields)
    return out


def test_mjml_loop_over_cart_items_renders_each_item() -> None:
    compiled = compile_template(email(preheader="{{ cart.items.size }} items waiting"))
    result = render(compiled, sample_context())
    assert isinstance(result, RenderedEmail)
    assert result.subject == "Hi Ana"
    assert result.preheader == "2 items waiting"
    # No text part written: one is made from the HTML once per version and rendered per
    # person, and reads as the rendered HTML converted (what it replaced, at ~3.5 ms a message).
    assert result.text is not None and "Stoneware Mug" in result.text and "Gooseneck Kettle" in result.text
    assert result.text == html_to_text(result.html)
    for name, image in (("Stoneware Mug", "mug.jpg"), ("Gooseneck Kettle", "kettle.jpg")):
        assert name in result.html and f"https://cdn.example.com/p/{image}" in result.html
    assert "€18.00" in result.html and "€64.90" in result.html
    assert 'href="https://shop.example.com/cart?c=cart_77"' in result.html
    assert "{{" not in result.html and "{%" not in result.html
    assert result.html.lstrip().lower().startswith("<!doctype html>")
    assert "2 items waiting" in result.html  # the preheader, hidden at the top of the body

    empty = render(compiled, {**sample_context(), "cart": {"id": None, "items": []}})
    assert "Back to your cart" not in empty.html and "Stoneware" not in empty.html


def test_mjml_is_compiled_once_per_template_not_per_render() -> None:
    before = T.MJML_COMPILES
    compiled = compile_template(email())
    assert before + 1 == T.MJML_COMPILES
    for first in ("Ana", "Bo", "Chen"):
        ctx = sample_context()
        ctx["profile"]["first_name"] = first
        assert f"Hi {first}" in render(compiled, ctx).html
    assert before + 1 == T.MJML_COMPILES
    # The stored HTML of a version is reused: no compile at all.
    again = compile_template(email(), compiled_html=compiled.html)
    assert before + 1 == T.MJML_COMPILES
    assert render(again, sample_context()).html == render(compiled, sample_context()).html


def test_undefined_variable_fails_with_part_line_and_column() -> None:
    compiled = compile_template(email(subject="Hello\n  {{ profile.nickname }}!"))
    with pytest.raises(TemplateError) as caught:
        render(compiled, sample_context())
    err = caught.value
    assert (err.part, err.line, err.column) == ("subject", 2, 6)
    assert "profile.nickname" in err.message


def test_undefined_in_mjml_body_points_at_the_authors_line() -> None:
    body = CART_MJML.replace("{{ item.name }}:", "{{ item.title }}:")
    compiled = compile_template(email(body=body))
    with pytest.raises(TemplateError) as caught:
        render(compiled, sample_context())
    err = caught.value
    line_no = next(i for i, line in enumerate(body.splitlines(), 1) if "item.title" in line)
    column = body.splitlines()[line_no - 1].index("item.title") + 1
    assert (err.part, err.line, err.column) == ("body", line_no, column)


def test_default_filter_and_falsy_if_on_missing_values() -> None:
    compiled = compile_template(
        {
            "subject": "{{ profile.first_name | default: 'friend' }}{% if coupon %} + {{ coupon }}{% endif %}",
            "body": "<p>{{ profile.city | default: 'your city' }}</p>",
        }
    )
    result = render(compiled, {"profile": {}})
    assert result.subject == "friend"
    assert result.html == "<p>your city</p>"


def test_html_body_escapes_values_subject_does_not() -> None:
    compiled = compile_template({"subject": "{{ n }}", "body": "<p>{{ n }}</p>", "text": "{{ n }}"})
    result = render(compiled, {"n": "Tom & <Jerry>"})
    assert result.subject == "Tom & <Jerry>"
    assert result.text == "Tom & <Jerry>"
    assert result.html == "<p>Tom &amp; &lt;Jerry&gt;</p>"


def test_syntax_error_position_at_compile_time() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(email(body="<p>one</p>\n<p>{% if profile.vip %}VIP</p>\n"))
    err = caught.value
    assert err.part == "body" and err.line == 2 and err.column is not None
    with pytest.raises(TemplateError) as caught:
        compile_template(email(preheader="ok {{ profile. }}"))
    assert caught.value.part == "preheader" and caught.value.line == 1


def test_unknown_filter_is_an_error() -> None:
    compiled = compile_template({"subject": "{{ profile.first_name | shout }}", "body": "<p>x</p>"})
    with pytest.raises(TemplateError) as caught:
        render(compiled, sample_context())
    assert caught.value.part == "subject" and "shout" in caught.value.message


def test_loop_iteration_limit() -> None:
    source = {"subject": "s", "body": "{% for i in (1..50) %}{% for j in (1..50) %}.{% endfor %}{% endfor %}"}
    assert len(render(compile_template(source), {}).html) == 2500
    small = compile_template(source, limits=Limits(loop_iterations=1000))
    with pytest.raises(TemplateError) as caught:
        render(small, {})
    assert caught.value.part == "body" and "loop" in caught.value.message


def test_output_limit() -> None:
    source = {"subject": "s", "body": "{% for i in items %}{{ i }}{% endfor %}"}
    limited = compile_template(source, limits=Limits(output_bytes=1000))
    assert render(limited, {"items": ["x" * 10] * 50}).html == "x" * 500
    with pytest.raises(TemplateError) as caught:
        render(limited, {"items": ["x" * 10] * 200})
    assert caught.value.part == "body" and "output" in caught.value.message


def test_an_error_in_any_part_means_no_result() -> None:
    compiled = compile_template(email(text="Bye {{ missing }}"))
    with pytest.raises(TemplateError) as caught:
        render(compiled, sample_context())
    assert caught.value.part == "text"


def test_mjml_that_does_not_compile() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(email(body="<mjml><mj-body><mj-section><mj-colum></mj-section></mj-body></mjml>"))
    assert caught.value.part == "body" and "MJML" in caught.value.message


def test_push_render() -> None:
    compiled = compile_template(
        {
            "channel": "push",
            "title": "{{ profile.first_name | default: 'Hey' }}, still thinking about it?",
            "body": "{{ cart.items.first.name }} is waiting in your cart",
            "image": "{{ cart.items.first.image }}",
            "url": "nudgeshop://cart/{{ cart.id }}",
            "data": {"cart_id": "{{ cart.id }}", "kind": "cart"},
        }
    )
    result = render(compiled, sample_context())
    assert isinstance(result, RenderedPush)
    assert result.title == "Ana, still thinking about it?"
    assert result.body == "Stoneware Mug is waiting in your cart"
    assert result.image == "https://cdn.example.com/p/mug.jpg"
    assert result.url == "nudgeshop://cart/cart_77"
    assert result.data == {"cart_id": "cart_77", "kind": "cart"}
    with pytest.raises(TemplateError) as caught:
        render(compiled, {"cart": {"items": []}})
    assert caught.value.part in ("body", "image")


def test_source_validation() -> None:
    with pytest.raises(TemplateError, match="subject"):
        parse_source({"body": "<p>x</p>"})
    with pytest.raises(TemplateError, match="title"):
        parse_source({"channel": "push", "body": "x"})
    with pytest.raises(TemplateError, match="only for push"):
        parse_source({"subject": "s", "body": "b", "url": "x"})
    with pytest.raises(TemplateError):
        parse_source({"subject": "s", "body": "b", "colour": "red"})
    a = TemplateSource.model_validate({"subject": "s", "body": "b"})
    assert (
        a.canonical_json()
        == TemplateSource.model_validate({"body": "b", "subject": "s", "channel": "email"}).canonical_json()
    )


def test_filter_hook_adds_filters_to_new_environments() -> None:
    def hook(env: object) -> None:
        env.filters["shout"] = lambda v: str(v).upper() + "!"  # type: ignore[attr-defined]

    T.FILTER_HOOKS.append(hook)
    try:
        compiled = compile_template({"subject": "{{ 'hi' | shout }}", "body": "x"}, limits=Limits(loop_iterations=7))
        assert render(compiled, {}).subject == "HI!"
    finally:
        T.FILTER_HOOKS.remove(hook)
        T.environment.cache_clear()


def test_every_example_template_renders_with_the_sample_context() -> None:
    loaded = load_template_files(EXAMPLES)
    names = {name for name, _ in loaded}
    journeys_dir = EXAMPLES.parent / "journeys"
    import re

    wanted = set(
        re.findall(r"template:\s*([A-Za-z0-9._-]+)", "".join(p.read_text() for p in journeys_dir.glob("*.yaml")))
    )
    assert wanted and wanted <= names, f"missing: {sorted(wanted - names)}"
    for name, source in loaded:
        result = render(compile_template(source), sample_context())
        if source.channel == "email":
            assert isinstance(result, RenderedEmail)
            assert "Ana" in result.subject + result.html, name
            assert "{{" not in result.html and "{%" not in result.html, name
            assert "https://nudge.example.com/u/sample-token" in result.html, name
            # The text part made once per version reads as the rendered HTML converted.
            assert result.text == html_to_text(result.html), name
        else:
            assert isinstance(result, RenderedPush)
            assert result.title and result.body, name


def test_a_render_past_its_wall_clock_budget_fails_saying_so() -> None:
    import time

    compiled = compile_template({"subject": SLOW_SUBJECT, "body": "<p>x</p>"})
    started = time.monotonic()
    with pytest.raises(TemplateError) as caught:
        render(compiled, {}, budget_ms=200)
    elapsed = time.monotonic() - started
    assert caught.value.part == "subject" and caught.value.line == 1
    assert "longer than its budget of 200 ms" in caught.value.message
    assert elapsed < 1.0  # stopped near the budget, not after the ~10 s the template wants
    assert T.render_budget_ms() == T.DEFAULT_RENDER_BUDGET_MS == 2000
    fast = compile_template({"subject": "{{ 'a,b' | split: ',' | join: '-' }}", "body": "<p>x</p>"})
    assert render(fast, {}, budget_ms=200).subject == "a-b"  # the budget is per render, not per process


@pytest.mark.parametrize(
    "body, message",
    [
        ("{{ big | split: ',' | sort | join: ',' }}", "filter 'split' made a list of 30000 items; the limit is 20000"),
        ("{{ (1..100000000) | join }}", "filter 'join' was given a list of 100000000 items"),
        (
            "{% assign s = 'ab' %}{% for i in (1..40) %}{% assign s = s | append: s %}{% endfor %}{{ s | size }}",
            "filter 'append' made a string of 1048576 characters; the limit is 1000000",
        ),
    ],
)
def test_no_filter_takes_or_makes_a_value_past_the_ceiling(body: str, message: str) -> None:
    compiled = compile_template({"subject": "s", "body": body})
    with pytest.raises(TemplateError) as caught:
        render(compiled, {"big": ",".join(str(i) for i in range(30_000))})
    assert caught.value.part == "body" and message in caught.value.message


def test_the_value_ceiling_is_one_of_the_limits() -> None:
    compiled = compile_template(
        {"subject": "s", "body": "{{ big | split: ',' | size }}"}, limits=Limits(value_items=100)
    )
    assert render(compiled, {"big": ",".join("x" * 100)}).html == "100"
    with pytest.raises(TemplateError) as caught:
        render(compiled, {"big": ",".join("x" * 101)})
    assert "101 items; the limit is 100" in caught.value.message
