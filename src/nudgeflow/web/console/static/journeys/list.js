// The journey list's "new journey" form: a draft with a trigger and one exit step, saved through
// the admin API (PUT /api/journeys/{id}), then its page, where the definition is edited.
(function () {
  "use strict";
  const form = document.getElementById("new-journey");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const id = form.elements.id.value.trim();
    const draft = {
      id,
      name: form.elements.name.value.trim(),
      trigger: { type: "event", event: "Signed Up" },
      steps: { done: { type: "exit" } },
    };
    const path = `/api/journeys/${encodeURIComponent(id)}`;
    try {
      // If-None-Match: * creates, never replaces: an id taken (even by someone creating it at the
      // same moment) is refused, not overwritten.
      await window.NF.api("PUT", path, draft, { quiet: true, headers: { "If-None-Match": "*" } });
      window.location.href = `/journeys/${encodeURIComponent(id)}`;
    } catch (err) {
      if (err.status === 412) {
        window.NF.show(`There is a journey ${id} already: open it from the list.`, "error");
      } else {
        const problems = (err.body && typeof err.body === "object" && err.body.problems) || [];
        window.NF.show(problems.map((p) => `${p.path}: ${p.message}`).join("; ") || err.detail, "error");
      }
    }
  });
})();
