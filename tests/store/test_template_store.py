"""Templates in the database (SQLite and PostgreSQL): versions, the compiled cache, files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import nudgeflow.content.templates as T
from nudgeflow.content import compiled_templates
from nudgeflow.content.sample import sample_context
from nudgeflow.content.templates import TemplateError, render
from nudgeflow.store import templates as store
from nudgeflow.store.schema import template_versions
from tests.store.pg_race import second_after_first
from tests.support import make_workspace

MJML = (
    "<mjml><mj-body><mj-section><mj-column><mj-text>Hi {{ profile.first_name }}</mj-text>"
    "</mj-column></mj-section></mj-body></mjml>"
)
SOURCE = {"subject": "Welcome, {{ profile.first_name | default: 'friend' }}", "body": MJML}


def test_versions_are_immutable_and_identical_saves_add_nothing(engine: Any) -> None:
    ws = _ws(engine)
    with engine.begin() as conn:
        assert compiled_templates.save_template(conn, ws, "welcome", SOURCE, 1000) == (1, True)
        assert compiled_templates.save_template(conn, ws, "welcome", dict(SOURCE), 2000) == (1, False)
        assert compiled_templates.save_template(conn, ws, "welcome", {**SOURCE, "subject": "Hello"}, 3000) == (2, True)
        # Back to the first text: a new version (history is never rewritten).
        assert compiled_templates.save_template(conn, ws, "welcome", SOURCE, 4000) == (3, True)
    with engine.connect() as conn:
        current = store.get_template(conn, ws, "welcome")
        assert current is not None and current["version"] == 3 and current["current_version"] == 3
        assert [v["version"] for v in current["versions"]] == [1, 2, 3]
        assert store.get_template(conn, ws, "welcome", 2)["source"]["subject"] == "Hello"  # type: ignore[index]
        assert store.get_template(conn, ws, "welcome", 9) is None
        assert store.get_template(conn, ws, "nope") is None
        listed = store.list_templates(conn, ws)
        assert [(t["name"], t["channel"], t["current_version"]) for t in listed] == [("welcome", "email", 3)]
        compiled_html = conn.execute(
            select(template_versions.c.compiled).where(
                template_versions.c.workspace_id == ws, template_versions.c.version == 1
            )
        ).scalar_one()
        assert compiled_html and "{{ profile.first_name }}" in compiled_html and "<mj-" not in compiled_html


def _ws(engine: Any) -> str:
    return make_workspace(engine).workspace_id


def test_an_invalid_template_is_never_stored(engine: Any) -> None:
    ws = _ws(engine)
    with engine.begin() as conn:
        with pytest.raises(TemplateError) as caught:
            compiled_templates.save_template(conn, ws, "broken", {"subject": "Hi {{ x", "body": "<p>b</p>"}, 1000)
        assert caught.value.part == "subject"
        with pytest.raises(store.TemplateStoreError):
            compiled_templates.save_template(conn, ws, "bad name!", SOURCE, 1000)
        with pytest.raises(store.TemplateStoreError):
            compiled_templates.save_template(conn, "ws_nope", "welcome", SOURCE, 1000)
        compiled_templates.save_template(conn, ws, "welcome", SOURCE, 1000)
        with pytest.raises(store.TemplateStoreError, match="email template"):
            compiled_templates.save_template(conn, ws, "welcome", {"channel": "push", "title": "t", "body": "b"}, 2000)
        assert store.list_templates(conn, ws)[0]["current_version"] == 1


def test_load_compiled_is_cached_per_version_and_never_recompiles(engine: Any) -> None:
    ws = _ws(engine)
    with engine.begin() as conn:
        compiled_templates.save_template(conn, ws, "welcome", SOURCE, 1000)
    compiled_templates.clear_cache()
    before = T.MJML_COMPILES
    with engine.connect() as conn:
        first = compiled_templates.load_compiled(conn, ws, "welcome")
        assert compiled_templates.load_compiled(conn, ws, "welcome") is first
        assert compiled_templates.load_compiled(conn, ws, "welcome", 1) is first
    assert before == T.MJML_COMPILES  # the stored HTML was used
    assert "Hi Ana" in render(first, sample_context()).html  # type: ignore[union-attr]
    with engine.begin() as conn:
        compiled_templates.save_template(conn, ws, "welcome", {**SOURCE, "subject": "v2"}, 2000)
    with engine.connect() as conn:
        second = compiled_templates.load_compiled(conn, ws, "welcome")
        assert second is not first and render(second, sample_context()).subject == "v2"  # type: ignore[union-attr]
        assert compiled_templates.load_compiled(conn, ws, "welcome", 1) is first
        with pytest.raises(store.TemplateNotFound):
            compiled_templates.load_compiled(conn, ws, "nope")
        with pytest.raises(store.TemplateNotFound):
            compiled_templates.load_compiled(conn, ws, "welcome", 7)


def test_template_files(tmp_path: Path) -> None:
    (tmp_path / "hello.yaml").write_text(
        "subject: \"Hi {{ profile.first_name | default: 'there' }}\"\nbody: |\n  <p>Hello</p>\n"
    )
    (tmp_path / "ping.yml").write_text("channel: push\ntitle: Ping\nbody: Hello {{ profile.first_name }}\n")
    (tmp_path / "notes.txt").write_text("not a template")
    loaded = compiled_templates.load_template_files(tmp_path)
    assert [(name, s.channel) for name, s in loaded] == [("hello", "email"), ("ping", "push")]
    (tmp_path / "broken.yaml").write_text("subject: ok\nbody: |\n  <p>\n  {{ profile. }}\n")
    with pytest.raises(compiled_templates.TemplateFileError) as caught:
        compiled_templates.load_template_files(tmp_path)
    assert caught.value.path.name == "broken.yaml"
    assert isinstance(caught.value.error, TemplateError) and caught.value.error.line == 2


def test_templates_are_paged_by_name(engine: Any) -> None:
    ws, other = _ws(engine), _ws(engine)
    with engine.begin() as conn:
        for n in range(7):
            compiled_templates.save_template(conn, ws, f"t{n}", SOURCE, 1000 + n)
        compiled_templates.save_template(conn, other, "t00", SOURCE, 1000)
    with engine.connect() as conn:
        pages, after = [], ""
        while True:
            page = store.template_page(conn, ws, after, 3)
            if not page:
                break
            pages.append([t["name"] for t in page])
            after = page[-1]["name"]
        assert pages == [["t0", "t1", "t2"], ["t3", "t4", "t5"], ["t6"]]
        first = store.template_page(conn, ws, "", 1)[0]
        assert (first["channel"], first["current_version"], first["updated_at_ms"]) == ("email", 1, 1000)
        assert store.count_templates(conn, ws) == 7 and store.count_templates(conn, other) == 1


def test_two_first_saves_at_once_make_two_versions_not_an_error(engine: Any) -> None:
    # Two API processes (or two `templates apply` runs) save a template that does not exist
    # yet, at the same moment. On PostgreSQL both found no row; the second's insert waited for
    # the first's commit and then failed on the primary key: a 500 for an ordinary save. It is
    # the next version now (or the same one, for the same text), as saves one after the other.
    ws = _ws(engine)
    second = second_after_first(
        engine,
        lambda conn: compiled_templates.save_template(conn, ws, "race", SOURCE, 1000),
        lambda conn: compiled_templates.save_template(conn, ws, "race", {**SOURCE, "subject": "Hello"}, 2000),
        "templates",
    )
    assert second == (2, True)
    with engine.connect() as conn:
        current = store.get_template(conn, ws, "race")
        assert current is not None and current["current_version"] == 2
        assert current["source"]["subject"] == "Hello"
