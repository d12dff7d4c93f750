"""The stand-ins for what a headless browser cannot have: its push service, and (when the
server does not serve one) the workspace's VAPID key. Shared by test_sdk_browser.py and its
fixtures in conftest.py; see that module's docstring for why they are needed."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from nudgeflow.core.clock import to_ms
from nudgeflow.store import workspace_settings
from tests.browser.shop_site import Site

# The stand-in for the browser's push service (see the module docstring). It keeps its one
# subscription in localStorage, as the browser keeps its own across page loads.
FAKE_PUSH_SERVICE = """
(() => {
  const KEY = "__fake_push_subscription";
  const b64url = (bytes) => \
btoa(String.fromCharCode(...bytes)).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
  const unb64url = (text) => Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
  const random = (n) => crypto.getRandomValues(new Uint8Array(n));
  window.__push = { subscribeCalls: [], unsubscribed: [] };
  function subscription(saved) {
    return {
      endpoint: saved.endpoint,
      expirationTime: null,
      options: { userVisibleOnly: true, applicationServerKey: unb64url(saved.key).buffer },
      toJSON() { \
return { endpoint: saved.endpoint, expirationTime: null, keys: { p256dh: saved.p256dh, auth: saved.auth } }; },
      async unsubscribe() { \
localStorage.removeItem(KEY); window.__push.unsubscribed.push(saved.endpoint); return true; },
    };
  }
  if (!window.PushManager) return;
  PushManager.prototype.getSubscription = async function () {
    const saved = localStorage.getItem(KEY);
    return saved ? subscription(JSON.parse(saved)) : null;
  };
  PushManager.prototype.subscribe = async function (options) {
    const registration = await navigator.serviceWorker.getRegistration("/");
    const key = b64url(new Uint8Array(options.applicationServerKey));
    window.__push.subscribeCalls.push({
      userVisibleOnly: options.userVisibleOnly, key,
      workerState: registration && registration.active ? registration.active.state : null,
    });
    const saved = { endpoint: "https://push.example.net/send/" + crypto.randomUUID(), key,
                    p256dh: b64url(new Uint8Array([4, ...random(64)])), auth: b64url(random(16)) };
    localStorage.setItem(KEY, JSON.stringify(saved));
    return subscription(saved);
  };
})();
"""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Vapid:
    """The workspace's VAPID public key, as the SDK fetches it.

    From the server's /v1/push/vapid-public-key when it has one; otherwise (the endpoint
    belongs to the Web Push sender's work) a key pair made with py_vapid is put in the
    workspace's "webpush" settings and the page's request for it is answered by a route.
    """

    def __init__(self, site: Site) -> None:
        self.site = site
        answer = httpx.get(f"{site.url}/v1/push/vapid-public-key", auth=(site.ws.write_key, ""), timeout=10)
        self.served = answer.status_code == 200
        self.public_key = answer.json()["publicKey"] if self.served else self._make()

    def _make(self) -> str:
        from cryptography.hazmat.primitives import serialization
        from py_vapid import Vapid02

        vapid = Vapid02()
        vapid.generate_keys()
        public = b64url(
            vapid.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        )
        private = b64url(vapid.private_key.private_numbers().private_value.to_bytes(32, "big"))
        with self.site.state.engine.begin() as conn:
            workspace_settings.set_section(
                conn,
                self.site.ws.workspace_id,
                "webpush",
                {"public_key": public, "private_key": private, "subject": "mailto:push@example.com"},
                to_ms(self.site.state.clock.now()),
            )
        return public

    def attach(self, context: Any) -> None:
        if not self.served:
            context.route(
                f"{self.site.url}/v1/push/vapid-public-key",
                lambda route: route.fulfill(json={"publicKey": self.public_key}, headers={"Cache-Control": "no-cache"}),
            )

    def rotate(self) -> str:
        admin = {"Authorization": f"Bearer {self.site.ws.admin_token}"}
        answer = httpx.post(f"{self.site.url}/api/settings/webpush/rotate", headers=admin, timeout=10)
        if self.served and answer.status_code == 200:
            self.public_key = answer.json()["public_key"]
        else:
            self.public_key = self._make()
        return self.public_key
