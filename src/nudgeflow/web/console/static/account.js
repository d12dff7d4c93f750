// Your account: change your password (POST /account/password), then sign in again.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    const form = document.getElementById("password-form");
    if (!form) return;
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      if (form.elements.new.value !== form.elements.again.value) {
        NF.show("The two new passwords differ.", "error");
        return;
      }
      try {
        await NF.api("POST", "/account/password", {
          current: form.elements.current.value,
          new: form.elements.new.value,
        });
        window.location.href = "/sign-in?next=%2Faccount";
      } catch (err) {
        /* NF.api showed why */
      }
    });
  });
})();
