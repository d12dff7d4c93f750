// The template editor (/templates/{name}): CodeMirror for the body, a live preview rendered
// on the server as the author types (POST /api/templates/{name}/preview, 300 ms after the last
// keystroke), errors at their line and column, saving through PUT /api/templates/{name}.
// Everything the page shows comes from the server; this script only asks and displays.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("template-data").textContent);
  const base = "/api/templates/" + encodeURIComponent(data.name);
  const form = document.getElementById("template-form");
  const errorBox = document.getElementById("preview-error");
  const status = document.getElementById("preview-status");
  const DEBOUNCE_MS = 300;
  // How much of a notification each platform shows before it cuts the text with an ellipsis
  // (characters; the platforms' documented or observed collapsed-view limits).
  const SHOWN = {
    android: { title: 65, body: 240 },
    ios: { title: 50, body: 178 },
    desktop: { title: 60, body: 120 },
  };

  function csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  async function call(method, path, body) {
    const answer = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let json = null;
    try {
      json = await answer.json();
    } catch (e) {
      json = { detail: answer.statusText };
    }
    return { status: answer.status, json };
  }

  // --- the fields, with CodeMirror on the body once the vendored bundle is there ------------
  const editors = {}; // part -> {get(), mark(line, column, message), clear()}
  const cm = window.NFVendor && window.NFVendor.codemirror;

  function plainField(el) {
    return {
      get: () => el.value,
      mark: () => el.setAttribute("aria-invalid", "true"),
      clear: () => el.removeAttribute("aria-invalid"),
      onChange: (fn) => el.addEventListener("input", fn),
    };
  }

  function codeField(textarea, part) {
    const parent = document.createElement("div");
    parent.className = "nf-code";
    parent.setAttribute("data-testid", "editor-" + part);
    textarea.after(parent);
    textarea.hidden = true;
    const listeners = [];
    const view = new cm.EditorView({
      parent,
      state: cm.EditorState.create({
        doc: textarea.value,
        extensions: [
          cm.basicSetup,
          cm.keymap.of([cm.indentWithTab]),
          cm.liquid(), // Liquid over HTML: MJML's tags are highlighted as HTML's
          cm.lintGutter(),
          cm.EditorView.lineWrapping,
          // No tint behind the line being edited: the highlighted tags' green keeps its
          // contrast with the text's background (WCAG AA, checked by axe in the tests).
          cm.EditorView.theme({ ".cm-activeLine": { backgroundColor: "transparent" } }),
          cm.EditorState.readOnly.of(!data.can_edit),
          cm.EditorView.contentAttributes.of({ "aria-label": textarea.labels[0] ? textarea.labels[0].textContent : part }),
          cm.EditorView.updateListener.of((u) => {
            if (u.docChanged) {
              textarea.value = u.state.doc.toString();
              listeners.forEach((fn) => fn());
            }
          }),
        ],
      }),
    });
    return {
      view,
      get: () => view.state.doc.toString(),
      mark: (line, column, message) => {
        const doc = view.state.doc;
        const ln = doc.line(Math.min(Math.max(line || 1, 1), doc.lines));
        const from = Math.min(ln.from + Math.max((column || 1) - 1, 0), ln.to);
        const to = Math.min(from + 1, ln.to);
        view.dispatch(cm.setDiagnostics(view.state, [{ from, to, severity: "error", message }]));
      },
      clear: () => view.dispatch(cm.setDiagnostics(view.state, [])),
      onChange: (fn) => listeners.push(fn),
    };
  }

  form.querySelectorAll("[data-part]").forEach((el) => {
    const part = el.getAttribute("data-part");
    editors[part] = cm && el.tagName === "TEXTAREA" ? codeField(el, part) : plainField(el);
  });

  function source() {
    // The stored source's other fields (data, actions, ttl, …) are kept as they are.
    const out = Object.assign({}, data.source);
    for (const [part, ed] of Object.entries(editors)) {
      const value = ed.get();
      out[part] = value === "" && part !== "body" ? null : value;
    }
    out.channel = data.channel;
    return out;
  }

  // --- the preview ----------------------------------------------------------------------------
  let seq = 0;
  let timer = null;

  function context() {
    const person = document.getElementById("preview-person").value.trim();
    const byPerson = document.querySelector('input[name="preview-with"]:checked').value === "person";
    return byPerson && person ? { profile: person } : { sample: true };
  }

  function clearErrors() {
    errorBox.hidden = true;
    errorBox.textContent = "";
    Object.values(editors).forEach((ed) => ed.clear());
    form.querySelectorAll("[data-error-for]").forEach((p) => {
      p.hidden = true;
      p.textContent = "";
    });
  }

  function showError(json) {
    const err = json.error || {};
    let where = err.part ? err.part : "";
    if (err.line) where += ", line " + err.line + (err.column ? ", column " + err.column : "");
    errorBox.textContent = (where ? where + ": " : "") + (err.message || json.detail || "the preview failed");
    errorBox.hidden = false;
    const ed = err.part && editors[err.part];
    if (ed) {
      ed.mark(err.line, err.column, err.message || json.detail);
      const p = form.querySelector('[data-error-for="' + err.part + '"]');
      if (p) {
        p.textContent = errorBox.textContent;
        p.hidden = false;
      }
    }
  }

  function cut(text, n) {
    text = text || "";
    return text.length > n ? text.slice(0, n - 1).trimEnd() + "…" : text;
  }

  function showPush(json) {
    for (const device of Object.keys(SHOWN)) {
      const fig = document.querySelector('[data-testid="push-' + device + '"]');
      fig.querySelector(".nf-push-title").textContent = cut(json.title, SHOWN[device].title);
      fig.querySelector(".nf-push-body").textContent = cut(json.body, SHOWN[device].body);
      // The console's pages load nothing from other sites (its Content-Security-Policy):
      // the icon and the image are shown as where they come from.
      for (const [cls, url, what] of [[".nf-push-icon", json.icon, "icon"], [".nf-push-image", json.image, "image"]]) {
        const box = fig.querySelector(cls);
        box.hidden = !url;
        box.textContent = url ? what + ": " + url : "";
        box.title = url || "";
      }
    }
    const body = document.querySelector('[data-testid="payload-check"] tbody');
    body.replaceChildren();
    for (const check of json.payload || []) {
      const row = document.createElement("tr");
      row.setAttribute("data-service", check.service);
      row.className = check.ok ? "nf-ok" : "nf-bad";
      const cells = [
        check.service,
        check.size === null ? "—" : check.size.toLocaleString("en") + " bytes",
        check.limit.toLocaleString("en") + " bytes",
        check.ok ? "fits" : check.problem || "refused",
      ];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        row.append(td);
      }
      body.append(row);
    }
  }

  function showEmail(json) {
    document.querySelector('[data-testid="preview-subject"]').textContent = json.subject || "";
    document.querySelector('[data-testid="preview-preheader"]').textContent = json.preheader || "";
    // srcdoc in a sandbox without allow-scripts: the email's HTML runs no script and cannot
    // reach the console's origin.
    document.querySelector('[data-testid="preview-desktop"]').srcdoc = json.html || "";
    document.querySelector('[data-testid="preview-mobile"]').srcdoc = json.html || "";
    document.querySelector('[data-testid="preview-text"]').textContent = json.text || "";
  }

  async function refresh() {
    const mine = ++seq;
    status.textContent = "Rendering…";
    const answer = await call("POST", base + "/preview", Object.assign({ source: source() }, context()));
    if (mine !== seq) return; // a newer keystroke asked again: this answer is stale
    clearErrors();
    if (answer.status === 200) {
      status.textContent = "Preview rendered with " + (answer.json.context === "profile" ? "the person's context" : "the sample context") + ".";
      if (data.channel === "push") showPush(answer.json);
      else showEmail(answer.json);
    } else {
      status.textContent = "";
      showError(answer.json);
    }
    document.body.setAttribute("data-preview-seq", String(mine));
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(refresh, DEBOUNCE_MS);
  }

  Object.values(editors).forEach((ed) => ed.onChange(later));
  document.getElementById("preview-person").addEventListener("input", later);
  document.querySelectorAll('input[name="preview-with"]').forEach((r) => r.addEventListener("change", refresh));
  form.addEventListener("submit", (e) => e.preventDefault());

  // --- saving -----------------------------------------------------------------------------------
  const save = document.getElementById("template-save");
  if (save) {
    save.addEventListener("click", async () => {
      const out = document.getElementById("save-status");
      out.textContent = "Saving…";
      const answer = await call("PUT", base, source());
      if (answer.status === 200 || answer.status === 201) {
        out.textContent = answer.json.new_version ? "Saved as version " + answer.json.version + "." : "No change: version " + answer.json.version + " is the same.";
        if (answer.json.new_version) window.location.assign("/templates/" + encodeURIComponent(data.name) + "?saved=" + answer.json.version);
      } else {
        out.textContent = "Not saved: " + (answer.json.detail || answer.status);
        if (answer.json.error) showError(answer.json);
      }
    });
  }

  // --- a test send (of the saved version) ------------------------------------------------------
  const sendForm = document.getElementById("test-send-form");
  if (sendForm) {
    sendForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      const out = document.getElementById("test-send-status");
      const kind = document.getElementById("test-send-kind").value;
      const target = document.getElementById("test-send-target").value.trim();
      if (!target) return;
      out.textContent = "Sending…";
      const body = { version: Number(sendForm.getAttribute("data-version")) };
      body[kind] = target;
      const answer = await call("POST", base + "/test-send", body);
      const targets = (answer.json && answer.json.targets) || null;
      if (targets) {
        // A push: what each of the person's targets did (redacted by the server).
        const each = targets.map((t) => t.target + ": " + t.result + (t.reason ? " (" + t.reason + ")" : ""));
        out.textContent = (answer.status === 200 ? "Sent. " : "Not sent. ") + each.join("; ");
      } else {
        out.textContent =
          answer.status === 200 ? "Sent to " + answer.json.to + "." : "Not sent: " + (answer.json.detail || answer.status);
      }
    });
  }

  refresh();
})();
