// The browser SDK's queue under Node's test runner: batching, retries with backoff, the
// queue kept in localStorage across page loads, and the Segment shape of what it sends.
// nudgeflow.js runs in a vm context with a fake window; time is Node's mock timers.
import { test, mock, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import vm from "node:vm";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const SOURCE = fs.readFileSync(path.join(here, "../../src/nudgeflow/web/sdk/nudgeflow.js"), "utf8");
const HOST = "https://nf.example.com";
const KEY = "wk_test_123";

beforeEach(() => mock.timers.enable({ apis: ["setTimeout", "Date"], now: Date.parse("2026-03-01T10:00:00Z") }));
afterEach(() => mock.timers.reset());

// Let promise chains run (setImmediate is not mocked).
async function settle() {
  for (let i = 0; i < 30; i++) await new Promise((resolve) => setImmediate(resolve));
}

function reply(status, body = {}, headers = {}) {
  return {
    ok: status >= 200 && status < 300,
    status,
    headers: { get: (name) => headers[name] ?? null },
    json: async () => body,
  };
}

// A page of the site: its own window, the shared localStorage of the origin.
function page({ storage = new Map(), answers = [], preset } = {}) {
  const sent = [];
  const windowListeners = {};
  const window = {
    nudgeflow: preset,
    document: {
      currentScript: { src: HOST + "/sdk/nudgeflow.js" },
      referrer: "https://search.example/",
      title: "Boots",
      visibilityState: "visible",
      addEventListener: () => {},
    },
    navigator: { userAgent: "NodeTest/1.0", language: "en-GB" },
    location: {
      href: "https://shop.example.com/p/boots?c=red",
      pathname: "/p/boots",
      search: "?c=red",
      origin: "https://shop.example.com",
    },
    localStorage: {
      getItem: (k) => (storage.has(k) ? storage.get(k) : null),
      setItem: (k, v) => storage.set(k, String(v)),
      removeItem: (k) => storage.delete(k),
    },
    crypto: globalThis.crypto,
    screen: { width: 1280, height: 800 },
    atob,
    btoa,
    console: { warn: () => {} },
    addEventListener: (type, fn) => { windowListeners[type] = fn; },
    fetch: async (url, init) => {
      const call = { url, init, body: init.body ? JSON.parse(init.body) : null };
      sent.push(call);
      const next = answers.length ? answers.shift() : reply(200, { success: true });
      if (next instanceof Error) throw next;
      return await next; // a promise: an answer the test releases when it wants
    },
  };
  vm.runInNewContext(SOURCE, {
    window,
    setTimeout: (...a) => globalThis.setTimeout(...a),
    clearTimeout: (...a) => globalThis.clearTimeout(...a),
    Date,
    URL,
    Blob,
  });
  return { nf: window.nudgeflow, sent, storage, window, windowListeners };
}

const queued = (storage) => {
  const key = [...storage.keys()].find((k) => k.startsWith("nudgeflow:queue:"));
  return key ? JSON.parse(storage.get(key)) : [];
};

test("events are sent as one Segment batch when flushAt of them wait", async () => {
  const { nf, sent } = page();
  nf.load({ writeKey: KEY, flushAt: 3 });
  nf.page();
  nf.identify("ada", { email: "ada@example.com" });
  nf.track("Product Viewed", { sku: "B-1" });
  mock.timers.tick(0);
  await settle();
  assert.equal(sent.length, 1);
  const [call] = sent;
  assert.equal(call.url, HOST + "/v1/batch"); // the host defaults to where the script came from
  assert.equal(call.init.method, "POST");
  assert.equal(call.init.headers.Authorization, "Basic " + btoa(KEY + ":"));
  assert.equal(call.init.headers["Content-Type"], "application/json");
  assert.equal(call.init.keepalive, true);
  const [pageview, identify, track] = call.body.batch;
  assert.deepEqual([pageview.type, identify.type, track.type], ["page", "identify", "track"]);
  const anon = pageview.anonymousId;
  assert.match(anon, /^[0-9a-f-]{36}$/);
  for (const m of call.body.batch) {
    assert.match(m.messageId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(m.anonymousId, anon);
    assert.equal(m.timestamp, "2026-03-01T10:00:00.000Z");
    assert.equal(m.sentAt, call.body.sentAt);
    assert.deepEqual(m.context.library, { name: "nudgeflow.js", version: nf.VERSION });
    assert.equal(m.context.userAgent, "NodeTest/1.0");
    assert.equal(m.context.locale, "en-GB");
    assert.equal(m.context.page.url, "https://shop.example.com/p/boots?c=red");
  }
  assert.equal(pageview.userId, undefined);
  assert.deepEqual(pageview.properties, {
    path: "/p/boots", referrer: "https://search.example/", search: "?c=red", title: "Boots",
    url: "https://shop.example.com/p/boots?c=red",
  });
  assert.equal(identify.userId, "ada");
  assert.deepEqual(identify.traits, { email: "ada@example.com" });
  assert.equal(track.userId, "ada");
  assert.equal(track.event, "Product Viewed");
  assert.deepEqual(track.properties, { sku: "B-1" });
});

test("fewer events wait flushInterval, then go together", async () => {
  const { nf, sent, storage } = page();
  nf.load({ writeKey: KEY, flushInterval: 2000 });
  nf.track("A");
  mock.timers.tick(1000);
  nf.track("B");
  await settle();
  assert.equal(sent.length, 0);
  assert.equal(queued(storage).length, 2); // already safe in localStorage
  mock.timers.tick(1000);
  await settle();
  assert.deepEqual(sent[0].body.batch.map((m) => m.event), ["A", "B"]);
  assert.equal(queued(storage).length, 0);
});

test("a failed send is retried with growing backoff, with the same messageIds", async () => {
  const { nf, sent, storage } = page({
    answers: [new TypeError("Failed to fetch"), reply(503), reply(500), reply(200)],
  });
  nf.load({ writeKey: KEY, flushAt: 1, retryBase: 1000 });
  nf.track("Checkout Started");
  mock.timers.tick(0);
  await settle();
  assert.equal(sent.length, 1);
  const id = sent[0].body.batch[0].messageId;
  // Backoff: ~1 s, ~2 s, ~4 s (±20 %): nothing earlier than 80 % of each.
  for (const [early, late] of [[799, 1201], [1599, 2401], [3199, 4801]]) {
    const before = sent.length;
    mock.timers.tick(early);
    await settle();
    assert.equal(sent.length, before, "retried too early");
    mock.timers.tick(late - early);
    await settle();
    assert.equal(sent.length, before + 1, "not retried in time");
  }
  assert.deepEqual(sent.map((s) => s.body.batch[0].messageId), [id, id, id, id]);
  assert.equal(queued(storage).length, 0);
});

test("a 429 waits at least its Retry-After", async () => {
  const { nf, sent } = page({ answers: [reply(429, {}, { "Retry-After": "30" })] });
  nf.load({ writeKey: KEY, flushAt: 1 });
  nf.track("X");
  mock.timers.tick(0);
  await settle();
  mock.timers.tick(29_000);
  await settle();
  assert.equal(sent.length, 1);
  mock.timers.tick(6_001);
  await settle();
  assert.equal(sent.length, 2);
});

test("what is queued survives a reload and is sent by the next page", async () => {
  const storage = new Map();
  const first = page({ storage, answers: [new TypeError("offline")] });
  first.nf.load({ writeKey: KEY, flushAt: 1 });
  first.nf.identify("ada");
  mock.timers.tick(0);
  await settle();
  const lost = queued(storage);
  assert.equal(lost.length, 1);

  const second = page({ storage }); // the same origin's localStorage, a new page
  second.nf.load({ writeKey: KEY });
  mock.timers.tick(0);
  await settle();
  assert.equal(second.sent.length, 1);
  assert.equal(second.sent[0].body.batch[0].messageId, lost[0].messageId);
  assert.equal(queued(storage).length, 0);
  // The visitor is remembered too.
  assert.equal(second.nf.user().userId, "ada");
  assert.equal(second.nf.user().anonymousId, lost[0].anonymousId);
});

test("events the server refuses are dropped by index; the rest are sent", async () => {
  const refusal = reply(400, { success: false, message: "event 1: properties: bad", errors: [{ field: "batch[1].properties", index: 1 }] });
  const { nf, sent, storage } = page({ answers: [refusal, reply(200)] });
  nf.load({ writeKey: KEY, flushAt: 3 });
  nf.track("A");
  nf.track("B");
  nf.track("C");
  mock.timers.tick(0);
  await settle();
  assert.equal(sent.length, 2);
  assert.deepEqual(sent[1].body.batch.map((m) => m.event), ["A", "C"]);
  assert.equal(queued(storage).length, 0);
});

test("a refused write key stops sending and keeps the queue", async () => {
  const { nf, sent, storage } = page({ answers: [reply(401)] });
  nf.load({ writeKey: KEY, flushAt: 1 });
  nf.track("A");
  mock.timers.tick(0);
  await settle();
  nf.track("B");
  mock.timers.tick(120_000);
  await settle();
  assert.equal(sent.length, 1);
  assert.equal(queued(storage).length, 2);
});

test("flush() resolves once everything queued is acknowledged", async () => {
  const { nf, sent } = page();
  nf.load({ writeKey: KEY, flushInterval: 60_000 });
  nf.track("A");
  const done = nf.flush();
  await settle();
  assert.equal(await done, true);
  assert.equal(sent.length, 1);
});

test("batches stay under maxBatchBytes, so each one survives the page closing", async () => {
  const { nf, sent } = page();
  nf.load({ writeKey: KEY, flushInterval: 60_000, maxBatchBytes: 3000 });
  for (let i = 0; i < 6; i++) nf.track("Big", { blob: "x".repeat(800) });
  await nf.flush();
  assert.ok(sent.length >= 2);
  assert.equal(sent.reduce((n, s) => n + s.body.batch.length, 0), 6);
  for (const s of sent) assert.ok(s.init.body.length < 4000);
});

test("leaving the page hands the queue to a keepalive request", async () => {
  const { nf, sent, windowListeners } = page();
  nf.load({ writeKey: KEY, flushInterval: 60_000 });
  nf.track("Leaving");
  windowListeners.pagehide();
  await settle();
  assert.equal(sent.length, 1);
  assert.equal(sent[0].init.keepalive, true);
});

test("identify merges traits; reset forgets the user and starts a new anonymousId", async () => {
  const { nf } = page();
  nf.load({ writeKey: KEY, flushInterval: 60_000 });
  const anon = nf.user().anonymousId;
  nf.identify("ada", { plan: "pro" });
  nf.identify({ email: "ada@example.com" });
  assert.deepEqual({ ...nf.user().traits }, { plan: "pro", email: "ada@example.com" });
  assert.equal(nf.user().userId, "ada");
  nf.reset();
  assert.equal(nf.user().userId, null);
  assert.notEqual(nf.user().anonymousId, anon);
  assert.deepEqual({ ...nf.user().traits }, {});
});

test("calls queued by the async snippet before the script arrived are replayed in order", async () => {
  const preset = [["load", { writeKey: KEY, flushAt: 2 }], ["track", "Early"], ["page", "Home"]];
  const { sent } = page({ preset });
  mock.timers.tick(0);
  await settle();
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0].body.batch.map((m) => m.type), ["track", "page"]);
  assert.equal(sent[0].body.batch[1].name, "Home");
});

test("load without a write key is an error; calls before load wait for it", async () => {
  const { nf, sent } = page();
  assert.throws(() => nf.load({}), /writeKey is required/);
  nf.track("Before");
  nf.load({ writeKey: KEY, host: "https://other.example.com/", flushAt: 1 });
  mock.timers.tick(0);
  await settle();
  assert.equal(sent[0].url, "https://other.example.com/v1/batch");
  assert.equal(sent[0].body.batch[0].event, "Before");
});

function deferred() {
  let release;
  const promise = new Promise((resolve) => { release = resolve; });
  return { promise, release };
}

test("a flush asked for while a send is in flight also sends what came after it", async () => {
  const slow = deferred();
  const { nf, sent, storage } = page({ answers: [slow.promise] });
  nf.load({ writeKey: KEY, flushInterval: 60_000 });
  nf.track("A");
  const first = nf.flush();
  await settle();
  nf.track("B"); // the send in flight has read the queue already
  const second = nf.flush();
  slow.release(reply(200));
  assert.equal(await first, true);
  assert.equal(await second, true);
  assert.deepEqual(sent.map((s) => s.body.batch.map((m) => m.event)), [["A"], ["B"]]);
  assert.equal(queued(storage).length, 0);
});

test("events queued during a send are not stranded when their timer fires mid-send", async () => {
  const slow = deferred();
  const { nf, sent, storage } = page({ answers: [slow.promise] });
  nf.load({ writeKey: KEY, flushInterval: 100 });
  nf.track("A");
  mock.timers.tick(100); // A's send starts, and hangs
  await settle();
  nf.track("B");
  mock.timers.tick(100); // B's timer fires while A is in flight
  await settle();
  slow.release(reply(200));
  await settle();
  assert.deepEqual(sent.map((s) => s.body.batch.map((m) => m.event)), [["A"], ["B"]]);
  assert.equal(queued(storage).length, 0);
});

test("leaving the page during a send sends the rest beside it, at once", async () => {
  const slow = deferred();
  const { nf, sent, windowListeners } = page({ answers: [slow.promise] });
  nf.load({ writeKey: KEY, flushInterval: 60_000 });
  nf.track("A");
  nf.flush();
  await settle();
  nf.track("B");
  windowListeners.pagehide();
  await settle();
  assert.deepEqual(sent.map((s) => s.body.batch.map((m) => m.event)), [["A"], ["B"]]);
  assert.ok(sent.every((s) => s.init.keepalive));
  slow.release(reply(200));
  await settle();
});

// -- identity verification (docs/identity.md) ------------------------------------------------------

test("identify's userHash rides on every later call as that user, across reloads, until reset", async () => {
  const storage = new Map();
  const { nf, sent } = page({ storage });
  nf.load({ writeKey: KEY, flushInterval: 60_000 });
  nf.track("Before");
  nf.identify("ada", { email: "ada@example.com" }, { userHash: "h-ada" });
  nf.track("After");
  await nf.flush();
  const [before, identify, after] = sent[0].body.batch;
  assert.equal(before.context.userHash, undefined); // anonymous: nothing to prove
  assert.equal(identify.context.userHash, "h-ada");
  assert.equal(after.context.userHash, "h-ada");

  const second = page({ storage }); // the next page load of the site
  second.nf.load({ writeKey: KEY, flushInterval: 60_000 });
  second.nf.track("Reloaded");
  second.nf.identify({ plan: "pro" }); // traits only: same user, the hash stays
  await second.nf.flush();
  assert.deepEqual(second.sent[0].body.batch.map((m) => m.context.userHash), ["h-ada", "h-ada"]);

  second.nf.identify("bob"); // another user without a hash: ada's must not be sent as his
  second.nf.track("As Bob");
  second.nf.identify("bob", {}, { userHash: "h-bob" });
  second.nf.reset();
  second.nf.track("Logged Out");
  await second.nf.flush();
  assert.deepEqual(second.sent[1].body.batch.map((m) => m.context.userHash),
    [undefined, undefined, "h-bob", undefined]);
  assert.ok(![...storage.keys()].some((k) => k.endsWith("userHash")));
});

test("a 403 naming context.userHash drops those events by index and keeps sending the rest", async () => {
  const refusal = reply(403, {
    success: false, code: "identity_not_verified", message: "event 1: batch[1].context.userHash: missing",
    errors: [{ field: "batch[1].context.userHash", index: 1 }],
  });
  const { nf, sent, storage } = page({ answers: [refusal, reply(200)] });
  nf.load({ writeKey: KEY, flushAt: 3 });
  nf.track("A");
  nf.identify("ada", { email: "ada@example.com" });
  nf.track("C");
  mock.timers.tick(0);
  await settle();
  assert.equal(sent.length, 2);
  assert.deepEqual(sent[1].body.batch.map((m) => m.event), ["A", "C"]);
  assert.equal(queued(storage).length, 0);
  nf.track("D"); // not blocked, as a refused write key would be
  await nf.flush();
  assert.equal(sent.length, 3);
});

test("a push subscription registered after identify carries the userHash", async () => {
  const { nf, sent, window } = page();
  const subscription = {
    endpoint: "https://push.example.net/send/abc",
    options: null,
    toJSON() { return { endpoint: this.endpoint, expirationTime: null, keys: { p256dh: "p", auth: "a" } }; },
  };
  const registration = {
    active: { state: "activated" },
    pushManager: { getSubscription: async () => null, subscribe: async () => subscription },
  };
  window.navigator.serviceWorker = { register: async () => registration, getRegistration: async () => registration };
  window.PushManager = function PushManager() {};
  window.Notification = { permission: "granted" };
  nf.load({ writeKey: KEY, flushInterval: 60_000, vapidPublicKey: "BAAA" });
  nf.identify("ada", {}, { userHash: "h-ada" });
  await nf.push.subscribe();
  const [registered] = sent.filter((s) => s.url.endsWith("/v1/push/subscriptions"));
  assert.equal(registered.body.userId, "ada");
  assert.equal(registered.body.context.userHash, "h-ada");
});
