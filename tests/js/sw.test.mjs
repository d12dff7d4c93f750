// The service worker's push and notificationclick handlers, under Node's test runner:
// sw.js runs in a vm context whose `self` is a fake ServiceWorkerGlobalScope that records
// what is shown, opened, focused and reported.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import vm from "node:vm";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const SOURCE = fs.readFileSync(path.join(here, "../../src/nudgeflow/web/sdk/sw.js"), "utf8");
const SCOPE = "https://shop.example.com/";
const REPORT = "https://push.example.com/t/n/abc.def";

function worker({ fetch, windows = [], maxActions = 2, openWindow } = {}) {
  const listeners = {};
  const rec = { shown: [], fetched: [], opened: [], focused: [], closed: 0 };
  const self = {
    addEventListener: (type, fn) => { listeners[type] = fn; },
    registration: {
      scope: SCOPE,
      showNotification: async (title, options) => { rec.shown.push({ title, options }); },
    },
    clients: {
      matchAll: async (query) => {
        rec.query = query;
        return windows.map((url) => ({ url, focus: async () => { rec.focused.push(url); return { url }; } }));
      },
      openWindow: openWindow || (async (url) => { rec.opened.push(url); return { url }; }),
      claim: async () => {},
    },
    skipWaiting: () => {},
    Notification: { maxActions },
    fetch: fetch || (async (url, init) => { rec.fetched.push({ url, init, body: JSON.parse(init.body) }); return { ok: true }; }),
  };
  vm.runInNewContext(SOURCE, { self, URL, JSON, Promise, Array, Object, String });
  return { listeners, rec, self };
}

function pushEvent(payload) {
  const event = {
    data: payload === undefined ? null : {
      json: () => (typeof payload === "string" ? JSON.parse(payload) : payload),
      text: () => (typeof payload === "string" ? payload : JSON.stringify(payload)),
    },
    waitUntil(promise) { this.done = promise; },
  };
  return event;
}

function clickEvent(data, action = "") {
  const event = {
    action,
    notification: { data, close() { event.closedNotification = true; } },
    waitUntil(promise) { this.done = promise; },
  };
  return event;
}

const MESSAGE = {
  title: "Your cart misses you",
  body: "2 items are waiting, Ada",
  key: "run-1:nudge:1",
  icon: "https://cdn.example.com/icon.png",
  image: "https://cdn.example.com/cart.jpg",
  url: "https://shop.example.com/cart",
  actions: [
    { action: "checkout", title: "Check out", url: "https://shop.example.com/checkout" },
    { action: "later", title: "Later" },
    { action: "third", title: "Too many" },
  ],
  data: { cart_id: "c-9" },
  report_url: REPORT,
};

test("a push shows the notification with its title, body, images, actions and data", async () => {
  const { listeners, rec } = worker();
  const event = pushEvent(MESSAGE);
  listeners.push(event);
  await event.done;
  assert.equal(rec.shown.length, 1);
  const { title, options } = rec.shown[0];
  assert.equal(title, "Your cart misses you");
  assert.equal(options.body, "2 items are waiting, Ada");
  assert.equal(options.icon, MESSAGE.icon);
  assert.equal(options.image, MESSAGE.image);
  assert.equal(options.tag, "run-1:nudge:1"); // a redelivered message replaces itself
  // Buttons carry no url (the Notifications API has none); as many as the browser shows.
  assert.deepEqual(JSON.parse(JSON.stringify(options.actions)), [
    { action: "checkout", title: "Check out" },
    { action: "later", title: "Later" },
  ]);
  assert.deepEqual(JSON.parse(JSON.stringify(options.data)), {
    key: "run-1:nudge:1",
    url: "https://shop.example.com/cart",
    report_url: REPORT,
    actionUrls: { checkout: "https://shop.example.com/checkout" },
    data: { cart_id: "c-9" },
  });
});

test("a shown push is reported delivered, after it is shown, with keepalive and no credentials", async () => {
  const order = [];
  const { listeners, rec, self } = worker({
    fetch: async (url, init) => { order.push("report"); rec.fetched.push({ url, init, body: JSON.parse(init.body) }); return { ok: true }; },
  });
  const show = self.registration.showNotification;
  self.registration.showNotification = async (...args) => { order.push("show"); return show(...args); };
  const event = pushEvent(MESSAGE);
  listeners.push(event);
  await event.done;
  assert.deepEqual(order, ["show", "report"]);
  const [call] = rec.fetched;
  assert.equal(call.url, REPORT);
  assert.equal(call.init.method, "POST");
  assert.equal(call.init.keepalive, true);
  assert.equal(call.init.credentials, "omit");
  assert.equal(call.init.headers["Content-Type"], "application/json");
  assert.deepEqual(call.body, { event: "delivered" });
});

test("a failing report never fails the push event", async () => {
  for (const fetch of [
    async () => { throw new TypeError("Failed to fetch"); },
    () => { throw new Error("synchronous"); },
    async () => ({ ok: false, status: 503 }),
  ]) {
    const { listeners, rec } = worker({ fetch });
    const event = pushEvent(MESSAGE);
    listeners.push(event);
    await event.done; // resolves: does not reject
    assert.equal(rec.shown.length, 1);
  }
});

test("without a report_url nothing is fetched; without a payload or JSON, something is still shown", async () => {
  const { listeners, rec } = worker();
  const plain = pushEvent({ title: "Hi", body: "there" });
  listeners.push(plain);
  await plain.done;
  assert.equal(rec.fetched.length, 0);

  const text = pushEvent("not json at all");
  listeners.push(text);
  await text.done;
  assert.equal(rec.shown[1].title, "New notification");
  assert.equal(rec.shown[1].options.body, "not json at all");

  const empty = pushEvent(undefined);
  listeners.push(empty);
  await empty.done;
  assert.equal(rec.shown[2].title, "New notification");
  assert.equal(rec.shown[2].options.tag, undefined);
});

test("malformed actions are left out", async () => {
  const { listeners, rec } = worker({ maxActions: 5 });
  const event = pushEvent({ title: "T", actions: [null, { action: "a" }, { title: "no id" }, { action: "ok", title: "OK" }, "x"] });
  listeners.push(event);
  await event.done;
  assert.deepEqual(JSON.parse(JSON.stringify(rec.shown[0].options.actions)), [{ action: "ok", title: "OK" }]);
});

async function shownData(message) {
  const { listeners, rec } = worker();
  const event = pushEvent(message);
  listeners.push(event);
  await event.done;
  return rec.shown[0].options.data;
}

test("a click on the notification closes it, opens its url and reports the click", async () => {
  const data = await shownData(MESSAGE);
  const { listeners, rec } = worker();
  const event = clickEvent(data);
  listeners.notificationclick(event);
  await event.done;
  assert.equal(event.closedNotification, true);
  assert.deepEqual(rec.opened, ["https://shop.example.com/cart"]);
  assert.deepEqual(JSON.parse(JSON.stringify(rec.query)), { type: "window", includeUncontrolled: true });
  assert.deepEqual(rec.fetched.map((f) => [f.url, f.body]), [[REPORT, { event: "clicked", action: null }]]);
});

test("a click on an action button opens that action's url and reports the action", async () => {
  const data = await shownData(MESSAGE);
  const { listeners, rec } = worker();
  const event = clickEvent(data, "checkout");
  listeners.notificationclick(event);
  await event.done;
  assert.deepEqual(rec.opened, ["https://shop.example.com/checkout"]);
  assert.deepEqual(rec.fetched[0].body, { event: "clicked", action: "checkout" });
});

test("an action without a url of its own opens the notification's url", async () => {
  const data = await shownData(MESSAGE);
  const { listeners, rec } = worker();
  const event = clickEvent(data, "later");
  listeners.notificationclick(event);
  await event.done;
  assert.deepEqual(rec.opened, ["https://shop.example.com/cart"]);
  assert.deepEqual(rec.fetched[0].body, { event: "clicked", action: "later" });
});

test("a window already showing the deep link is focused instead of opening another", async () => {
  const data = await shownData(MESSAGE);
  const { listeners, rec } = worker({ windows: ["https://shop.example.com/", "https://shop.example.com/cart"] });
  const event = clickEvent(data);
  listeners.notificationclick(event);
  await event.done;
  assert.deepEqual(rec.focused, ["https://shop.example.com/cart"]);
  assert.deepEqual(rec.opened, []);
});

test("a relative deep link is resolved against the worker's scope; none opens the scope", async () => {
  let data = await shownData({ title: "T", url: "/orders/7" });
  let { listeners, rec } = worker();
  let event = clickEvent(data);
  listeners.notificationclick(event);
  await event.done;
  assert.deepEqual(rec.opened, ["https://shop.example.com/orders/7"]);

  data = await shownData({ title: "T" });
  ({ listeners, rec } = worker());
  event = clickEvent(data);
  listeners.notificationclick(event);
  await event.done;
  assert.deepEqual(rec.opened, [SCOPE]);
  assert.equal(rec.fetched.length, 0); // no report_url: nothing to report to
});

test("a window that cannot be opened does not stop the click from being reported", async () => {
  const data = await shownData(MESSAGE);
  const { listeners, rec } = worker({ openWindow: async () => { throw new TypeError("not allowed"); } });
  const event = clickEvent(data);
  listeners.notificationclick(event);
  await event.done;
  assert.deepEqual(rec.fetched[0].body, { event: "clicked", action: null });
});

test("a deep link that is not http(s) opens the worker's scope, never the link", async () => {
  // A push's url may be rendered from event data (anyone with the public write key):
  // javascript:, data: and other schemes are not opened, the click is still reported.
  for (const url of ["javascript:alert(1)", " JavaScript:alert(1)", "data:text/html,<b>x</b>", "file:///etc/passwd", "vbscript:x"]) {
    const data = await shownData({ title: "T", url, report_url: REPORT });
    const { listeners, rec } = worker();
    const event = clickEvent(data);
    listeners.notificationclick(event);
    await event.done;
    assert.deepEqual(rec.opened, [SCOPE], url);
    assert.deepEqual(rec.fetched[0].body, { event: "clicked", action: null });
  }
});
