// A segment's page: its definition's YAML highlighted by CodeMirror (read-only) once the
// vendored bundle is there; the server-rendered <pre> stays as it is otherwise.
(function () {
  "use strict";
  const cm = window.NFVendor && window.NFVendor.codemirror;
  const pre = document.querySelector("pre[data-yaml]");
  if (!cm || !pre) return;
  const parent = document.createElement("div");
  parent.className = "nf-code";
  parent.setAttribute("data-testid", "segment-definition-code");
  pre.after(parent);
  new cm.EditorView({
    parent,
    state: cm.EditorState.create({
      doc: pre.textContent,
      extensions: [
        cm.minimalSetup,
        cm.lineNumbers(),
        cm.yaml(),
        cm.EditorState.readOnly.of(true),
        cm.EditorView.editable.of(false),
        cm.EditorView.contentAttributes.of({ "aria-label": "The segment's definition (YAML)" }),
      ],
    }),
  });
  pre.hidden = true;
})();
