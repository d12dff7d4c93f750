// The journey page (templates/journeys/canvas.html): draws the canvas (canvas.js), fills the side
// panel with the selected node's settings, template preview links and metrics, and runs
// publish / pause / resume / archive through the admin API after a confirmation that says what
// happens to the people in flight (and, for a publish, how many would enter at once).
(function () {
  "use strict";

  const data = JSON.parse(document.getElementById("journey-data").textContent);
  const journey = data.journey;
  const counts = data.counts || {};
  const panelTitle = document.getElementById("panel-title");
  const panelBody = document.getElementById("panel-body");

  function add(parent, tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const key in attrs || {}) node.setAttribute(key, attrs[key]);
    parent.appendChild(node);
    return node;
  }

  function problemsOf(node) {
    // A problem belongs to the node whose document path its own starts with (steps.remind.next
    // is the remind step's); entry and the trigger's belong to the trigger.
    return (data.problems || []).filter((p) => {
      const path = p.path || "";
      if (node.kind === "end") return false;
      if (node.id === "@trigger") return path === "trigger" || path.startsWith("trigger.") || path.startsWith("entry");
      return path === node.path || path.startsWith(node.path + ".");
    });
  }

  // The template's current version rendered on the server with the sample context, as the
  // template editor's preview is (POST /api/templates/{name}/render: a read, any role). An
  // email's HTML goes into a sandboxed frame without scripts; a push shows its title and body.
  async function previewTemplate(item, name, nodeId) {
    const box = add(item, "div", "Rendering…", { class: "hint", "data-testid": "template-preview" });
    let answer;
    try {
      answer = await NF.api("POST", `/api/templates/${encodeURIComponent(name)}/render`, { sample: true }, { quiet: true });
    } catch (err) {
      box.textContent = `Not rendered: ${err.message}`;
      return;
    }
    if (!panelBody.isConnected || panelTitle.dataset.node !== nodeId) return; // another node since
    box.textContent = "";
    box.className = "nf-node-preview";
    if (answer.channel === "email") {
      add(box, "p", `Subject: ${answer.subject}`, { "data-testid": "preview-subject" });
      const frame = add(box, "iframe", null, {
        title: `Sample preview of ${name}`,
        sandbox: "",
        referrerpolicy: "no-referrer",
        width: "100%",
        height: "240",
      });
      frame.srcdoc = answer.html;
    } else {
      add(box, "p", answer.title, { "data-testid": "preview-subject", class: "nf-push-title" });
      add(box, "p", answer.body);
    }
  }

  function showNode(node) {
    panelTitle.dataset.node = node.id;
    panelTitle.textContent = node.id.startsWith("@") ? node.title : `${node.title}: ${node.id}`;
    panelBody.textContent = "";
    add(panelBody, "p", node.summary, { "data-testid": "panel-summary" });
    if (node.details.length) {
      const dl = add(panelBody, "dl", null, { "data-testid": "panel-settings" });
      for (const [label, value] of node.details) {
        add(dl, "dt", label);
        add(dl, "dd", value);
      }
    }
    if (node.templates.length) {
      add(panelBody, "h3", "Templates");
      const list = add(panelBody, "ul");
      for (const name of node.templates) {
        const item = add(list, "li");
        add(item, "a", `Open ${name}`, { href: `/templates/${encodeURIComponent(name)}`, "data-testid": "template-link" });
        previewTemplate(item, name, node.id);
      }
    }
    const metrics = counts[node.id] || [];
    add(panelBody, "h3", `Metrics (last ${data.window_days} days; “here now”: runs at this step)`);
    if (metrics.length) {
      const dl = add(panelBody, "dl", null, { "data-testid": "panel-metrics" });
      for (const [label, value] of metrics) {
        add(dl, "dt", label);
        add(dl, "dd", Number(value).toLocaleString("en"));
      }
    } else {
      add(panelBody, "p", "None counted at this node.", { class: "hint" });
    }
    // Editable: the trigger, the goal, the exit rules and every step (not the run's end, nor a
    // step that a link names but the document lacks).
    const editable = ["@trigger", "@goal", "@exit"].includes(node.id) || !node.id.startsWith("@");
    if (window.NFJourney && window.NFJourney.edit && editable && node.kind !== "missing") {
      editControls(node);
    }
    const problems = problemsOf(node);
    if (problems.length) {
      add(panelBody, "h3", "Problems");
      const list = add(panelBody, "ul", null, { "data-testid": "panel-problems" });
      for (const p of problems) add(list, "li", `${p.path}: ${p.message}`, { class: p.severity === "error" ? "error" : "hint" });
    }
  }

  const KINDS = ["send", "wait", "wait_for_event", "branch", "split", "update_profile", "exit"];

  // The selected node's structural edits (editors, with the definition's editor on the page):
  // a new step on one of its links, removing it, moving it up or down its chain.
  function editControls(node) {
    const box = add(panelBody, "div", null, { class: "stack", "data-testid": "node-edits" });
    add(box, "h3", "Change the journey here");
    // The node's own settings (the trigger, a step, the goal, the exit rules) as YAML, applied
    // into the document: the trigger's event, a wait's duration, a branch's conditions, variants.
    add(box, "label", "Settings (YAML)", { for: "edit-part" });
    const part = add(box, "textarea", null, { id: "edit-part", rows: "8", spellcheck: "false", "data-testid": "edit-part" });
    const apply = add(box, "button", "Apply the settings", { type: "button", "data-testid": "apply-part" });
    window.NFJourney.part(node.id).then((text) => {
      part.value = text;
    });
    apply.addEventListener("click", () => window.NFJourney.edit({ op: "set", step: node.id, part: part.value }));
    // The entry rules (filter, re-entry, period) have no node of their own: the trigger's node
    // shows them, so they are edited here too, as their own piece of the document ("@entry").
    if (node.id === "@trigger") {
      add(box, "label", "Entry rules (YAML): filter, reentry, period", { for: "edit-entry" });
      const entry = add(box, "textarea", null, { id: "edit-entry", rows: "6", spellcheck: "false", "data-testid": "edit-entry" });
      const applyEntry = add(box, "button", "Apply the entry rules", { type: "button", "data-testid": "apply-entry" });
      window.NFJourney.part("@entry").then((text) => {
        entry.value = text;
      });
      applyEntry.addEventListener("click", () =>
        window.NFJourney.edit({ op: "set", step: "@entry", part: entry.value, select: "@trigger" }),
      );
    }
    const links = data.graph.edges.filter((e) => e.source === node.id);
    if (links.length) {
      add(box, "label", "New step", { for: "edit-kind" });
      const kind = add(box, "select", null, { id: "edit-kind", "data-testid": "edit-kind" });
      for (const k of KINDS) add(kind, "option", k.replace(/_/g, " "), { value: k });
      add(box, "label", "On the link", { for: "edit-slot" });
      const slot = add(box, "select", null, { id: "edit-slot", "data-testid": "edit-slot" });
      for (const e of links) add(slot, "option", `${e.slot}${e.label ? ` (${e.label})` : ""} → ${e.target}`, { value: e.slot });
      const button = add(box, "button", "Add the step", { type: "button", "data-testid": "add-step" });
      button.addEventListener("click", () =>
        window.NFJourney.edit({ op: "add", step: node.id, slot: slot.value, kind: kind.value }),
      );
    }
    if (!node.id.startsWith("@")) {
      const row = add(box, "div", null, { class: "toolbar" });
      const up = add(row, "button", "Move up", { type: "button", "data-testid": "move-up" });
      up.addEventListener("click", () => window.NFJourney.edit({ op: "move", step: node.id, direction: "up" }));
      const down = add(row, "button", "Move down", { type: "button", "data-testid": "move-down" });
      down.addEventListener("click", () => window.NFJourney.edit({ op: "move", step: node.id, direction: "down" }));
      const remove = add(row, "button", "Remove this step", { type: "button", class: "danger", "data-testid": "remove-step" });
      remove.addEventListener("click", () => window.NFJourney.edit({ op: "remove", step: node.id }));
    }
  }

  const box = document.getElementById("canvas");
  let canvas = null;
  function mark() {
    const marks = {};
    for (const node of data.graph.nodes) {
      const found = problemsOf(node);
      if (found.length) marks[node.id] = found.map((p) => p.message);
    }
    canvas.setProblems(marks);
  }
  function draw() {
    canvas = window.NFCanvas.render(box, data.graph, {
      counts,
      label: `Journey canvas of ${journey.name}`,
      onSelect: showNode,
    });
    window.NFJourney.canvas = canvas;
    mark();
  }
  window.NFJourney = { canvas, data };
  draw();

  // --- editing the definition --------------------------------------------------------------
  // The YAML document is the one source: each change is checked by the admin API's validate
  // (the checks of `journeys validate`, templates and channels included) and drawn from the
  // server's graph of the same text; the last good drawing stays while the text is not a journey.
  const editorBox = document.getElementById("yaml-editor");
  if (editorBox && data.yaml !== null) {
    const cm = window.NFVendor.codemirror;
    const state = document.getElementById("edit-state");
    const list = document.getElementById("edit-problems");
    let timer = null;
    let round = 0;
    const view = new cm.EditorView({
      doc: data.yaml,
      parent: editorBox,
      extensions: [
        cm.basicSetup,
        cm.yaml(),
        cm.EditorView.contentAttributes.of({ "aria-label": "The journey's definition (YAML)" }),
        cm.EditorView.updateListener.of((update) => {
          if (!update.docChanged) return;
          clearTimeout(timer);
          state.textContent = "Changed: checking…";
          timer = setTimeout(check, 350);
        }),
      ],
    });
    const text = () => view.state.doc.toString();
    const yamlCall = (method, path, headers) =>
      window.NF.api(method, path, text(), { contentType: "application/yaml", quiet: true, headers });

    async function check() {
      const mine = ++round;
      let checked;
      let drawn;
      try {
        [checked, drawn] = await Promise.all([yamlCall("POST", "/api/journeys/validate"), yamlCall("POST", "/journeys/graph")]);
      } catch (err) {
        state.textContent = `Not checked: ${err.detail || err.message}`;
        return;
      }
      if (mine !== round) return; // a newer change is being checked
      data.problems = checked.problems;
      if (drawn.graph) {
        data.graph = drawn.graph;
        draw();
        if (selectNext && data.graph.nodes.some((n) => n.id === selectNext)) {
          canvas.focus(selectNext);
          canvas.select(selectNext);
        }
        selectNext = null;
      } else {
        mark();
      }
      list.textContent = "";
      for (const p of checked.problems) {
        add(list, "li", `${p.line ? `line ${p.line}, ` : ""}${p.path || "the document"}: ${p.message}`, {
          class: p.severity === "error" ? "error" : "hint",
        });
      }
      const errors = checked.problems.filter((p) => p.severity === "error").length;
      state.textContent = errors
        ? `${errors} error${errors === 1 ? "" : "s"}: the draft cannot be saved until they are fixed.`
        : "Checked: no errors. Save the draft to keep it.";
      state.dataset.valid = errors ? "false" : "true";
    }
    window.NFJourney.editor = view;
    let selectNext = null;
    // A structural edit: the server makes it on the text (model/journey_edits.py), the editor
    // takes the new text, and the usual check and drawing follow; the step edited is selected.
    window.NFJourney.part = async (nodeId) => {
      try {
        const done = await window.NF.api("POST", "/journeys/edit", { op: "part", step: nodeId, yaml: text() }, { quiet: true });
        return done.yaml;
      } catch (err) {
        return `# not available: ${err.detail || err.message}`;
      }
    };
    window.NFJourney.edit = async (asked) => {
      let done;
      try {
        done = await window.NF.api("POST", "/journeys/edit", { ...asked, yaml: text() });
      } catch (err) {
        return; // NF.api has shown why (a step that cannot move, the text not yet a journey)
      }
      selectNext = asked.op === "remove" ? null : asked.select || done.step;
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: done.yaml } });
    };

    // The save carries the draft's revision this page was loaded with (If-Match): should someone
    // have saved the draft since, the server refuses it (412) rather than let this text overwrite
    // theirs, and the text being edited stays here to be downloaded or merged after a reload.
    document.getElementById("save-draft").addEventListener("click", async () => {
      try {
        await yamlCall("PUT", `/api/journeys/${encodeURIComponent(journey.id)}`, { "If-Match": `"${journey.draft_revision}"` });
      } catch (err) {
        if (err.status === 412 && err.body && typeof err.body === "object" && "current_revision" in err.body) {
          state.textContent = "Not saved: the draft changed since this page was loaded.";
          window.NF.show(
            `Not saved: someone else saved this draft since you opened it (it is at revision ${err.body.current_revision} now, this page has revision ${journey.draft_revision}). ` +
              "Nothing was overwritten. Download your edited text, reload the page to see theirs, and make your change again.",
            "error",
          );
          return;
        }
        const problems = (err.body && err.body.problems) || [];
        window.NF.show(`Not saved: ${problems.map((p) => `${p.path}: ${p.message}`).join("; ") || err.detail}`, "error");
        return;
      }
      window.NF.show("Draft saved.", "ok");
      setTimeout(() => window.location.reload(), 300);
    });
    document.getElementById("download-edited").addEventListener("click", () => {
      const link = document.createElement("a");
      link.href = URL.createObjectURL(new Blob([text()], { type: "application/yaml" }));
      link.download = `${journey.id}.yaml`;
      document.body.appendChild(link);
      link.click();
      link.remove();
    });
  }

  // --- publish, pause, resume, archive ------------------------------------------------------
  const dialog = document.getElementById("confirm");
  const inFlight = Number(journey.in_flight || 0).toLocaleString("en");
  const base = `/api/journeys/${encodeURIComponent(journey.id)}`;

  async function explain(action) {
    if (action === "pause") {
      return `Nobody new enters. The ${inFlight} people in the journey now are held where they are when they next move (a wait ends, an event arrives) until you resume it.`;
    }
    if (action === "resume") {
      return `People enter again. Every run held by the pause (of the ${inFlight} people in the journey now) goes on from where it was held.`;
    }
    if (action === "archive") {
      return `Final: nobody enters again and the journey can no longer be changed, published or resumed. The ${inFlight} people in the journey now end their runs when they next move.`;
    }
    const plan = await window.NF.api("POST", `${base}/publish?dry_run=true`);
    if (!plan.new_version) return "The draft is the live version already: publishing changes nothing.";
    const next = (journey.live_version || 0) + 1;
    const entering = `${Number(plan.would_enter).toLocaleString("en")} ${plan.would_enter === 1 ? "person" : "people"} would enter at once (of ${Number(plan.profiles).toLocaleString("en")} profiles looked at).`;
    const stay = journey.live_version
      ? ` The ${inFlight} people in the journey now stay on the version they entered with until their run ends.`
      : "";
    const paused = journey.status === "paused" ? " The journey stays paused: the new version is what resume brings back." : "";
    return `Publishing makes the draft version ${next}. ${entering}${stay}${paused}`;
  }

  async function act(action) {
    let text;
    try {
      text = await explain(action);
    } catch (err) {
      return; // NF.api has shown why (a draft with errors cannot be published)
    }
    document.getElementById("confirm-title").textContent = `${action[0].toUpperCase()}${action.slice(1)} ${journey.name}?`;
    document.getElementById("confirm-text").textContent = text;
    dialog.dataset.action = action;
    dialog.showModal();
    document.getElementById("confirm-no").focus();
  }

  document.querySelectorAll("[data-action]").forEach((button) => {
    button.addEventListener("click", () => act(button.dataset.action));
  });
  document.getElementById("confirm-no").addEventListener("click", () => dialog.close());
  document.getElementById("confirm-yes").addEventListener("click", async () => {
    const action = dialog.dataset.action;
    dialog.close();
    try {
      const done = await window.NF.api("POST", `${base}/${action}`);
      window.NF.show(action === "publish" ? `Published: version ${done.version} (${done.status}).` : `Now ${done.status}.`, "ok");
      setTimeout(() => window.location.reload(), 400);
    } catch (err) {
      // shown by NF.api
    }
  });
})();
