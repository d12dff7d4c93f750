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
      // A PUT would replace an existing journey's draft: a new journey's id must be free.
      const taken = await window.NF.api("GET", path, null, { quiet: true }).then(
        () => true,
        (err) => (err.status === 404 ? false : Promise.reject(err)),
      );
      if (taken) {
        window.NF.show(`There is a journey ${id} already: open it from the list.`, "error");
        return;
      }
      await window.NF.api("PUT", path, draft);
      window.location.href = `/journeys/${encodeURIComponent(id)}`;
    } catch (err) {
      // NF.api has shown why (an id taken by another shape, a bad id)
    }
  });
})();
