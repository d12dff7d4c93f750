// The person page's export and erase: each opens its confirmation dialog first, then calls
// the admin API as the signed-in user (NF.api: session cookie + X-CSRF-Token). The server
// checks the role; this only asks before doing.
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fn);
    else fn();
  }

  ready(function () {
    const actions = document.querySelector(".person-actions");
    if (!actions) return;
    const profileId = actions.getAttribute("data-profile-id");
    const path = "/api/profiles/" + encodeURIComponent(profileId);

    document.querySelectorAll("[data-open]").forEach(function (button) {
      button.addEventListener("click", function () {
        const dialog = document.getElementById(button.getAttribute("data-open"));
        if (dialog) dialog.showModal();
      });
    });
    document.querySelectorAll("dialog [data-close]").forEach(function (button) {
      button.addEventListener("click", function () {
        button.closest("dialog").close();
      });
    });

    const check = document.getElementById("erase-check");
    const eraseButton = document.querySelector('[data-action="erase"]');
    if (check && eraseButton) {
      check.addEventListener("input", function () {
        eraseButton.disabled = check.value.trim() !== check.getAttribute("data-expect");
      });
    }

    const exportButton = document.querySelector('[data-action="export"]');
    if (exportButton) {
      exportButton.addEventListener("click", async function () {
        exportButton.disabled = true;
        try {
          const doc = await NF.api("GET", path + "/export");
          const blob = new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" });
          const link = document.createElement("a");
          link.href = URL.createObjectURL(blob);
          link.download = "person-" + profileId + ".json";
          document.body.appendChild(link);
          link.click();
          link.remove();
          NF.show("Export downloaded.", "ok");
          exportButton.closest("dialog").close();
        } catch (err) {
          // NF.api has shown why.
        } finally {
          exportButton.disabled = false;
        }
      });
    }

    if (eraseButton) {
      eraseButton.addEventListener("click", async function () {
        if (check.value.trim() !== check.getAttribute("data-expect")) return;
        eraseButton.disabled = true;
        try {
          await NF.api("DELETE", path);
          eraseButton.closest("dialog").close();
          window.location.href = "/people?erased=" + encodeURIComponent(profileId);
        } catch (err) {
          eraseButton.disabled = false;
        }
      });
    }
  });
})();
