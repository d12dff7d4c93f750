// The console's vendored libraries, exposed as one global (window.NFVendor) so the server-rendered
// pages' small scripts need no module loader. build.mjs bundles this file; add an export here and
// rebuild to make another piece of a pinned package available to the pages.
import dagre from "@dagrejs/dagre";
import uPlot from "uplot";
import { EditorView, basicSetup, minimalSetup } from "codemirror";
import { EditorState, Compartment, StateEffect, StateField } from "@codemirror/state";
import { keymap, placeholder, Decoration, ViewPlugin, lineNumbers } from "@codemirror/view";
import { indentWithTab, defaultKeymap, history, historyKeymap } from "@codemirror/commands";
import { html } from "@codemirror/lang-html";
import { liquid } from "@codemirror/lang-liquid";
import { yaml } from "@codemirror/lang-yaml";
import { json } from "@codemirror/lang-json";
import { linter, lintGutter, setDiagnostics, forceLinting } from "@codemirror/lint";
import { MergeView, unifiedMergeView } from "@codemirror/merge";

window.NFVendor = Object.freeze({
  dagre,
  uPlot,
  codemirror: Object.freeze({
    EditorView,
    EditorState,
    Compartment,
    StateEffect,
    StateField,
    Decoration,
    ViewPlugin,
    basicSetup,
    minimalSetup,
    keymap,
    placeholder,
    lineNumbers,
    indentWithTab,
    defaultKeymap,
    history,
    historyKeymap,
    html,
    liquid,
    yaml,
    json,
    linter,
    lintGutter,
    setDiagnostics,
    forceLinting,
    MergeView,
    unifiedMergeView,
  }),
});
