"""The keys of a workspace's settings document, in one declarative registry.

Each key says where it lives in the document (a dotted path), its type, its default, what it
changes, whether it is a secret, and how a value is checked. The CLI (`nudgeflow workspace
settings show|set`), the admin API (`GET`/`PATCH /api/settings`) and docs/settings.md all
read this list, so a key added here is reachable everywhere at once.

The complex sections (SMTP server, FCM, APNs, Web Push keys, bounce webhooks, webhook
destinations) keep their own commands and endpoints: `SECTIONS` names them so that `show`
can list them (masked) and point at the command that changes them.

Pure: no I/O. The store applies `apply_changes` to the opened document and writes it back.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from nudgeflow.errors import ModelError

MASK = "********"


class SettingError(ModelError, ValueError):
    """A value a key does not take; the message starts with the key's name."""


# -- validators: each takes the value as given (JSON, or text from the command line) ---------


def _control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def check_public_url(value: Any) -> str:
    """An absolute http(s) URL the outside world opens: no query, fragment or credentials,
    no control characters. Returned without a trailing slash. Raises ValueError (the caller
    prefixes the setting's name)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be an absolute http:// or https:// URL")
    text = value.strip()
    if _control(text) or " " in text:
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"is not a URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL (e.g. https://nudge.shop.example)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry a user or password")
    if parts.query or text.endswith("?"):
        raise ValueError("must not have a query (?…)")
    if parts.fragment or "#" in text:
        raise ValueError("must not have a fragment (#…)")
    if len(text) > 2000:
        raise ValueError("is longer than 2000 characters")
    return text.rstrip("/")


_HOST = re.compile(r"^(\*\.)?([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")


def check_host(value: Any) -> str:
    """A host name (`shop.example`) or a wildcard for its subdomains (`*.shop.example`)."""
    if not isinstance(value, str):
        raise ValueError("must be a host name")
    host = value.strip().lower().rstrip(".")
    if not host or len(host) > 253 or not _HOST.match(host):
        raise ValueError(f"{value!r} is not a host name (e.g. shop.example or *.shop.example)")
    return host


def check_domain(value: Any) -> str:
    host = check_host(value)
    if host.startswith("*."):
        raise ValueError(f"{value!r} is not a domain (no wildcard here)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    raise ValueError(f"{value!r} is not a domain")


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def check_email(value: Any) -> str:
    if not isinstance(value, str) or _control(value) or not _EMAIL.match(value.strip()) or len(value) > 320:
        raise ValueError(f"{value!r} is not an email address")
    return value.strip()


def check_text(max_len: int = 200) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be non-empty text")
        if _control(value):
            raise ValueError("must not contain control characters")
        if len(value) > max_len:
            raise ValueError(f"is longer than {max_len} characters")
        return value.strip()

    return check


def check_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not a boolean (true or false)")


_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _ID.match(value) or value == "*":
        raise ValueError(f"{what} {value!r} is not a name (letters, digits, _ . : -, at most 100)")
    return value


def check_topics(value: Any) -> list[Any]:
    """["offers", {"id": "news", "label": "Product news"}]: the preference center's topics."""
    if not isinstance(value, list):
        raise ValueError('must be a list of topic ids or {"id": …, "label": …} objects')
    out: list[Any] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        if isinstance(item, str):
            topic = _check_id(item, f"[{i}]")
            out.append(topic)
        elif isinstance(item, dict) and set(item) <= {"id", "label"} and "id" in item:
            topic = _check_id(item["id"], f"[{i}].id")
            entry: dict[str, str] = {"id": topic}
            if item.get("label") is not None:
                try:
                    entry["label"] = check_text(100)(item["label"])
                except ValueError as exc:
                    raise ValueError(f"[{i}].label {exc}") from None
            out.append(entry)
        else:
            raise ValueError(f'[{i}] must be a topic id or {{"id": …, "label": …}}')
        if topic in seen:
            raise ValueError(f"[{i}] repeats the topic {topic!r}")
        seen.add(topic)
    return out


def check_topic_map(value: Any) -> dict[str, str]:
    """{"cart-1h": "reminders"}: a template or journey id to a topic."""
    if not isinstance(value, dict):
        raise ValueError('must be an object of names to topics, e.g. {"cart-1h": "reminders"}')
    return {_check_id(k, "key"): _check_id(v, f"[{k}]") for k, v in value.items()}


def check_consent_mode(value: Any) -> str:
    """opt_out (marketing goes unless the person said no) or opt_in (only after a yes)."""
    if value not in ("opt_out", "opt_in"):
        raise ValueError(f"{value!r} is neither opt_out nor opt_in")
    return str(value)


_CHANNEL = re.compile(r"^[a-z][a-z0-9_-]{0,19}$")
_TRAIT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$.-]{0,99}$")


def check_consent_traits(value: Any) -> dict[str, dict[str, str]]:
    """{"newsletter_opt_in": {"channel": "email", "topic": "news"}}: an identify that sets the
    trait to true or false records that consent (topic "*" by default: all marketing)."""
    if not isinstance(value, dict):
        raise ValueError('must be an object of trait names to {"channel": …, "topic": …}')
    out: dict[str, dict[str, str]] = {}
    for trait, target in value.items():
        if not isinstance(trait, str) or not _TRAIT.match(trait):
            raise ValueError(f"{trait!r} is not a trait name")
        if trait in ("email", "phone"):
            raise ValueError(f"[{trait}] is an address, not a choice")
        if not isinstance(target, dict) or not set(target) <= {"channel", "topic"} or "channel" not in target:
            raise ValueError(f'[{trait}] must be {{"channel": …, "topic": …}} (topic: "*" for all marketing)')
        channel = target["channel"]
        if not isinstance(channel, str) or not _CHANNEL.match(channel):
            raise ValueError(f"[{trait}].channel {channel!r} is not a channel name")
        topic = target.get("topic", "*")
        entry = {"channel": channel, "topic": topic if topic == "*" else _check_id(topic, f"[{trait}].topic")}
        out[trait] = entry
    return out


_WINDOW = re.compile(r"^(\d+(?:\.\d+)?)(m|h|d|w)$")
_WINDOW_UNITS_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def window_ms(text: str) -> int:
    """An attribution window ("5d", "24h", "90m", "1w") in milliseconds."""
    match = _WINDOW.match(text.strip())
    if match is None:
        raise ValueError("must be a duration such as 90m, 24h, 5d or 1w")
    return int(float(match.group(1)) * _WINDOW_UNITS_MS[match.group(2)])


def check_window(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a duration such as 90m, 24h, 5d or 1w")
    text = value.strip()
    if not 0 < window_ms(text) <= 90 * 86_400_000:
        raise ValueError("must be more than nothing and at most 90d")
    return text


def check_hosts(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ValueError("must be a list of host names")
    out: list[str] = []
    for i, item in enumerate(value):
        try:
            host = check_host(item)
        except ValueError as exc:
            raise ValueError(f"[{i}] {exc}") from None
        if host not in out:
            out.append(host)
    return out


# -- the registry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    name: str  # the dotted path in the document: "links.allowed_domains"
    type: str  # url | text | email | domain | bool | list | object (how text from a CLI is read)
    default: Any
    effect: str  # one sentence: what the value changes
    check: Callable[[Any], Any] | None = None  # None: not settable here (see `how`)
    secret: bool = False
    how: str = ""  # where a read-only key is changed instead
    needs_section: str | None = None  # the section that must exist first (the SMTP server's fields)

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.name.split("."))

    @property
    def settable(self) -> bool:
        return self.check is not None


KEYS: tuple[Key, ...] = (
    Key(
        "public_base_url",
        "url",
        None,
        "The address tracked links, the open pixel, unsubscribe and preference links and push report_url "
        "point at; wins over the server's NUDGEFLOW_PUBLIC_URL.",
        check_public_url,
    ),
    Key(
        "smtp.from_address",
        "email",
        None,
        "The From address of the workspace's email (sender default).",
        check_email,
        needs_section="smtp",
    ),
    Key(
        "smtp.from_name",
        "text",
        None,
        "The display name beside the From address.",
        check_text(200),
        needs_section="smtp",
    ),
    Key(
        "smtp.reply_to",
        "email",
        None,
        "The Reply-To address of the workspace's email.",
        check_email,
        needs_section="smtp",
    ),
    Key(
        "smtp.bounce_domain",
        "domain",
        None,
        "Envelope sender: a signed bounces+<workspace>.<ref>.<mac>@this domain, where `serve --bounce-smtp` "
        "receives bounces.",
        check_domain,
        needs_section="smtp",
    ),
    Key("topics", "list", [], 'The topics of the preference center, in order: ids, or {"id", "label"}.', check_topics),
    Key(
        "topic_by_template", "object", {}, "A template's topic, for messages whose context names none.", check_topic_map
    ),
    Key(
        "topic_by_journey",
        "object",
        {},
        "A journey's topic, when neither context nor template map names one.",
        check_topic_map,
    ),
    Key(
        "consent",
        "text",
        "opt_out",
        "opt_out: marketing goes unless the person said no; opt_in: only to a person with a recorded yes "
        "for the channel (all marketing or the message's topic), else not sent with reason no_consent.",
        check_consent_mode,
    ),
    Key(
        "consent_traits",
        "object",
        {},
        'Identify traits that record consent when set to true or false: {"trait": {"channel", "topic"}}.',
        check_consent_traits,
    ),
    Key(
        "consent_confirmation_template",
        "text",
        None,
        "The email template a double opt-in request sends (it holds {{ links.confirm_subscription }}).",
        check_text(200),
    ),
    Key(
        "links.allowed_domains",
        "list",
        [],
        "Hosts (or *.domain) that tracked clicks may redirect to, beside the template's own links and the catalog.",
        check_hosts,
    ),
    Key(
        "identity.verification",
        "bool",
        False,
        "When true, public-key requests that set an address, register push or merge need context.userHash.",
        check_bool,
    ),
    Key(
        "identity.secrets",
        "list",
        [],
        "The identity-verification secrets (current, then previous).",
        secret=True,
        how="made and rotated by `nudgeflow workspace identity enable`, `rotate` and `finish-rotation`",
    ),
    Key(
        "attribution.email_click",
        "text",
        "5d",
        "How long after a click on an email a conversion is attributed to that email (last touch).",
        check_window,
    ),
    Key(
        "attribution.email_open",
        "text",
        "1d",
        "How long after an email is opened a conversion is attributed to it (last touch).",
        check_window,
    ),
    Key(
        "attribution.push_open",
        "text",
        "24h",
        "How long after a push notification is opened a conversion is attributed to it (last touch).",
        check_window,
    ),
    Key(
        "tracking_secret",
        "text",
        None,
        "Signs tracked links, unsubscribe tokens and (a key derived from it) bounce addresses; created on first use.",
        secret=True,
        how="created on first use; changing it would break every link and bounce address already sent",
    ),
)
BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}

# Sections with commands and endpoints of their own: shown masked, changed there.
SECTIONS: dict[str, str] = {
    "smtp": "nudgeflow workspace smtp set|show|clear; /api/settings/smtp",
    "fcm": "nudgeflow workspace fcm set|show|clear",
    "apns": "nudgeflow workspace apns set|show|clear",
    "webpush": "nudgeflow workspace vapid show|rotate; /api/settings/webpush",
    "bounce_webhooks": "nudgeflow workspace bounce-webhooks set|show|clear",
    "webhooks": "nudgeflow workspace webhooks destinations set|list|remove, webhooks secret show|rotate; "
    "/api/settings/webhooks",
}
# Fields of those sections that are secrets (masked on show).
SECRET_FIELDS = {
    "password",
    "dkim_private_key",
    "dkim_ed25519_private_key",
    "private_key",
    "service_account",
    "secret",
    "secrets",
    "token",
    "signing_key",
    "auth",
    "headers",  # a webhook destination's: they carry credentials (Authorization, API keys)
}


def parse_cli_value(key: Key, text: str) -> Any:
    """A value as typed on the command line: JSON for lists, objects and booleans (a bare
    word list `a,b` is accepted for lists); an empty text clears the key."""
    if text == "":
        return None
    if key.type in ("list", "object", "bool"):
        try:
            return json.loads(text)
        except ValueError:
            if key.type == "list":
                return [part.strip() for part in text.split(",") if part.strip()]
            if key.type == "bool":
                return text
            raise SettingError(f'{key.name}: {text!r} is not JSON (e.g. \'{{"cart-1h": "reminders"}}\')') from None
    return text


def _get(doc: Mapping[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    node: Any = doc
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _mask(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [MASK for _ in value]
    return MASK


def _is_secret_field(name: str) -> bool:
    # the listed names, and any other private key or secret a section may hold
    lowered = name.lower()
    return name in SECRET_FIELDS or "private" in lowered or "secret" in lowered or "password" in lowered


def _mask_section(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (_mask(v) if _is_secret_field(str(k)) and v else _mask_section(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_section(v) for v in value]
    return value


def show(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Every key with its value (secrets masked), default, whether it is set, and its effect;
    then the sections with commands of their own, masked."""
    keys: dict[str, Any] = {}
    for key in KEYS:
        present, value = _get(doc, key.path)
        keys[key.name] = {
            "value": (_mask(value) if key.secret else value) if present else key.default,
            "set": present,
            "default": key.default,
            "type": key.type,
            "secret": key.secret,
            "settable": key.settable,
            "effect": key.effect,
            **({"how": key.how} if key.how else {}),
        }
    sections = {
        name: {"value": _mask_section(doc[name]) if name in doc else None, "command": command}
        for name, command in SECTIONS.items()
    }
    # Anything else the document holds (a key of a newer version, say): shown, masked.
    known = {k.path[0] for k in KEYS} | set(SECTIONS)
    other = {name: _mask_section(value) for name, value in doc.items() if name not in known}
    return {"keys": keys, "sections": sections, **({"other": other} if other else {})}


def apply_changes(doc: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `doc` with `changes` ({key: value}, None clears a key) applied, every value
    checked. Raises SettingError naming the first key that is wrong; `doc` is never changed."""
    out = copy.deepcopy(doc)
    for name, raw in changes.items():
        key = BY_NAME.get(name)
        if key is None:
            near = ", ".join(k.name for k in KEYS if k.settable)
            raise SettingError(f"{name}: no such setting (settable: {near})")
        if not key.settable:
            raise SettingError(f"{name}: cannot be set here ({key.how})")
        *parents, leaf = key.path
        if key.needs_section and not isinstance(out.get(key.needs_section), dict):
            if raw is None:
                continue
            raise SettingError(
                f"{name}: the workspace has no {key.needs_section} section of its own; "
                f"set one first (nudgeflow workspace {key.needs_section} set)"
            )
        node = out
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                if raw is None:
                    break
                child = node[part] = {}
            node = child
        else:
            if raw is None:
                node.pop(leaf, None)
                continue
            try:
                node[leaf] = key.check(raw)  # type: ignore[misc]
            except SettingError:
                raise
            except (ValueError, TypeError) as exc:
                raise SettingError(f"{name}: {exc}") from None
    # Verification with no secret would refuse every such request: nobody can make a hash.
    identity = out.get("identity")
    if isinstance(identity, dict) and identity.get("verification") is True and not identity.get("secrets"):
        raise SettingError(
            "identity.verification: the workspace has no identity secret yet; "
            "`nudgeflow workspace identity enable` makes one and turns verification on"
        )
    # a section emptied by clearing its last key goes away
    for key in KEYS:
        if len(key.path) > 1 and key.path[0] in out and out[key.path[0]] == {} and key.path[0] not in SECTIONS:
            out.pop(key.path[0])
    return out
