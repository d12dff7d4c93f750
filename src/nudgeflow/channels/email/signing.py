"""DKIM: the signatures a message carries when its SMTP settings have a key.

RFC 6376 with relaxed/relaxed canonicalization, written here, and the signature itself by
OpenSSL (`cryptography`): rsa-sha256 (RSASSA-PKCS1-v1_5 over SHA-256) for an RSA key,
ed25519-sha256 (RFC 8463) for an Ed25519 key. The algorithm is the key's: a PEM holding
an Ed25519 key signs with Ed25519. Several keys give several signatures over the same
message (dual signing, RFC 8463 §1: receivers that do not know Ed25519 ignore its
signature and check the RSA one); none covers another.

dkimpy did all of this in pure Python, 7 to 10 ms a message for the RSA alone; OpenSSL signs
in well under a millisecond (benchmarks/dkim_sign.py, benchmarks/RESULTS.md). dkimpy and
OpenDKIM verify what this module signs (tests/channels/test_dkim.py).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Sequence

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from nudgeflow.errors import DeliveryError

# The headers a DKIM signature covers, when present. dkimpy's default list
# (dkim.DKIM.SHOULD) did not include List-Unsubscribe-Post, and RFC 8058 §4 requires both
# List-Unsubscribe and List-Unsubscribe-Post to be covered by a valid DKIM signature for a
# one-click unsubscribe to be honoured: we name them ourselves.
DKIM_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Reply-To",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Id",
    "Feedback-ID",
)
_SIGNED = tuple(h.lower().encode() for h in DKIM_HEADERS)

# RFC 8301 §3.2: verifiers refuse RSA keys under 1024 bits (2048 is what we recommend).
MIN_RSA_BITS = 1024

RSA_SHA256 = "rsa-sha256"
ED25519_SHA256 = "ed25519-sha256"

# A DKIM key as the channel hands it over: (selector, domain, PEM private key). Plain
# values, so that a job carrying it can cross to a worker process.
DkimKey = tuple[str, str, bytes]

# Runs of whitespace become one space: tabs are made spaces first (bytes.replace), then runs
# of two or more spaces are matched. A pattern with a literal prefix lets `re` skip ahead in
# C; `[ \t]+` stops at every single space of a 30 KB body (ten times slower).
_SPACES = re.compile(rb"  +")
_TAG_VALUE = re.compile(r"[\x21-\x3a\x3c-\x7e]+")  # a tag value we write: no ';', no spaces


class DkimKeyError(DeliveryError, ValueError):
    """A DKIM private key that cannot sign (the message says why; never the key)."""


PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@functools.lru_cache(maxsize=32)
def load_key(pem: bytes) -> PrivateKey:
    """The private key of a PEM (parsed once per process: RSA's checks take milliseconds)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # Not the exception's text: it may quote the key.
        raise DkimKeyError("the DKIM key is not an unencrypted PEM private key") from exc
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise DkimKeyError(f"the DKIM RSA key has {key.key_size} bits; receivers need at least {MIN_RSA_BITS}")
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise DkimKeyError("a DKIM key must be RSA or Ed25519")


def algorithm(key: PrivateKey) -> str:
    return RSA_SHA256 if isinstance(key, rsa.RSAPrivateKey) else ED25519_SHA256


def public_record(pem: bytes) -> str:
    """The DNS TXT record (at <selector>._domainkey.<domain>) that lets receivers check
    signatures made with this private key."""
    key = load_key(pem)
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode()  # RFC 8463 §4: the raw 32 bytes


# -- canonicalization (RFC 6376 §3.4) ------------------------------------------------------------


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """§3.4.2: name lowercased; value unfolded, runs of whitespace one space, none at
    either end. Without the CRLF."""
    value = _SPACES.sub(b" ", value.replace(b"\r\n", b"").replace(b"\t", b" "))
    return name.strip().lower() + b":" + value.strip(b" ")


def relaxed_body(body: bytes) -> bytes:
    """§3.4.4: runs of whitespace one space, none at a line's end, no empty lines at the
    end; a body with any content ends with CRLF, an empty one stays empty."""
    body = _SPACES.sub(b" ", body.replace(b"\t", b" ")).replace(b" \r\n", b"\r\n")
    end = len(body)
    if body.endswith(b" "):
        end -= 1
    while end >= 2 and body[end - 2 : end] == b"\r\n":
        end -= 2
    return body[:end] + b"\r\n" if end else b""


def split_headers(raw: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The header fields (name, value with its folds) in order, and the body."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep and head.endswith(b"\r\n"):  # headers only
        head = head[:-2]
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        elif b":" in line:
            name, _, value = line.partition(b":")
            fields.append((name, value))
        else:
            raise ValueError("the message has a header line that is not a field")
    return fields, body


# -- signing ---------------------------------------------------------------------------------


def dkim_sign(raw: bytes, selector: str, domain: str, private_key: bytes, timestamp: int | None = None) -> bytes:
    """`raw` with a DKIM-Signature header in front (relaxed/relaxed; rsa-sha256 or
    ed25519-sha256, as the key is)."""
    return dkim_sign_all(raw, [(selector, domain, private_key)], timestamp)


def dkim_sign_all(raw: bytes, keys: Sequence[DkimKey], timestamp: int | None = None) -> bytes:
    """`raw` with one DKIM-Signature header per key in front, in the keys' order. `raw`
    has CRLF line ends (mime.py writes them). `timestamp`: the t= tag (seconds since the
    epoch; the message's Date), left out when None."""
    if not keys:
        return raw
    fields, body = split_headers(raw)
    body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode()
    # h=: each signed name present, its last instance (§5.4.2 picks from the bottom up;
    # every name is listed once, so the last one it is).
    last: dict[bytes, bytes] = {}
    for name, value in fields:
        lowered = name.strip().lower()
        if lowered in _SIGNED:
            last[lowered] = value
    names = [n for n in _SIGNED if n in last]
    signed_part = b"".join(relaxed_header(n, last[n]) + b"\r\n" for n in names)
    h = ":".join(n.decode() for n in names)
    headers = [
        _signature(signed_part, h, body_hash, selector, domain, pem, timestamp) for selector, domain, pem in keys
    ]
    return b"".join(headers) + raw


def _signature(
    signed_part: bytes, h: str, body_hash: str, selector: str, domain: str, pem: bytes, timestamp: int | None
) -> bytes:
    for tag, value in (("s", selector), ("d", domain)):
        if not _TAG_VALUE.fullmatch(value):
            raise DkimKeyError(f"the DKIM {'selector' if tag == 's' else 'domain'} {value!r} cannot be a tag value")
    key = load_key(pem)
    alg = algorithm(key)
    t = f" t={int(timestamp)};" if timestamp is not None else ""
    # Folded between tags (relaxed canonicalization makes the folds whitespace).
    value = f" v=1; a={alg}; c=relaxed/relaxed; d={domain}; s={selector};{t}\r\n\th={h};\r\n\tbh={body_hash};\r\n\tb="
    data = signed_part + relaxed_header(b"DKIM-Signature", value.encode("ascii"))
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        # RFC 8463 §3: Ed25519 (PureEdDSA) over the SHA-256 hash of what rsa-sha256 signs.
        signature = key.sign(hashlib.sha256(data).digest())
    b = base64.b64encode(signature).decode()
    # b= folded at 72 columns: whitespace inside it is ignored (§3.5).
    folded = "\r\n\t ".join(b[i : i + 72] for i in range(0, len(b), 72))
    return f"DKIM-Signature:{value}{folded}\r\n".encode("ascii")
