// The console's shared script: NF.api calls the admin API as the signed-in user (the session
// cookie goes with it; the X-CSRF-Token header proves the call comes from a console page),
// and shows what went wrong in the page's status line.
(function () {
  "use strict";

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function show(message, kind) {
    const box = document.getElementById("nf-status");
    if (!box) return;
    box.textContent = message;
    box.className = "status " + (kind || "ok");
    box.hidden = !message;
  }

  class ApiError extends Error {
    constructor(status, detail, body) {
      super(detail);
      this.status = status;
      this.detail = detail;
      this.body = body;
    }
  }

  // NF.api("PUT", "/api/journeys/x", {...}) -> the parsed JSON answer; throws ApiError (after
  // showing it, unless options.quiet) for a 4xx or 5xx. options.headers: more request headers
  // (If-Match, say).
  async function api(method, path, body, options) {
    const opts = options || {};
    const headers = Object.assign({}, opts.headers || {}, { "X-CSRF-Token": csrfToken(), Accept: "application/json" });
    const init = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined && body !== null) {
      if (typeof body === "string") {
        headers["Content-Type"] = opts.contentType || "text/plain";
        init.body = body;
      } else {
        headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      if (!opts.quiet) show("The server could not be reached: " + err.message, "error");
      throw new ApiError(0, String(err.message), null);
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (err) {
      data = text;
    }
    if (!response.ok) {
      if (response.status === 401) {
        window.location.href = "/sign-in?next=" + encodeURIComponent(location.pathname + location.search);
      }
      const detail = data && typeof data === "object" && data.detail ? String(data.detail) : response.statusText;
      if (!opts.quiet) show(detail, "error");
      throw new ApiError(response.status, detail, data);
    }
    return data;
  }

  window.NF = { api: api, show: show, csrfToken: csrfToken, ApiError: ApiError };
})();
