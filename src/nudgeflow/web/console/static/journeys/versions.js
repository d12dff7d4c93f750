// The versions page: the two chosen definitions side by side (CodeMirror's MergeView, read-only,
// changed lines marked).
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("diff-data").textContent);
  const cm = window.NFVendor.codemirror;
  const readOnly = [cm.EditorView.editable.of(false), cm.EditorState.readOnly.of(true), cm.lineNumbers(), cm.yaml()];
  const view = new cm.MergeView({
    a: { doc: data.left.text, extensions: [...readOnly, cm.EditorView.contentAttributes.of({ "aria-label": data.left.label })] },
    b: { doc: data.right.text, extensions: [...readOnly, cm.EditorView.contentAttributes.of({ "aria-label": data.right.label })] },
    parent: document.getElementById("diff"),
    collapseUnchanged: { margin: 3, minSize: 6 },
  });
  window.NFVersions = { view };
})();
