"""The console's vendored bundle (console-vendor.js) in Chromium: each library it exposes on
window.NFVendor loads and works — dagre lays out a graph, CodeMirror edits and highlights YAML and
Liquid, MergeView diffs two documents, uPlot draws a chart — with no request leaving the page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

VENDOR = Path(__file__).resolve().parents[2] / "src" / "nudgeflow" / "web" / "console" / "static" / "vendor"


@pytest.fixture(scope="module")
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.set_content('<!DOCTYPE html><html lang="en"><head><title>vendor</title></head><body></body></html>')
    page.add_style_tag(path=str(VENDOR / "uPlot.min.css"))
    page.add_script_tag(path=str(VENDOR / "console-vendor.js"))
    yield page
    # Inline content and inlined scripts: nothing was fetched from anywhere (no CDN).
    assert [url for url in requests if not url.startswith(("about:", "data:"))] == []
    context.close()


def test_dagre_lays_out_a_graph(page: Any) -> None:
    layout = page.evaluate(
        """() => {
          const g = new NFVendor.dagre.graphlib.Graph();
          g.setGraph({ rankdir: "TB", nodesep: 20, ranksep: 30 });
          g.setDefaultEdgeLabel(() => ({}));
          for (const id of ["trigger", "wait", "send"]) g.setNode(id, { width: 120, height: 40 });
          g.setEdge("trigger", "wait");
          g.setEdge("wait", "send");
          NFVendor.dagre.layout(g);
          return ["trigger", "wait", "send"].map((id) => g.node(id).y);
        }"""
    )
    assert layout[0] < layout[1] < layout[2]


def test_codemirror_edits_and_highlights(page: Any) -> None:
    result = page.evaluate(
        """() => {
          const cm = NFVendor.codemirror;
          const make = (doc, lang) => {
            const parent = document.createElement("div");
            document.body.appendChild(parent);
            return new cm.EditorView({ doc, parent, extensions: [cm.basicSetup, lang] });
          };
          const yamlView = make("id: welcome\\nname: Welcome\\n", cm.yaml());
          yamlView.dispatch({ changes: { from: yamlView.state.doc.length, insert: "status: draft\\n" } });
          const liquidView = make("<p>Hi {{ profile.first_name }}</p>", cm.liquid());
          make('{"a": 1}', cm.json());
          make("<b>x</b>", cm.html());
          return {
            doc: yamlView.state.doc.toString(),
            editors: document.querySelectorAll(".cm-editor").length,
            highlighted: liquidView.dom.querySelectorAll(".cm-line span").length,
          };
        }"""
    )
    assert result["doc"] == "id: welcome\nname: Welcome\nstatus: draft\n"
    assert result["editors"] == 4
    assert result["highlighted"] >= 3


def test_merge_view_shows_a_change(page: Any) -> None:
    changed = page.evaluate(
        """() => {
          const cm = NFVendor.codemirror;
          const parent = document.createElement("div");
          document.body.appendChild(parent);
          const view = new cm.MergeView({
            a: { doc: "name: Welcome\\nstatus: draft\\n", extensions: [cm.yaml()] },
            b: { doc: "name: Welcome\\nstatus: live\\n", extensions: [cm.yaml()] },
            parent,
          });
          return view.dom.querySelectorAll(".cm-changedLine").length;
        }"""
    )
    assert changed >= 2


def test_uplot_draws_a_chart(page: Any) -> None:
    size = page.evaluate(
        """() => {
          const parent = document.createElement("div");
          document.body.appendChild(parent);
          const chart = new NFVendor.uPlot(
            { width: 300, height: 150, series: [{}, { label: "sent", stroke: "blue" }] },
            [[1, 2, 3], [5, 7, 4]],
            parent,
          );
          const canvas = parent.querySelector("canvas");
          return [chart.width, canvas.width > 0];
        }"""
    )
    assert size == [300, True]
