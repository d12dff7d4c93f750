// The Users page: every change is a call to /api/console/users (admins only, on the server).
(function () {
  "use strict";

  function showPassword(answer) {
    const box = document.getElementById("new-password");
    box.querySelector('[data-field="email"]').textContent = answer.email;
    box.querySelector('[data-field="password"]').textContent = answer.password;
    box.hidden = false;
    box.focus();
  }

  function rowOf(element) {
    return element.closest("tr[data-user-id]");
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".role-select").forEach(function (select) {
      select.addEventListener("change", async function () {
        const row = rowOf(select);
        try {
          await NF.api("PATCH", "/api/console/users/" + encodeURIComponent(row.dataset.userId), { role: select.value });
          NF.show(row.dataset.email + " is now " + select.value + ".", "ok");
        } catch (err) {
          /* NF.api showed why */
        }
      });
    });
    document.querySelectorAll("button.toggle").forEach(function (button) {
      button.addEventListener("click", async function () {
        const row = rowOf(button);
        const disable = button.dataset.disabled !== "true";
        if (disable && !window.confirm("Disable " + row.dataset.email + "? They are signed out at once.")) return;
        try {
          await NF.api("PATCH", "/api/console/users/" + encodeURIComponent(row.dataset.userId), { disabled: disable });
          window.location.reload();
        } catch (err) {
          /* shown */
        }
      });
    });
    document.querySelectorAll("button.reset").forEach(function (button) {
      button.addEventListener("click", async function () {
        const row = rowOf(button);
        if (!window.confirm("Make a new password for " + row.dataset.email + "? Their sessions end.")) return;
        try {
          showPassword(await NF.api("POST", "/api/console/users/" + encodeURIComponent(row.dataset.userId) + "/reset-password"));
        } catch (err) {
          /* shown */
        }
      });
    });
    const form = document.getElementById("new-user");
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      try {
        const made = await NF.api("POST", "/api/console/users", {
          email: form.elements.email.value,
          role: form.elements.role.value,
        });
        showPassword(made);
        const row = document.createElement("tr");
        [made.email, made.role, "active (reload to manage)", ""].forEach(function (text) {
          const cell = document.createElement("td");
          cell.textContent = text;
          row.appendChild(cell);
        });
        document.querySelector('[data-testid="users"] tbody').appendChild(row);
        form.reset();
      } catch (err) {
        /* shown */
      }
    });
  });
})();
