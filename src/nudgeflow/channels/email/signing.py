"""DKIM: the signature a message carries when its SMTP settings have a key."""

from __future__ import annotations

# The headers a DKIM signature covers, when present. dkimpy's default list
# (dkim.DKIM.SHOULD) does not include List-Unsubscribe-Post, and RFC 8058 §4 requires both
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


def dkim_sign(raw: bytes, selector: str, domain: str, private_key: bytes) -> bytes:
    """`raw` with a DKIM-Signature header in front (relaxed/relaxed, rsa-sha256)."""
    import dkim

    present = {
        line.split(b":", 1)[0].strip().lower()
        for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        if b":" in line and not line[:1].isspace()
    }
    include = [h.lower().encode() for h in DKIM_HEADERS if h.lower().encode() in present]
    signature = dkim.sign(
        raw,
        selector.encode(),
        domain.encode(),
        private_key,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=include,
        linesep=b"\r\n",
    )
    return signature + raw
