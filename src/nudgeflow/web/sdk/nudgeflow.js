/*
 * Nudgeflow browser SDK. Plain ES2017, no dependencies, no build step.
 *
 *   <script src="https://nudgeflow.example.com/sdk/nudgeflow.js"></script>
 *   <script>
 *     nudgeflow.load({ writeKey: "wk_..." });     // host: where this script came from
 *     nudgeflow.page();
 *     nudgeflow.identify("user-42", { email: "ada@example.com" }, { userHash: "…" });  // hash: see below
 *     nudgeflow.track("Product Viewed", { sku: "A-1" });
 *     button.onclick = () => nudgeflow.push.subscribe();  // in a click: browsers demand it
 *   </script>
 *
 * Events are Segment-spec messages (messageId, timestamp, sentAt, anonymousId, userId,
 * context.library / page / userAgent / locale / timezone) sent in batches to the ingest
 * API's /v1/batch with the write key as the Basic auth user. The queue lives in
 * localStorage until the server has acknowledged it: a reload, a closed tab or a network
 * outage loses nothing, and since every message keeps its messageId, a batch sent twice
 * (a page closed before the answer came) is stored once.
 *
 * Identity verification (docs/identity.md): when the workspace has it on, the site's backend
 * computes userHash = hex HMAC-SHA256(identity secret, userId) and the page passes it to
 * identify. The SDK keeps it with the userId (until reset() or another userId) and sends it
 * as context.userHash on every call made as that user, push registrations included.
 *
 * See docs/push.md, "Browser SDK", for the whole API.
 */
(function (window) {
  "use strict";

  var VERSION = "0.1.0";
  var LIBRARY = "nudgeflow.js";
  var previous = window.nudgeflow;
  if (previous && previous.__nudgeflow) return; // loaded twice: keep the first

  var document = window.document;
  var navigator = window.navigator || {};
  // The script's own origin is the default host: the SDK is served by Nudgeflow itself.
  var scriptSrc = document && document.currentScript && document.currentScript.src;

  var DEFAULTS = {
    writeKey: null,
    host: null,
    flushAt: 20, // send as soon as this many events wait...
    flushInterval: 2000, // ...or this many ms after the first of them
    maxBatchBytes: 60000, // under keepalive's 64 KB, so a batch survives the page closing
    maxQueue: 1000, // oldest events are dropped past this (localStorage is ~5 MB)
    retryBase: 1000,
    retryMax: 60000,
    storagePrefix: "nudgeflow:",
    serviceWorkerUrl: "/sdk/sw.js",
    serviceWorkerScope: "/",
    vapidPublicKey: null // pin the key instead of fetching it from the host
  };

  function warn(text) {
    if (window.console && window.console.warn) window.console.warn("nudgeflow: " + text);
  }

  // -- small tools --------------------------------------------------------------------------------

  function uuid() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === "function") return c.randomUUID();
    var b = new Uint8Array(16);
    if (c && c.getRandomValues) c.getRandomValues(b);
    else for (var i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function now() {
    return new Date().toISOString();
  }

  function hash(text) {
    var h = 5381;
    for (var i = 0; i < text.length; i++) h = ((h << 5) + h + text.charCodeAt(i)) | 0;
    return (h >>> 0).toString(36);
  }

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  function assign(target) {
    for (var i = 1; i < arguments.length; i++) {
      var source = arguments[i];
      if (source) for (var k in source) if (Object.prototype.hasOwnProperty.call(source, k)) target[k] = source[k];
    }
    return target;
  }

  function b64urlToBytes(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    var raw = window.atob(b64);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  function bytesToB64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
    return window.btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // localStorage, or memory where it is missing or refused (private modes, sandboxed frames).
  var memory = {};
  var store = {
    get: function (key) {
      var raw;
      try { raw = window.localStorage.getItem(key); } catch (err) { raw = memory[key]; }
      if (raw === null || raw === undefined) return null;
      try { return JSON.parse(raw); } catch (err) { return null; }
    },
    set: function (key, value) {
      var raw = JSON.stringify(value);
      try { window.localStorage.setItem(key, raw); } catch (err) { memory[key] = raw; }
    },
    remove: function (key) {
      try { window.localStorage.removeItem(key); } catch (err) { /* memory only */ }
      delete memory[key];
    }
  };

  // -- state ----------------------------------------------------------------------------------

  var options = assign({}, DEFAULTS);
  var loaded = false;
  var early = []; // calls made before load()
  var timer = null; // the next flush
  var timerAt = 0;
  var sending = null; // the flush in flight
  var inFlight = {}; // messageIds of the batch it is sending
  var attempts = 0; // failed sends in a row
  var blocked = false; // the write key was refused: stop until the next page load

  function key(name) {
    return options.storagePrefix + name;
  }

  function queueKey() {
    // Per write key: a page that loads two workspaces' keys keeps their events apart.
    return key("queue:" + hash(options.writeKey || ""));
  }

  function anonymousId() {
    var id = store.get(key("anonymousId"));
    if (typeof id !== "string" || !id) {
      id = uuid();
      store.set(key("anonymousId"), id);
    }
    return id;
  }

  function userId() {
    var id = store.get(key("userId"));
    return typeof id === "string" && id ? id : null;
  }

  // The userHash the site gave with identify, for the userId it was given for only.
  function userHash() {
    var saved = store.get(key("userHash"));
    var uid = userId();
    return isObject(saved) && uid && saved.userId === uid && typeof saved.hash === "string" ? saved.hash : null;
  }

  function traits() {
    var t = store.get(key("traits"));
    return isObject(t) ? t : {};
  }

  function pageProperties() {
    var loc = window.location || {};
    return {
      path: loc.pathname,
      referrer: (document && document.referrer) || "",
      search: loc.search || "",
      title: (document && document.title) || "",
      url: loc.href
    };
  }

  function context() {
    var ctx = {
      library: { name: LIBRARY, version: VERSION },
      userAgent: navigator.userAgent,
      page: pageProperties()
    };
    if (navigator.language) ctx.locale = navigator.language;
    try { ctx.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (err) { /* old browsers */ }
    if (window.screen) ctx.screen = { width: window.screen.width, height: window.screen.height };
    return ctx;
  }

  function message(type, fields) {
    var msg = assign({
      type: type,
      messageId: uuid(),
      timestamp: now(),
      anonymousId: anonymousId(),
      context: context()
    }, fields);
    var uid = userId();
    if (uid) msg.userId = uid;
    var proof = userHash();
    if (proof) msg.context.userHash = proof;
    return msg;
  }

  // -- the queue ------------------------------------------------------------------------------

  function readQueue() {
    var q = store.get(queueKey());
    return Array.isArray(q) ? q : [];
  }

  function writeQueue(q) {
    if (q.length) store.set(queueKey(), q);
    else store.remove(queueKey());
  }

  // Read-modify-write in one task each time: another tab of the site may share the queue.
  function removeFromQueue(ids) {
    var gone = {};
    ids.forEach(function (id) { gone[id] = true; });
    writeQueue(readQueue().filter(function (m) { return !gone[m.messageId]; }));
  }

  function enqueue(msg) {
    var q = readQueue();
    q.push(msg);
    if (q.length > options.maxQueue) q.splice(0, q.length - options.maxQueue);
    writeQueue(q);
    if (!loaded) return;
    schedule(q.length >= options.flushAt ? 0 : options.flushInterval);
  }

  function schedule(delay) {
    if (!loaded || blocked) return;
    var at = Date.now() + delay;
    if (timer !== null) {
      if (timerAt <= at) return; // an earlier flush is already due
      clearTimeout(timer);
    }
    timerAt = at;
    timer = setTimeout(function () {
      timer = null;
      flush();
    }, delay);
  }

  function auth() {
    return "Basic " + window.btoa(options.writeKey + ":");
  }

  function endpoint(path) {
    return options.host + path;
  }

  // The next batch: as many queued messages as fit one request under maxBatchBytes.
  function nextBatch(q, limit) {
    var batch = [];
    var size = 64;
    for (var i = 0; i < q.length && batch.length < limit; i++) {
      var bytes = JSON.stringify(q[i]).length + 40;
      if (batch.length && size + bytes > options.maxBatchBytes) break;
      batch.push(q[i]);
      size += bytes;
    }
    return batch;
  }

  function body(batch, withKey) {
    var sentAt = now();
    var out = {
      batch: batch.map(function (m) { return assign({}, m, { sentAt: sentAt }); }),
      sentAt: sentAt
    };
    if (withKey) out.writeKey = options.writeKey; // a beacon cannot carry headers
    return JSON.stringify(out);
  }

  function retryAfter(response) {
    var value = response && response.headers && response.headers.get("Retry-After");
    var seconds = value ? parseFloat(value) : NaN;
    return isFinite(seconds) && seconds >= 0 ? seconds * 1000 : 0;
  }

  function backoff(minimum) {
    var nominal = Math.min(options.retryMax, options.retryBase * Math.pow(2, Math.max(0, attempts - 1)));
    var jittered = nominal * (0.8 + Math.random() * 0.4);
    return Math.max(minimum || 0, Math.round(jittered));
  }

  // Send one batch. Resolves to "ok", "retry" (with a delay), "drop" (with indexes) or "stop".
  function send(batch) {
    var payload = body(batch, false);
    return window.fetch(endpoint("/v1/batch"), {
      method: "POST",
      mode: "cors",
      credentials: "omit",
      keepalive: payload.length < 64000,
      headers: { "Content-Type": "application/json", Authorization: auth() },
      body: payload
    }).then(function (response) {
      if (response.ok) return { outcome: "ok" };
      var status = response.status;
      if (status === 408 || status === 429 || status >= 500) return { outcome: "retry", wait: retryAfter(response) };
      if (status === 401) return { outcome: "stop" };
      if (status === 403) {
        // Identity verification refused these events (no valid context.userHash): they can
        // never be accepted, so they are dropped by index; any other 403 stops sending.
        return response.json().then(function (answer) {
          var indexes = ((answer && answer.errors) || []).filter(function (e) {
            return typeof e.index === "number" && /context\.userHash$/.test(e.field || "");
          }).map(function (e) { return e.index; });
          if (!indexes.length) return { outcome: "stop" };
          warn("the server refused " + indexes.length + " event(s) without a valid userHash: " + answer.message);
          return { outcome: "drop", indexes: indexes };
        }, function () { return { outcome: "stop" }; });
      }
      if (status === 413) return { outcome: batch.length > 1 ? "split" : "drop", indexes: [0] };
      return response.json().then(function (answer) {
        // A 400 names the events it refused; the others in the batch are fine.
        var indexes = ((answer && answer.errors) || []).map(function (e) { return e.index; })
          .filter(function (i) { return typeof i === "number"; });
        if (!indexes.length) indexes = batch.map(function (_, i) { return i; });
        warn("the server refused " + indexes.length + " event(s): " + ((answer && answer.message) || status));
        return { outcome: "drop", indexes: indexes };
      }, function () {
        return { outcome: "drop", indexes: batch.map(function (_, i) { return i; }) };
      });
    }, function () {
      return { outcome: "retry", wait: 0 }; // offline, DNS, CORS: try again later
    });
  }

  /*
   * Send everything queued. Resolves to true when the queue is empty, false when a send
   * failed (a retry is then scheduled with backoff, or the write key was refused).
   */
  function flush() {
    if (!loaded || !window.fetch) return Promise.resolve(false);
    // A send in flight may have read the queue before the caller's events were added:
    // go again after it (unless it failed: then its retry is already scheduled).
    if (sending) return sending.then(function (ok) { return ok ? flush() : false; });
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
    var limit = 500;
    function step() {
      if (blocked) return Promise.resolve(false);
      var batch = nextBatch(readQueue(), limit);
      if (!batch.length) return Promise.resolve(true);
      inFlight = {};
      batch.forEach(function (m) { inFlight[m.messageId] = true; });
      return send(batch).then(function (result) {
        inFlight = {};
        var ids = batch.map(function (m) { return m.messageId; });
        if (result.outcome === "ok") {
          attempts = 0;
          removeFromQueue(ids);
          return step();
        }
        if (result.outcome === "drop") {
          removeFromQueue(result.indexes.map(function (i) { return ids[i]; }).filter(Boolean));
          return step();
        }
        if (result.outcome === "split") {
          limit = Math.max(1, Math.floor(batch.length / 2));
          return step();
        }
        if (result.outcome === "stop") {
          blocked = true;
          warn("the write key was refused; events stay queued until the next page load");
          return false;
        }
        attempts += 1;
        schedule(backoff(result.wait));
        return false;
      });
    }
    sending = step().then(function (done) {
      sending = null;
      return done;
    }, function (err) {
      sending = null;
      inFlight = {};
      attempts += 1;
      schedule(backoff(0));
      warn("flush failed: " + (err && err.message));
      return false;
    });
    return sending;
  }

  // The page is going away: hand what is queued to the browser, which sends it after the
  // page is gone. The queue is kept: the next page sends it again unless it was answered,
  // and a message sent twice is stored once (its messageId).
  function flushOnExit() {
    if (!loaded || blocked) return;
    var q = readQueue();
    if (!q.length) return;
    if (window.fetch) {
      if (!sending) {
        flush(); // batches fit keepalive's budget (maxBatchBytes)
        return;
      }
      // A send is in flight (with keepalive); what it does not carry goes now, beside it:
      // chained after it, it would start after the page is gone.
      var rest = q.filter(function (m) { return !inFlight[m.messageId]; });
      if (rest.length) {
        var batch = nextBatch(rest, 500);
        send(batch).then(function (result) {
          if (result.outcome === "ok") removeFromQueue(batch.map(function (m) { return m.messageId; }));
        });
      }
      return;
    }
    if (navigator.sendBeacon) {
      // No headers on a beacon: the write key rides in the body, as text/plain (no preflight).
      try {
        navigator.sendBeacon(endpoint("/v1/batch"), new Blob([body(nextBatch(q, 500), true)], { type: "text/plain" }));
      } catch (err) { /* the next page load sends it */ }
    }
  }

  // -- the public API ---------------------------------------------------------------------------

  function load(opts) {
    if (loaded) return api;
    if (!opts || typeof opts.writeKey !== "string" || !opts.writeKey) {
      throw new Error("nudgeflow.load: writeKey is required");
    }
    options = assign({}, DEFAULTS, opts);
    var host = options.host || (scriptSrc ? new URL(scriptSrc).origin : window.location.origin);
    options.host = String(host).replace(/\/+$/, "");
    loaded = true;
    if (window.addEventListener) {
      window.addEventListener("pagehide", flushOnExit);
      window.addEventListener("online", function () { attempts = 0; schedule(0); });
    }
    if (document && document.addEventListener) {
      document.addEventListener("visibilitychange", function () {
        if (document.visibilityState === "hidden") flushOnExit();
      });
    }
    var calls = early;
    early = [];
    calls.forEach(function (call) { api[call[0]].apply(api, call[1]); });
    if (readQueue().length) schedule(0); // left over from an earlier page
    setTimeout(function () { push.sync(); }, 0);
    return api;
  }

  function later(name, args) {
    if (loaded) return false;
    early.push([name, Array.prototype.slice.call(args)]);
    return true;
  }

  /**
   * identify([userId], [traits], [options]): who this visitor is, and what is known about them.
   * options.userHash: the identity-verification hash of userId, computed by the site's backend.
   */
  function identify(id, newTraits, opts) {
    if (later("identify", arguments)) return;
    if (isObject(id)) { // identify(traits, [options])
      opts = newTraits;
      newTraits = id;
      id = null;
    }
    if (id !== null && id !== undefined && id !== "") {
      var before = userId();
      store.set(key("userId"), String(id));
      if (isObject(opts) && typeof opts.userHash === "string" && opts.userHash) {
        store.set(key("userHash"), { userId: String(id), hash: opts.userHash });
      } else if (before !== String(id)) {
        store.remove(key("userHash")); // it proved another userId
      }
    } else if (isObject(opts) && typeof opts.userHash === "string" && opts.userHash && userId()) {
      store.set(key("userHash"), { userId: userId(), hash: opts.userHash });
    }
    var merged = assign(traits(), isObject(newTraits) ? newTraits : {});
    store.set(key("traits"), merged);
    enqueue(message("identify", { traits: merged }));
    push.sync();
  }

  /** track(event, [properties]): something the visitor did. */
  function track(event, properties) {
    if (later("track", arguments)) return;
    if (typeof event !== "string" || !event) throw new Error("nudgeflow.track: an event name is required");
    enqueue(message("track", { event: event, properties: isObject(properties) ? properties : {} }));
  }

  /** page([name], [properties]): a page view, with the page's path, url, title and referrer. */
  function page(name, properties) {
    if (later("page", arguments)) return;
    if (isObject(name) && properties === undefined) {
      properties = name;
      name = null;
    }
    var fields = { properties: assign(pageProperties(), isObject(properties) ? properties : {}) };
    if (typeof name === "string" && name) {
      fields.name = name;
      fields.properties.name = name;
    }
    enqueue(message("page", fields));
  }

  /** reset(): the visitor logged out. A new anonymousId; the push subscription goes with it. */
  function reset() {
    if (later("reset", arguments)) return;
    store.remove(key("userId"));
    store.remove(key("userHash"));
    store.remove(key("traits"));
    store.set(key("anonymousId"), uuid());
    push.sync();
  }

  function user() {
    return { userId: userId(), anonymousId: anonymousId(), traits: traits() };
  }

  // -- push -------------------------------------------------------------------------------------

  function PushError(code, text) {
    var err = new Error(text);
    err.name = "NudgeflowPushError";
    err.code = code;
    return err;
  }

  var push = (function () {
    var syncing = null;

    function pushKey() {
      return key("push:" + hash(options.writeKey || ""));
    }

    function state() {
      var s = store.get(pushKey());
      return isObject(s) ? s : {};
    }

    function saveState(s) {
      store.set(pushKey(), s);
    }

    function identity() {
      return (userId() || "") + "|" + anonymousId();
    }

    function isSupported() {
      return !!(navigator.serviceWorker && window.PushManager && window.Notification);
    }

    function permission() {
      return window.Notification ? window.Notification.permission : "unsupported";
    }

    function requestPermission() {
      if (window.Notification.permission === "granted") return Promise.resolve("granted");
      // Old Safari takes a callback and returns nothing.
      return new Promise(function (resolve) {
        var result = window.Notification.requestPermission(resolve);
        if (result && typeof result.then === "function") result.then(resolve, function () { resolve("default"); });
      });
    }

    function scopeUrl() {
      return new URL(options.serviceWorkerScope, window.location.href).href;
    }

    // pushManager.subscribe needs an active worker, which a fresh registration has not yet.
    function whenActive(registration) {
      if (registration.active) return Promise.resolve(registration);
      return new Promise(function (resolve, reject) {
        var worker = registration.installing || registration.waiting;
        if (!worker) return resolve(navigator.serviceWorker.ready);
        worker.addEventListener("statechange", function () {
          if (worker.state === "activated") resolve(registration);
          if (worker.state === "redundant") reject(PushError("worker_failed", "the service worker failed to install"));
        });
      });
    }

    function registerWorker() {
      return navigator.serviceWorker
        .register(options.serviceWorkerUrl, { scope: options.serviceWorkerScope })
        .then(whenActive);
    }

    function request(method, path, payload) {
      var init = {
        method: method,
        mode: "cors",
        credentials: "omit",
        cache: "no-store",
        headers: { Authorization: auth() }
      };
      if (payload !== undefined) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(payload);
      }
      return window.fetch(endpoint(path), init).catch(function (err) {
        throw PushError("network", "could not reach " + options.host + ": " + (err && err.message));
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (answer) {
          if (!response.ok) {
            var err = PushError("http_" + response.status, (answer && answer.message) || "HTTP " + response.status);
            err.status = response.status;
            throw err;
          }
          return answer;
        });
      });
    }

    // Retried with backoff: a registration that never arrives is a person who never gets a push.
    function withRetries(fn, tries) {
      var attempt = 0;
      function go() {
        return fn().catch(function (err) {
          attempt += 1;
          var retryable = !err.status || err.status === 429 || err.status >= 500;
          if (!retryable || attempt >= tries) throw err;
          var delay = Math.min(options.retryMax, options.retryBase * Math.pow(2, attempt - 1));
          return new Promise(function (resolve) { setTimeout(resolve, delay); }).then(go);
        });
      }
      return go();
    }

    function vapidKey() {
      if (options.vapidPublicKey) return Promise.resolve(options.vapidPublicKey);
      return withRetries(function () { return request("GET", "/v1/push/vapid-public-key"); }, 3).then(function (answer) {
        if (!answer || typeof answer.publicKey !== "string" || !answer.publicKey) {
          throw PushError("no_vapid_key", "the server has no Web Push key for this workspace");
        }
        return answer.publicKey;
      });
    }

    function sameKey(subscription, publicKey, s) {
      var opts = subscription.options;
      if (opts && opts.applicationServerKey) {
        return bytesToB64url(opts.applicationServerKey) === publicKey.replace(/=+$/, "");
      }
      return s.key === publicKey; // browsers that do not expose the key: what we subscribed with
    }

    function forget(endpointUrl) {
      return request("DELETE", "/v1/push/subscriptions", { endpoint: endpointUrl }).catch(function () {
        // The push service answers 404/410 for it later, and the sender drops it then.
      });
    }

    // The browser's subscription for `publicKey`: the current one, or a new one when there is
    // none or it was made with another key (the workspace rotated its VAPID keys).
    function ensureSubscription(registration, publicKey, s) {
      return registration.pushManager.getSubscription().then(function (existing) {
        if (existing && sameKey(existing, publicKey, s)) return existing;
        var dropped = existing ? existing.unsubscribe().catch(function () { return false; }) : Promise.resolve(false);
        return dropped.then(function () {
          return registration.pushManager.subscribe({
            userVisibleOnly: true,
            applicationServerKey: b64urlToBytes(publicKey)
          });
        });
      });
    }

    function registerOnProfile(subscription, publicKey) {
      var s = state();
      var json = subscription.toJSON ? subscription.toJSON() : subscription;
      var payload = {
        anonymousId: anonymousId(),
        subscription: json,
        userAgent: navigator.userAgent,
        timestamp: now(),
        context: context()
      };
      var uid = userId();
      if (uid) payload.userId = uid;
      var proof = userHash();
      if (proof) payload.context.userHash = proof;
      var who = identity();
      var old = s.endpoint && s.endpoint !== json.endpoint ? forget(s.endpoint) : Promise.resolve();
      saveState(assign(s, { subscribed: true, endpoint: json.endpoint, key: publicKey, pending: true }));
      return old.then(function () {
        return withRetries(function () {
          payload.sentAt = now();
          return request("POST", "/v1/push/subscriptions", payload);
        }, 4);
      }).then(function () {
        saveState(assign(state(), { registeredAs: who, pending: false }));
        return json;
      });
    }

    /**
     * Ask for permission (call it from a click), register the service worker, subscribe
     * with the workspace's VAPID key and attach the subscription to this visitor's profile.
     * Resolves to the subscription's JSON; rejects with an error whose `code` is
     * "unsupported", "permission_denied", "permission_default" (dismissed) or an HTTP one.
     */
    function subscribe() {
      if (!loaded) return Promise.reject(PushError("not_loaded", "call nudgeflow.load() first"));
      if (!isSupported()) return Promise.reject(PushError("unsupported", "this browser has no Web Push"));
      return requestPermission().then(function (answer) {
        if (answer !== "granted") throw PushError("permission_" + answer, "notifications were not allowed");
        return Promise.all([registerWorker(), vapidKey()]);
      }).then(function (both) {
        return ensureSubscription(both[0], both[1], state()).then(function (subscription) {
          return registerOnProfile(subscription, both[1]);
        });
      });
    }

    /** Stop push for this browser: the server forgets the subscription, the browser drops it. */
    function unsubscribe() {
      if (!loaded) return Promise.reject(PushError("not_loaded", "call nudgeflow.load() first"));
      var s = state();
      var found = isSupported()
        ? navigator.serviceWorker.getRegistration(scopeUrl()).then(function (registration) {
          return registration ? registration.pushManager.getSubscription() : null;
        })
        : Promise.resolve(null);
      return found.then(function (subscription) {
        var endpointUrl = (subscription && subscription.endpoint) || s.endpoint;
        var forgotten = endpointUrl
          ? withRetries(function () { return request("DELETE", "/v1/push/subscriptions", { endpoint: endpointUrl }); }, 3)
          : Promise.resolve();
        return forgotten.then(function () {
          store.remove(pushKey());
          return subscription ? subscription.unsubscribe() : true;
        });
      });
    }

    /*
     * On every page load, identify and reset, for a visitor who subscribed: re-subscribe if
     * the browser dropped the subscription or the workspace's key changed, and register it
     * again if its endpoint, its key or the visitor it belongs to changed (or an earlier
     * registration never got through). Never prompts: only with permission already granted.
     */
    function sync() {
      if (!loaded || !isSupported() || syncing) return syncing || Promise.resolve(null);
      var s = state();
      if (!s.subscribed || permission() !== "granted") return Promise.resolve(null);
      syncing = navigator.serviceWorker.getRegistration(scopeUrl()).then(function (registration) {
        return Promise.all([registration ? whenActive(registration) : registerWorker(), vapidKey()]);
      }).then(function (both) {
        return ensureSubscription(both[0], both[1], s).then(function (subscription) {
          var json = subscription.toJSON ? subscription.toJSON() : subscription;
          var current = state();
          if (current.pending || current.endpoint !== json.endpoint || current.key !== both[1] ||
              current.registeredAs !== identity()) {
            return registerOnProfile(subscription, both[1]);
          }
          return json;
        });
      }).catch(function (err) {
        warn("push sync failed: " + (err && err.message));
        return null;
      }).then(function (result) {
        syncing = null;
        return result;
      });
      return syncing;
    }

    function subscription() {
      if (!isSupported()) return Promise.resolve(null);
      return navigator.serviceWorker.getRegistration(scopeUrl()).then(function (registration) {
        return registration ? registration.pushManager.getSubscription() : null;
      });
    }

    return {
      isSupported: isSupported,
      permission: permission,
      subscribe: subscribe,
      unsubscribe: unsubscribe,
      subscription: subscription,
      sync: sync
    };
  })();

  var api = {
    __nudgeflow: true,
    VERSION: VERSION,
    load: load,
    identify: identify,
    track: track,
    page: page,
    reset: reset,
    flush: flush,
    user: user,
    push: push
  };

  window.nudgeflow = api;
  // The async snippet queued calls as [method, ...args] before this script arrived.
  if (Array.isArray(previous)) {
    previous.forEach(function (call) {
      if (Array.isArray(call) && typeof api[call[0]] === "function") api[call[0]].apply(api, call.slice(1));
    });
  }
})(window);
