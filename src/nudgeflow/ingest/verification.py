"""Identity verification: a public write key's request proves whom it speaks for.

A public write key is in every page and app of the workspace, so anyone holds it. Without a
proof, anyone who knows a userId could attach their own email address, push subscription or
device token to that person (and receive their messages), or merge their anonymous visitor
into that person. With verification on for the workspace (store/identity_settings.py), a
public-key request that does one of these for a userId must carry

    context.userHash = hex(HMAC-SHA256(key = the workspace's identity secret, msg = userId))

which only the site's backend can compute. Which requests need it (`reason_for`):

- any event carrying a userId together with an anonymousId, or an alias with a previousId:
  that is what links (and merges) an anonymous profile into the known one;
- an identify that sets or clears an address trait (email, phone);
- an identify that sets to true or false a trait the workspace maps to consent
  (`consent_traits`, docs/consent.md): that records the person's yes or no to messages;
- any event whose context.device.token registers a device token (store/device_ingest.py);
- a push subscription registered for a userId (web/sdk_api.py).

The last is known only once the workspace's settings are read, so `reason_for` names the
boolean traits an identify sets, and `verify` keeps the claim if one of them is mapped.

Events with only an anonymousId need no hash (there is no userId to prove). Server keys are
exempt. A request with one event lacking a valid hash is refused whole (403 naming
context.userHash, each offending event by index), and nothing of it is stored. The hash is
taken out of the event before it is stored: it is a standing proof for that userId.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from sqlalchemy import Engine

from nudgeflow.core.clock import Clock
from nudgeflow.ingest.errors import IngestError
from nudgeflow.model.events import InvalidEvent
from nudgeflow.model.traits import ALIASES
from nudgeflow.store import identity_settings, workspace_settings
from nudgeflow.store.consent_records import consent_traits_of
from nudgeflow.store.identity_settings import IdentitySettings
from nudgeflow.store.workspaces import SERVER

if TYPE_CHECKING:
    from nudgeflow.ingest.state import IngestState

log = logging.getLogger("nudgeflow.ingest")

USER_HASH = "userHash"
ADDRESS_TRAITS = ("email", "phone")
# A change made by `nudgeflow workspace identity …` in another process reaches a running
# server within this many seconds (the admin API's changes reach its own process at once).
IDENTITY_CACHE_TTL_S = 5.0


def user_hash(secret: str, user_id: str) -> str:
    """What a backend computes for its signed-in user."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def hash_matches(secrets: Sequence[str], user_id: str, given: Any) -> bool:
    """Whether `given` is the hash of userId under any valid secret, compared in constant time."""
    if not isinstance(given, str) or len(given) != 64:
        return False
    given_bytes = given.lower().encode()
    ok = False
    for secret in secrets:  # every secret is tried: how many match must not show in the timing
        ok |= hmac.compare_digest(user_hash(secret, user_id).encode(), given_bytes)
    return ok


def take_user_hash(message: dict[str, Any], batch_context: dict[str, Any] | None = None) -> Any:
    """Remove context.userHash from the message (or from the batch context it will use) and
    return it. The message keeps a context without it, so it is never stored."""
    own = message.get("context")
    context = own or batch_context  # as normalize() chooses
    if not isinstance(context, dict) or USER_HASH not in context:
        return None
    message["context"] = {k: v for k, v in context.items() if k != USER_HASH}
    return context[USER_HASH]


# Why an event needs a userHash: a phrase for the error, or the boolean traits an identify
# sets, which need one only where the workspace maps one of them to consent (`verify` knows).
Reason = str | tuple[str, ...]


def reason_for(message: dict[str, Any], batch_context: dict[str, Any] | None = None) -> Reason | None:
    """Why this event needs a userHash, or None."""
    if not message.get("userId"):
        return None
    type_ = message.get("type")
    if message.get("anonymousId"):
        return "it links an anonymousId to the userId"
    if type_ == "alias" and message.get("previousId"):
        return "it links a previousId to the userId"
    context = message.get("context") or batch_context
    context = context if isinstance(context, dict) else {}
    consent: tuple[str, ...] = ()
    # The traits as normalize() reads them: the message's, else (RudderStack) the context's.
    traits = (message.get("traits") or context.get("traits")) if type_ == "identify" else None
    if isinstance(traits, dict):
        for name in ADDRESS_TRAITS:
            if name in traits:
                return f"it sets the {name} trait"
        # Named as the profile stores them (model/traits.clean_traits), as the map names them.
        consent = tuple(ALIASES.get(str(k)) or str(k) for k, v in traits.items() if isinstance(v, bool))
    device = context.get("device")
    if isinstance(device, dict) and device.get("token") not in (None, ""):
        return "it registers a device token (context.device.token)"
    return consent or None


def _consent_reason(reason: Reason, mapped: frozenset[str]) -> str | None:
    """The phrase for a claim, None for an identify none of whose boolean traits is mapped."""
    if isinstance(reason, str):
        return reason
    name = next((n for n in reason if n in mapped), None)
    return None if name is None else f"it sets the {name} trait, which records consent (consent_traits)"


@dataclass(frozen=True)
class Proofs:
    """What a workspace asks a public key to prove: its identity settings, and the traits it
    maps to consent (read from the same settings document)."""

    identity: IdentitySettings
    consent_traits: frozenset[str] = frozenset()


class IdentityGate:
    """The workspaces' identity settings, cached briefly: only requests that need a proof read them."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        self._known: dict[str, tuple[float, Proofs]] = {}

    def _read(self, workspace_id: str) -> Proofs:
        with self._engine.connect() as conn:
            document = workspace_settings.get_all(conn, workspace_id)
        return Proofs(
            identity_settings.parse(document.get(identity_settings.IDENTITY)),
            frozenset(consent_traits_of(document)),
        )

    async def settings(self, workspace_id: str) -> Proofs:
        hit = self._known.get(workspace_id)
        now = self._clock.monotonic()
        if hit is not None and now - hit[0] < IDENTITY_CACHE_TTL_S:
            return hit[1]
        found = await anyio.to_thread.run_sync(self._read, workspace_id)
        self._known[workspace_id] = (now, found)
        return found

    def forget(self, workspace_id: str) -> None:
        self._known.pop(workspace_id, None)


# One event to check: its index in a batch (None for a single call), its userId, why it
# needs a proof, and the userHash it carried.
Claim = tuple[int | None, str, Reason, Any]


async def verify(state: IngestState, workspace_id: str, write_kind: str, claims: list[Claim], events: int) -> None:
    """Raise a 403 naming context.userHash for each claim without a valid hash, when the
    workspace has verification on and the key is public; nothing is stored then."""
    if not claims or write_kind == SERVER:
        return
    try:
        proofs = await state.identity.settings(workspace_id)
    except Exception as exc:  # the database is away, or no key here opens the settings: refuse, never 500
        log.error("identity settings unreadable: %s", type(exc).__name__)
        raise IngestError(
            503,
            "unavailable",
            "events were not stored; retry",
            headers={"Retry-After": "1"},
            reason="unavailable",
            events=events,
        ) from exc
    settings = proofs.identity
    if not settings.verification:
        return
    errors = []
    for index, user_id, needs, given in claims:
        reason = _consent_reason(needs, proofs.consent_traits)
        if reason is None or hash_matches(settings.secrets, user_id, given):
            continue
        field = f"batch[{index}].context.userHash" if index is not None else "context.userHash"
        problem = "missing" if given is None else "does not match the userId"
        errors.append(
            InvalidEvent(
                field,
                f"{problem}: required because {reason} (identity verification is on "
                "for this workspace; send the hex HMAC-SHA256 of the userId computed "
                "by your server, or use a server key)",
                index,
            )
        )
    if errors:
        first = errors[0]
        where = f"event {first.index}: " if first.index is not None else ""
        raise IngestError(
            403,
            "identity_not_verified",
            f"{where}{first.field}: {first.message}",
            errors=errors,
            reason="identity",
            events=events,
        )
