"""Which items of a report received by SMTP are believed: each must name the recipient
its signed bounce address was made for (model/bounce_address.py).

- A DSN comes back to the message's envelope sender, so the RCPT address is the signed one:
  the recipient the DSN names (Final-Recipient, or Original-Recipient after a forward)
  must be the one that address was signed for.
- A feedback-loop report (ARF) goes to the fixed address registered with the mailbox
  provider (`fbl+<workspace>@`), which signs nothing; the report's Original-Mail-From (or
  the returned message's Return-Path) is our signed address, and the complainer must be
  the recipient it was signed for.
- When the report returns our message key, the address must have been made for that
  message: a genuine report returns the headers of the very message the address was on.

Anything else is refused, with a reason fit for a log line (no secret, no address).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from nudgeflow.content.bounce_parse import Bounce, Complaint
from nudgeflow.model.bounce_address import SignedTag, bounce_key, names_message, parse_signed, verifies

Item = Bounce | Complaint


@dataclass
class Checked:
    accepted: list[Item] = field(default_factory=list)  # with the address the mail was sent to
    refused: list[str] = field(default_factory=list)  # one reason per refused item


def check_items(
    items: list[Item], workspace_id: str, rcpt_tag: SignedTag | None, tracking_secret: str | None
) -> Checked:
    """Split `items` into those the signature vouches for and reasons for the rest.
    `rcpt_tag`: the signed RCPT address (None: a feedback-loop address)."""
    out = Checked()
    key = bounce_key(tracking_secret) if tracking_secret else None
    for item in items:
        reason, accepted = _check(item, workspace_id, rcpt_tag, key)
        if accepted is not None:
            out.accepted.append(accepted)
        else:
            out.refused.append(reason)
    return out


def _check(item: Item, workspace_id: str, rcpt_tag: SignedTag | None, key: bytes | None) -> tuple[str, Item | None]:
    tag = rcpt_tag
    if tag is None:
        if not isinstance(item, Complaint):
            return "a delivery status report sent to a feedback-loop address, not to a signed bounce address", None
        tag = parse_signed(item.original_mail_from or "")
        if tag is None:
            return "the complaint's Original-Mail-From (or returned Return-Path) is no signed bounce address", None
        if tag.workspace_id != workspace_id:
            return "the complaint's signed bounce address is of another workspace", None
    if key is None:
        return "the workspace has no key to check bounce addresses with (it has sent no signed mail)", None
    candidates = [item.address]
    if isinstance(item, Bounce) and item.original_recipient:
        candidates.append(item.original_recipient)
    # Every candidate is checked (no early exit): the time taken does not say which matched.
    matches = [c for c in candidates if verifies(key, tag, c)]
    if not matches:
        return "the bounce address was not signed for the recipient the report names (forged or altered)", None
    if item.message_key and not names_message(tag, item.message_key):
        return "the report returns a message key other than the one its bounce address was made for", None
    return "", replace(item, address=matches[0])
