// The settings pages' forms (web/console/templates/settings/): each one is sent to the admin
// API it names (data-api-method, data-api-path) with the session's CSRF token; the server
// checks the role and the values, and its answer (or its error, problem by problem) is shown
// beside the form. Nothing here stores anything itself.
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // A field's value as the API takes it, by its data-kind: text (empty: null, clearing the
  // setting), bool (a checkbox), lines (a list of the non-empty lines), topics (lines of `id` or `id | label`).
  function fieldValue(field) {
    var kind = field.getAttribute("data-kind") || "text";
    if (kind === "bool") return field.checked;
    var text = field.value;
    if (kind === "lines" || kind === "topics") {
      var lines = text.split("\n").map(function (l) { return l.trim(); }).filter(Boolean);
      if (kind === "lines") return lines;
      return lines.map(function (line) {
        var bar = line.indexOf("|");
        if (bar < 0) return line;
        var id = line.slice(0, bar).trim(), label = line.slice(bar + 1).trim();
        return label ? { id: id, label: label } : id;
      });
    }
    return text.trim() === "" ? null : text.trim();
  }

  function requestOf(form) {
    var method = form.getAttribute("data-api-method");
    var headers = { "X-CSRF-Token": csrfToken(), "Accept": "application/json" };
    if (form.getAttribute("data-body") === "yaml") {
      headers["Content-Type"] = "application/yaml";
      return { method: method, headers: headers, body: form.querySelector("textarea").value };
    }
    var fields = form.querySelectorAll("input[name], textarea[name], select[name]");
    if (!fields.length) return { method: method, headers: headers };
    var body = {};
    fields.forEach(function (field) {
      var value = fieldValue(field);
      // PATCH /api/settings: null clears a key. Elsewhere an empty field is left out.
      if (value !== null || method === "PATCH") body[field.name] = value;
    });
    headers["Content-Type"] = "application/json";
    return { method: method, headers: headers, body: JSON.stringify(body) };
  }

  function showProblems(form, problems) {
    var list = form.querySelector(".nf-problems");
    if (!list) return;
    list.textContent = "";
    (problems || []).forEach(function (p) {
      var item = document.createElement("li");
      item.textContent = (p.line ? "line " + p.line + ": " : "") + (p.path ? p.path + ": " : "") + p.message;
      list.appendChild(item);
    });
  }

  function errorText(status, data) {
    if (data && typeof data.detail === "string") return data.detail;
    if (data && Array.isArray(data.detail)) {
      return data.detail.map(function (d) { return (d.loc || []).slice(1).join(".") + ": " + d.msg; }).join("; ");
    }
    if (status === 403) return "Your role may not change this.";
    return "The server answered " + status + ".";
  }

  function submit(event) {
    var form = event.currentTarget;
    event.preventDefault();
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) return;
    var out = form.querySelector(".nf-result");
    var button = form.querySelector("button[type=submit]");
    out.textContent = "Saving…";
    out.classList.remove("nf-error");
    showProblems(form, []);
    if (button) button.disabled = true;
    fetch(form.getAttribute("data-api-path"), Object.assign({ credentials: "same-origin" }, requestOf(form)))
      .then(function (response) {
        return response.text().then(function (text) {
          var data = null;
          try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
          return { ok: response.ok, status: response.status, data: data };
        });
      })
      .then(function (answer) {
        if (!answer.ok) {
          out.textContent = "Not saved: " + errorText(answer.status, answer.data);
          out.classList.add("nf-error");
          showProblems(form, answer.data && answer.data.problems);
          return;
        }
        if (form.getAttribute("data-show-key") && answer.data && answer.data.key) {
          out.textContent = "New " + answer.data.kind + " key, shown this once: " + answer.data.key;
          return;
        }
        if (answer.data && answer.data.changed === false) {
          out.textContent = "Nothing changed: the document means what the policies in force mean.";
        } else if (answer.data && answer.data.version !== undefined) {
          out.textContent = "Applied: version " + answer.data.version + ".";
        } else {
          out.textContent = "Saved.";
        }
        if (form.getAttribute("data-reload")) window.location.reload();
      })
      .catch(function () {
        out.textContent = "Not saved: the server could not be reached.";
        out.classList.add("nf-error");
      })
      .finally(function () { if (button) button.disabled = false; });
  }

  document.querySelectorAll("form.nf-form[data-api-path]").forEach(function (form) {
    form.addEventListener("submit", submit);
  });
})();
