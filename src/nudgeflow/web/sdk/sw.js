/*
 * Nudgeflow service worker: shows Web Push notifications and reports them back.
 *
 * Register it with the SDK (nudgeflow.push.subscribe()), or, if your site already has a
 * service worker, add `importScripts("/sdk/sw.js")` to it. Plain ES2017, no dependencies.
 *
 * A push message carries the JSON of content/push_render.PushContent.notification():
 *   {title, body, key, image?, icon?, url?, actions?: [{action, title, url?}], data?, report_url?}
 * On "push" it is shown, then {"event": "delivered"} is POSTed to its report_url; on
 * "notificationclick" the deep link is opened or focused (the clicked action's url, else
 * the notification's url) and {"event": "clicked", "action": ...} is POSTed. Reporting is
 * best effort: a failed report never stops a notification from showing or a click from
 * opening its page.
 */
(function (scope) {
  "use strict";

  var DEFAULT_TITLE = "New notification";

  function parsePayload(data) {
    if (!data) return {};
    try {
      var parsed = data.json();
      return parsed && typeof parsed === "object" ? parsed : { body: String(parsed) };
    } catch (err) {
      // Not JSON (a test push from the browser's devtools, say): show the text as it is.
      try {
        return { body: data.text() };
      } catch (err2) {
        return {};
      }
    }
  }

  function str(value) {
    return typeof value === "string" && value ? value : undefined;
  }

  // What showNotification gets, and what the click handler finds again in notification.data.
  function toNotification(message) {
    var actions = Array.isArray(message.actions) ? message.actions.filter(function (a) {
      return a && typeof a === "object" && str(a.action) && str(a.title);
    }) : [];
    var actionUrls = {};
    actions.forEach(function (a) {
      if (str(a.url)) actionUrls[a.action] = a.url;
    });
    var options = {
      body: typeof message.body === "string" ? message.body : "",
      data: {
        key: str(message.key) || null,
        url: str(message.url) || null,
        report_url: str(message.report_url) || null,
        actionUrls: actionUrls,
        data: message.data && typeof message.data === "object" ? message.data : {}
      }
    };
    if (str(message.icon)) options.icon = message.icon;
    if (str(message.image)) options.image = message.image;
    if (str(message.badge)) options.badge = message.badge;
    // The message key as the tag: a message the push service delivers twice replaces
    // itself instead of showing twice.
    if (options.data.key) options.tag = options.data.key;
    if (actions.length) {
      var max = (scope.Notification && scope.Notification.maxActions) || actions.length;
      options.actions = actions.slice(0, max).map(function (a) {
        var out = { action: a.action, title: a.title };
        if (str(a.icon)) out.icon = a.icon;
        return out;
      });
    }
    return { title: str(message.title) || DEFAULT_TITLE, options: options };
  }

  function report(reportUrl, body) {
    if (!reportUrl || typeof scope.fetch !== "function") return Promise.resolve(false);
    try {
      return Promise.resolve(scope.fetch(reportUrl, {
        method: "POST",
        mode: "cors",
        credentials: "omit",
        keepalive: true,
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body)
      })).then(function (response) {
        return !!(response && response.ok);
      }, function () {
        return false;
      });
    } catch (err) {
      return Promise.resolve(false);
    }
  }

  function onPush(event) {
    var message = parsePayload(event.data);
    var shown = toNotification(message);
    var done = scope.registration.showNotification(shown.title, shown.options).then(function () {
      return report(shown.options.data.report_url, { event: "delivered" });
    });
    if (event.waitUntil) event.waitUntil(done);
    return done;
  }

  // Only http(s) deep links are opened: a push's url may be rendered from event data, and
  // a javascript:, data: or file: link is never what a click should open. Others open the
  // worker's scope.
  function absolute(url) {
    try {
      var parsed = new URL(url, scope.registration.scope || (scope.location && scope.location.href));
      return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
    } catch (err) {
      return null;
    }
  }

  function openOrFocus(url) {
    var target = absolute(url || "") || absolute(scope.registration.scope || "/");
    if (!target) return Promise.resolve(null);
    var clients = scope.clients;
    return clients.matchAll({ type: "window", includeUncontrolled: true }).then(function (windows) {
      for (var i = 0; i < windows.length; i++) {
        if (windows[i].url === target && typeof windows[i].focus === "function") return windows[i].focus();
      }
      return clients.openWindow ? clients.openWindow(target) : null;
    }).catch(function () {
      return null;
    });
  }

  function onClick(event) {
    var notification = event.notification;
    var data = (notification && notification.data) || {};
    var action = event.action || "";
    if (notification && typeof notification.close === "function") notification.close();
    var url = (action && data.actionUrls && data.actionUrls[action]) || data.url || null;
    var done = Promise.all([
      openOrFocus(url),
      report(data.report_url, { event: "clicked", action: action || null })
    ]);
    if (event.waitUntil) event.waitUntil(done);
    return done;
  }

  scope.addEventListener("push", onPush);
  scope.addEventListener("notificationclick", onClick);
  // Take over at once: a new version should handle the very next push.
  scope.addEventListener("install", function () {
    if (scope.skipWaiting) scope.skipWaiting();
  });
  scope.addEventListener("activate", function (event) {
    if (scope.clients && scope.clients.claim && event.waitUntil) event.waitUntil(scope.clients.claim());
  });

  scope.nudgeflowServiceWorker = { version: "1", toNotification: toNotification };
})(self);
