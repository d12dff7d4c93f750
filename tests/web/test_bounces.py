"""Bounce and complaint webhooks over the live server, on SQLite and PostgreSQL.

Each provider gets a correctly signed request (keys made here: an RSA certificate served by
a loopback HTTP server for SNS, an ECDSA P-256 key for SendGrid, HTTP Basic for Postmark,
an HMAC key for Mailgun) -> suppression and an event on the person; a tampered one is
refused and nothing is recorded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.store import consent
from nudgeflow.store.bounce_webhooks import set_webhook_settings
from nudgeflow.web.bounces import SIGNED_MAX_AGE_S
from tests.runtime.bounce_support import add_person, add_sent_message, feedback_events, suppressions
from tests.support import LiveServer
from tests.web.sns_cert_server import SnsCertServer

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"


def _configure(live: LiveServer, ws: str, provider: str, values: dict[str, Any]) -> None:
    with live.state.engine.begin() as conn:
        set_webhook_settings(conn, ws, provider, values, to_ms(live.state.clock.now()))


def _nothing_recorded(live: LiveServer, ws: str) -> None:
    assert suppressions(live.state.engine, ws) == {}
    assert feedback_events(live.state.engine, ws) == []


# -- Amazon SES via SNS ---------------------------------------------------------------------


def _sns_sign(key: rsa.RSAPrivateKey, msg: dict[str, Any], version: str = "2") -> dict[str, Any]:
    if msg["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    canonical = "".join(f"{n}\n{msg[n]}\n" for n in names if n in msg)
    algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
    signature = key.sign(canonical.encode(), padding.PKCS1v15(), algorithm)
    return {**msg, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode()}


def _ses_notification(cert_url: str, document: dict[str, Any], message_id: str = "sns-1") -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Message": json.dumps(document),
        "Timestamp": "2026-01-01T00:00:00.000Z",
        "SigningCertURL": f"{cert_url}/SimpleNotificationService-test.pem",
        "UnsubscribeURL": f"{cert_url}/unsubscribe",
    }


SES_BOUNCE = {
    "notificationType": "Bounce",
    "bounce": {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "bouncedRecipients": [
            {
                "emailAddress": "ann@example.com",
                "action": "failed",
                "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown",
            }
        ],
        "timestamp": "2025-12-31T23:59:00.000Z",
        "feedbackId": "0100-abc",
    },
    "mail": {
        "timestamp": "2025-12-31T23:58:59.000Z",
        "messageId": "0100-ses-id",
        "source": "hello@shop.test",
        "headers": [{"name": "X-Nudgeflow-Message-Key", "value": "run-5:welcome:1"}],
        "commonHeaders": {"messageId": "<nf.1@shop.test>"},
    },
}

SES_COMPLAINT = {
    "notificationType": "Complaint",
    "complaint": {
        "complainedRecipients": [{"emailAddress": "ann@example.com"}],
        "complaintFeedbackType": "abuse",
        "timestamp": "2025-12-31T23:59:30.000Z",
        "feedbackId": "0100-def",
    },
    "mail": {"messageId": "0100-ses-id-2", "headers": []},
}


def test_ses_bounce_and_complaint(live: LiveServer, ws: Any, sns: SnsCertServer, sns_key: Any) -> None:
    wid = ws.workspace_id
    _configure(live, wid, "ses", {"topic_arns": [TOPIC]})
    pid = add_person(live.state.engine, wid, "ann", "ann@example.com")
    add_sent_message(live.state.engine, wid, pid, "run-5:welcome:1")
    with live.client() as client:
        body = _sns_sign(sns_key[0], _ses_notification(sns.url, SES_BOUNCE), version="1")
        r = client.post(
            f"/webhooks/ses/{wid}", content=json.dumps(body), headers={"x-amz-sns-message-type": "Notification"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["suppressed"] == 1
        body = _sns_sign(sns_key[0], _ses_notification(sns.url, SES_COMPLAINT, "sns-2"))
        r = client.post(f"/webhooks/ses/{wid}", content=json.dumps(body))
        assert r.status_code == 200, r.text
        # SNS delivers at least once: the same notification again changes nothing.
        assert client.post(f"/webhooks/ses/{wid}", content=json.dumps(body)).json()["events"] == 0
    assert suppressions(live.state.engine, wid) == {"ann@example.com": "complaint"}  # the latest reason
    events = feedback_events(live.state.engine, wid)
    assert [(e["event"], e["profile_id"]) for e in events] == [("Email Bounced", pid), ("Email Marked as Spam", pid)]
    assert events[0]["properties"] == {
        "kind": "hard",
        "status": "5.1.1",
        "diagnostic": "smtp; 550 5.1.1 user unknown",
        "message_key": "run-5:welcome:1",
        "provider": "ses",
        "email": "ann@example.com",
        "channel": "email",
    }
    assert sns.hits.count("/SimpleNotificationService-test.pem") == 1  # the certificate is cached


def test_ses_transient_bounce_is_an_event_only(live: LiveServer, ws: Any, sns: SnsCertServer, sns_key: Any) -> None:
    wid = ws.workspace_id
    _configure(live, wid, "ses", {"topic_arns": [TOPIC]})
    add_person(live.state.engine, wid, "ann", "ann@example.com")
    doc = json.loads(json.dumps(SES_BOUNCE))
    doc["bounce"]["bounceType"] = "Transient"
    doc["bounce"]["bouncedRecipients"][0].update(status="4.2.2", diagnosticCode="smtp; 452 4.2.2 mailbox full")
    with live.client() as client:
        r = client.post(
            f"/webhooks/ses/{wid}", content=json.dumps(_sns_sign(sns_key[0], _ses_notification(sns.url, doc)))
        )
    assert r.status_code == 200, r.text
    assert suppressions(live.state.engine, wid) == {}
    [event] = feedback_events(live.state.engine, wid)
    assert (event["properties"]["kind"], event["properties"]["status"]) == ("soft", "4.2.2")


def test_ses_subscription_confirmation(live: LiveServer, ws: Any, sns: SnsCertServer, sns_key: Any) -> None:
    wid = ws.workspace_id
    _configure(live, wid, "ses", {"topic_arns": [TOPIC]})
    msg = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "sub-1",
        "Token": "tok",
        "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe...",
        "SubscribeURL": f"{sns.url}/?Action=ConfirmSubscription&Token=tok",
        "Timestamp": "2026-01-01T00:00:00.000Z",
        "SigningCertURL": f"{sns.url}/SimpleNotificationService-test.pem",
    }
    with live.client() as client:
        r = client.post(f"/webhooks/ses/{wid}", content=json.dumps(_sns_sign(sns_key[0], msg)))
    assert r.status_code == 200 and r.json() == {"confirmed": True}
    assert "/?Action=ConfirmSubscription&Token=tok" in sns.hits


def test_ses_rejections(live: LiveServer, ws: Any, sns: SnsCertServer, sns_key: Any) -> None:
    wid = ws.workspace_id
    _configure(live, wid, "ses", {"topic_arns": [TOPIC]})
    add_person(live.state.engine, wid, "ann", "ann@example.com")
    good = _sns_sign(sns_key[0], _ses_notification(sns.url, SES_BOUNCE))
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tampered_doc = json.loads(good["Message"])
    tampered_doc["bounce"]["bouncedRecipients"][0]["emailAddress"] = "victim@example.com"
    cases = [
        ({**good, "Message": json.dumps(tampered_doc)}, 403, "does not match"),
        (_sns_sign(other_key, _ses_notification(sns.url, SES_BOUNCE)), 403, "does not match"),
        ({**good, "SigningCertURL": "https://evil.example.com/SimpleNotificationService.pem"}, 403, "SigningCertURL"),
        ({**good, "SigningCertURL": "http://sns.eu-west-1.amazonaws.com/x.pem"}, 403, "SigningCertURL"),
        ({**good, "SignatureVersion": "3"}, 403, "SignatureVersion"),
        ({**good, "TopicArn": "arn:aws:sns:eu-west-1:999999999999:other"}, 403, "allow-list"),
        ({k: v for k, v in good.items() if k != "MessageId"}, 400, "MessageId"),
        ({**good, "Type": "Surprise"}, 400, "Type"),
    ]
    with live.client() as client:
        for body, status, words in cases:
            r = client.post(f"/webhooks/ses/{wid}", content=json.dumps(body))
            assert (r.status_code, words in r.json()["detail"]) == (status, True), (words, r.text)
        assert client.post(f"/webhooks/ses/{wid}", content=b"{not json").status_code == 400
        assert client.post("/webhooks/ses/no-such-workspace", content=json.dumps(good)).status_code == 404
        # A NUL in the workspace id was a 503 on PostgreSQL (its text cannot hold NUL), which
        # a provider retries forever: no workspace has such an id.
        assert client.post("/webhooks/ses/no%00such", content=json.dumps(good)).status_code == 404
    _nothing_recorded(live, wid)


def test_sns_host_rule() -> None:
    from nudgeflow.web.bounces import BounceWebhooks

    hooks = BounceWebhooks()
    assert hooks.trusted_sns_url("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem")
    assert hooks.trusted_sns_url("https://sns.cn-north-1.amazonaws.com.cn/x.pem")
    for url in (
        "http://sns.eu-west-1.amazonaws.com/x.pem",
        "https://sns.eu-west-1.amazonaws.com.evil.test/x.pem",
        "https://evil.test/sns.eu-west-1.amazonaws.com/x.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/x.pem",
        "https://s3.amazonaws.com/x.pem",
    ):
        assert not hooks.trusted_sns_url(url), url


def test_ses_stale_or_future_timestamp_is_refused(
    live: LiveServer, ws: Any, sns: SnsCertServer, sns_key: Any, clock: VirtualClock
) -> None:
    """A captured SNS message, correctly signed, cannot be replayed once its signed
    Timestamp is more than SIGNED_MAX_AGE_S from the server's clock (virtual here)."""
    wid = ws.workspace_id
    _configure(live, wid, "ses", {"topic_arns": [TOPIC]})
    add_person(live.state.engine, wid, "ann", "ann@example.com")
    good = _sns_sign(sns_key[0], _ses_notification(sns.url, SES_BOUNCE))  # Timestamp: the clock's start
    ahead = _sns_sign(sns_key[0], {**_ses_notification(sns.url, SES_BOUNCE), "Timestamp": "2026-01-01T00:20:00Z"})
    with live.client() as client:
        r = client.post(f"/webhooks/ses/{wid}", content=json.dumps(ahead))
        assert r.status_code == 403 and "in the future" in r.json()["detail"], r.text
        clock.advance(SIGNED_MAX_AGE_S + 1)
        r = client.post(f"/webhooks/ses/{wid}", content=json.dumps(good))
        assert r.status_code == 403, r.text
        assert "SNS Timestamp" in r.json()["detail"] and f"{SIGNED_MAX_AGE_S} s" in r.json()["detail"]
        _nothing_recorded(live, wid)
        # Within the window, the same message is taken.
        fresh = {**_ses_notification(sns.url, SES_BOUNCE, "sns-9"), "Timestamp": "2026-01-01T00:05:00Z"}
        r = client.post(f"/webhooks/ses/{wid}", content=json.dumps(_sns_sign(sns_key[0], fresh)))
        assert r.status_code == 200 and r.json()["suppressed"] == 1, r.text


# -- SendGrid ---------------------------------------------------------------------------------


def _sendgrid_public(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()  # as SendGrid's settings page shows it


def _sendgrid_headers(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str = "1767225600") -> dict[str, str]:
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


SENDGRID_EVENTS = [
    {
        "email": "bea@example.com",
        "timestamp": 1767225590,
        "event": "bounce",
        "type": "bounce",
        "status": "5.1.1",
        "reason": "550 5.1.1 The email account that you tried to reach does not exist",
        "sg_event_id": "ev-1",
        "sg_message_id": "sg-1",
        "nudgeflow_message_key": "run-7:cart:1",
    },
    {
        "email": "cat@example.com",
        "timestamp": 1767225591,
        "event": "bounce",
        "type": "blocked",
        "status": "4.7.1",
        "reason": "421 4.7.1 try again later",
        "sg_event_id": "ev-2",
    },
    {"email": "dan@example.com", "timestamp": 1767225592, "event": "spamreport", "sg_event_id": "ev-3"},
    {"email": "bea@example.com", "timestamp": 1767225593, "event": "delivered", "sg_event_id": "ev-4"},
]


def test_sendgrid(live: LiveServer, ws: Any, sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    wid = ws.workspace_id
    _configure(live, wid, "sendgrid", {"public_key": _sendgrid_public(sendgrid_key)})
    bea = add_person(live.state.engine, wid, "bea", "bea@example.com")
    cat = add_person(live.state.engine, wid, "cat", "Cat@Example.com")
    dan = add_person(live.state.engine, wid, "dan", "dan@example.com")
    add_sent_message(live.state.engine, wid, bea, "run-7:cart:1")
    body = json.dumps(SENDGRID_EVENTS).encode()
    with live.client() as client:
        r = client.post(f"/webhooks/sendgrid/{wid}", content=body, headers=_sendgrid_headers(sendgrid_key, body))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "bounces": 2,
        "complaints": 1,
        "suppressed": 2,
        "events": 3,
        "unknown_people": 0,
        "repeated": 0,
        "ignored": 1,
    }
    assert suppressions(live.state.engine, wid) == {"bea@example.com": "hard_bounce", "dan@example.com": "complaint"}
    events = {e["profile_id"]: e for e in feedback_events(live.state.engine, wid)}
    assert events[bea]["properties"]["message_key"] == "run-7:cart:1"
    assert (events[cat]["event"], events[cat]["properties"]["kind"]) == ("Email Bounced", "soft")
    assert events[dan]["event"] == "Email Marked as Spam"


def test_sendgrid_stale_timestamp_is_refused_and_a_replay_in_the_window_changes_nothing(
    live: LiveServer, ws: Any, sendgrid_key: ec.EllipticCurvePrivateKey, clock: VirtualClock
) -> None:
    wid = ws.workspace_id
    _configure(live, wid, "sendgrid", {"public_key": _sendgrid_public(sendgrid_key)})
    add_person(live.state.engine, wid, "bea", "bea@example.com")
    body = json.dumps(SENDGRID_EVENTS[:1]).encode()
    captured = _sendgrid_headers(sendgrid_key, body)  # signed at the clock's start
    with live.client() as client:
        r = client.post(f"/webhooks/sendgrid/{wid}", content=body, headers=captured)
        assert r.status_code == 200 and r.json()["suppressed"] == 1, r.text
        # The operator lifts the suppression (a mistaken bounce); an attacker replays the
        # captured request within the window: it is a repeat, and changes nothing.
        with live.state.engine.begin() as conn:
            assert consent.unsuppress(conn, wid, "email", "bea@example.com")
        clock.advance(SIGNED_MAX_AGE_S - 1)
        r = client.post(f"/webhooks/sendgrid/{wid}", content=body, headers=captured)
        assert r.status_code == 200, r.text
        assert suppressions(live.state.engine, wid) == {}  # was suppressed again
        assert (r.json()["repeated"], r.json()["suppressed"]) == (1, 0)
        # Past the window, the signed timestamp is too old: refused.
        clock.advance(2)
        r = client.post(f"/webhooks/sendgrid/{wid}", content=body, headers=captured)
        assert r.status_code == 403 and "X-Twilio-Email-Event-Webhook-Timestamp" in r.json()["detail"], r.text
        # A timestamp that is no number, correctly signed, is refused too.
        odd = _sendgrid_headers(sendgrid_key, body, timestamp="yesterday")
        r = client.post(f"/webhooks/sendgrid/{wid}", content=body, headers=odd)
        assert r.status_code == 403 and "not a timestamp" in r.json()["detail"], r.text
    assert suppressions(live.state.engine, wid) == {}
    assert len(feedback_events(live.state.engine, wid)) == 1


def test_sendgrid_rejections(live: LiveServer, ws: Any, sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    wid = ws.workspace_id
    body = json.dumps(SENDGRID_EVENTS).encode()
    headers = _sendgrid_headers(sendgrid_key, body)
    with live.client() as client:
        # Not configured yet: refused, whatever the signature.
        assert client.post(f"/webhooks/sendgrid/{wid}", content=body, headers=headers).status_code == 403
        _configure(live, wid, "sendgrid", {"public_key": _sendgrid_public(sendgrid_key)})
        tampered = body.replace(b"bea@example.com", b"eve@example.com")
        assert client.post(f"/webhooks/sendgrid/{wid}", content=tampered, headers=headers).status_code == 403
        stale = {**headers, "X-Twilio-Email-Event-Webhook-Timestamp": "1767225601"}
        assert client.post(f"/webhooks/sendgrid/{wid}", content=body, headers=stale).status_code == 403
        other = ec.generate_private_key(ec.SECP256R1())
        assert (
            client.post(f"/webhooks/sendgrid/{wid}", content=body, headers=_sendgrid_headers(other, body)).status_code
            == 403
        )
        unsigned = {"Content-Type": "application/json"}
        assert client.post(f"/webhooks/sendgrid/{wid}", content=body, headers=unsigned).status_code == 401
        garbage = {**headers, "X-Twilio-Email-Event-Webhook-Signature": "%%%"}
        assert client.post(f"/webhooks/sendgrid/{wid}", content=body, headers=garbage).status_code == 403
        # Signed but malformed: 400 naming it.
        obj = b'{"event": "bounce"}'
        r = client.post(f"/webhooks/sendgrid/{wid}", content=obj, headers=_sendgrid_headers(sendgrid_key, obj))
        assert r.status_code == 400 and "array" in r.json()["detail"]
        no_email = b'[{"event": "bounce", "type": "bounce"}]'
        r = client.post(
            f"/webhooks/sendgrid/{wid}", content=no_email, headers=_sendgrid_headers(sendgrid_key, no_email)
        )
        assert r.status_code == 400 and "no email" in r.json()["detail"]
    _nothing_recorded(live, wid)


# -- Postmark ---------------------------------------------------------------------------------

POSTMARK_BOUNCE = {
    "RecordType": "Bounce",
    "ID": 4323372036854775807,
    "Type": "HardBounce",
    "TypeCode": 1,
    "Name": "Hard bounce",
    "Tag": "welcome",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "Metadata": {"nudgeflow_message_key": "run-2:welcome:1"},
    "ServerID": 23,
    "MessageStream": "outbound",
    "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
    "Email": "eli@example.com",
    "From": "hello@shop.test",
    "BouncedAt": "2025-12-31T23:00:00Z",
    "DumpAvailable": True,
    "Inactive": True,
    "CanActivate": True,
    "Subject": "Welcome",
}
POSTMARK_SPAM = {
    "RecordType": "SpamComplaint",
    "ID": 42,
    "Type": "SpamComplaint",
    "TypeCode": 512,
    "Email": "fay@example.com",
    "MessageID": "00000000-0000-0000-0000-000000000000",
    "BouncedAt": "2025-12-31T23:10:00Z",
    "Metadata": {},
}


def test_postmark(live: LiveServer, ws: Any) -> None:
    wid = ws.workspace_id
    _configure(live, wid, "postmark", {"username": "postmark", "password": "s3cret-pw"})
    eli = add_person(live.state.engine, wid, "eli", "eli@example.com")
    fay = add_person(live.state.engine, wid, "fay", "fay@example.com")
    with live.client(auth=("postmark", "s3cret-pw")) as client:
        assert client.post(f"/webhooks/postmark/{wid}", json=POSTMARK_BOUNCE).status_code == 200
        assert client.post(f"/webhooks/postmark/{wid}", json=POSTMARK_SPAM).status_code == 200
        soft = {
            **POSTMARK_BOUNCE,
            "ID": 7,
            "Type": "SoftBounce",
            "Details": "smtp;452 4.2.2 mailbox full",
            "Email": "eli@example.com",
        }
        assert client.post(f"/webhooks/postmark/{wid}", json=soft).status_code == 200
        auto = {**POSTMARK_BOUNCE, "ID": 8, "Type": "AutoResponder"}
        assert client.post(f"/webhooks/postmark/{wid}", json=auto).json()["ignored"] == 1
    assert suppressions(live.state.engine, wid) == {"eli@example.com": "hard_bounce", "fay@example.com": "complaint"}
    events = feedback_events(live.state.engine, wid)
    assert [(e["profile_id"], e["event"], e["properties"].get("kind")) for e in events] == [
        (eli, "Email Bounced", "hard"),
        (fay, "Email Marked as Spam", None),
        (eli, "Email Bounced", "soft"),
    ]
    assert events[0]["properties"]["status"] == "5.1.1" and events[0]["properties"]["message_key"] == "run-2:welcome:1"


def test_postmark_rejections(live: LiveServer, ws: Any) -> None:
    wid = ws.workspace_id
    _configure(live, wid, "postmark", {"username": "postmark", "password": "s3cret-pw"})
    with live.client() as client:
        r = client.post(f"/webhooks/postmark/{wid}", json=POSTMARK_BOUNCE)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert (
            client.post(f"/webhooks/postmark/{wid}", json=POSTMARK_BOUNCE, auth=("postmark", "wrong")).status_code
            == 401
        )
        assert (
            client.post(f"/webhooks/postmark/{wid}", json=POSTMARK_BOUNCE, auth=("other", "s3cret-pw")).status_code
            == 401
        )
        r = client.post(
            f"/webhooks/postmark/{wid}",
            json={"RecordType": "Bounce", "Type": "HardBounce"},
            auth=("postmark", "s3cret-pw"),
        )
        assert r.status_code == 400 and "Email" in r.json()["detail"]
        r = client.post(f"/webhooks/postmark/{wid}", content=b"[1]", auth=("postmark", "s3cret-pw"))
        assert r.status_code == 400
    _nothing_recorded(live, wid)


# -- Mailgun ----------------------------------------------------------------------------------

MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"


def _mailgun(
    live: LiveServer, data: dict[str, Any], token: str, key: str = MAILGUN_KEY, ts: int | None = None
) -> dict[str, Any]:
    timestamp = str(ts if ts is not None else int(live.state.clock.now().timestamp()))
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": data}


MAILGUN_FAILED = {
    "id": "G9Bn5sl1TC6nu79C8C0bwg",
    "timestamp": 1767225500.0,
    "event": "failed",
    "severity": "permanent",
    "reason": "bounce",
    "recipient": "gus@example.com",
    "delivery-status": {
        "code": 550,
        "message": "5.1.1 The email account that you tried to reach does not exist",
        "description": "",
        "attempt-no": 1,
    },
    "user-variables": {"nudgeflow_message_key": "run-4:winback:1"},
    "message": {"headers": {"message-id": "nf.4@shop.test", "to": "gus@example.com"}},
}


def test_mailgun(live: LiveServer, ws: Any) -> None:
    wid = ws.workspace_id
    _configure(live, wid, "mailgun", {"signing_key": MAILGUN_KEY})
    gus = add_person(live.state.engine, wid, "gus", "gus@example.com")
    hal = add_person(live.state.engine, wid, "hal", "hal@example.com")
    temp = {
        **MAILGUN_FAILED,
        "id": "t1",
        "severity": "temporary",
        "recipient": "hal@example.com",
        "delivery-status": {"code": 452, "message": "4.2.2 mailbox full"},
        "user-variables": {},
    }
    complained = {"id": "c1", "timestamp": 1767225510.0, "event": "complained", "recipient": "hal@example.com"}
    with live.client() as client:
        for i, data in enumerate((MAILGUN_FAILED, temp, complained)):
            r = client.post(f"/webhooks/mailgun/{wid}", json=_mailgun(live, data, f"token-{i}" * 5))
            assert r.status_code == 200, r.text
    assert suppressions(live.state.engine, wid) == {"gus@example.com": "hard_bounce", "hal@example.com": "complaint"}
    events = feedback_events(live.state.engine, wid)
    assert [(e["profile_id"], e["event"], e["properties"].get("status")) for e in events] == [
        (gus, "Email Bounced", "5.1.1"),
        (hal, "Email Bounced", "4.2.2"),
        (hal, "Email Marked as Spam", None),
    ]
    assert events[0]["properties"]["message_key"] == "run-4:winback:1"


def test_mailgun_rejections(live: LiveServer, ws: Any) -> None:
    wid = ws.workspace_id
    _configure(live, wid, "mailgun", {"signing_key": MAILGUN_KEY})
    now = int(live.state.clock.now().timestamp())
    url = f"/webhooks/mailgun/{wid}"
    with live.client() as client:
        wrong_key = _mailgun(live, MAILGUN_FAILED, "a" * 50, key="key-wrong")
        assert client.post(url, json=wrong_key).status_code == 403
        tampered = _mailgun(live, MAILGUN_FAILED, "b" * 50)
        tampered["signature"]["token"] = "c" * 50
        assert client.post(url, json=tampered).status_code == 403
        stale = _mailgun(live, MAILGUN_FAILED, "d" * 50, ts=now - 3600)
        r = client.post(url, json=stale)
        assert r.status_code == 403 and "timestamp" in r.json()["detail"]
        assert client.post(url, json={"event-data": MAILGUN_FAILED}).status_code == 401
        r = client.post(url, json=_mailgun(live, {**MAILGUN_FAILED, "severity": "sometimes"}, "e" * 50))
        assert r.status_code == 400 and "severity" in r.json()["detail"]
        assert client.post(url, content=b"token=1&signature=2").status_code == 400
    _nothing_recorded(live, wid)
    # A good request is taken once; the same token again is a replay.
    good = _mailgun(live, MAILGUN_FAILED, "f" * 50)
    with live.client() as client:
        assert client.post(url, json=good).status_code == 200
        r = client.post(url, json=good)
        assert r.status_code == 403 and "replay" in r.json()["detail"]
    assert suppressions(live.state.engine, wid) == {"gus@example.com": "hard_bounce"}


def test_unknown_person_is_still_suppressed(live: LiveServer, ws: Any) -> None:
    wid = ws.workspace_id
    _configure(live, wid, "mailgun", {"signing_key": MAILGUN_KEY})
    with live.client() as client:
        r = client.post(
            f"/webhooks/mailgun/{wid}", json=_mailgun(live, {**MAILGUN_FAILED, "recipient": "nobody@x.test"}, "g" * 50)
        )
    assert r.json()["unknown_people"] == 1
    assert suppressions(live.state.engine, wid) == {"nobody@x.test": "hard_bounce"}
    assert feedback_events(live.state.engine, wid) == []


def test_a_signed_notification_with_nul_characters_is_applied_without_them(live: LiveServer, ws: Any) -> None:
    # Only the provider can sign one, yet it must not fail on PostgreSQL (text cannot hold
    # U+0000): a NUL in the address makes it no address of ours; in free text it is dropped.
    wid = ws.workspace_id
    _configure(live, wid, "postmark", {"username": "postmark", "password": "s3cret-pw"})
    eli = add_person(live.state.engine, wid, "eli", "eli@example.com")
    with live.client(auth=("postmark", "s3cret-pw")) as client:
        bad_address = client.post(
            f"/webhooks/postmark/{wid}", json={**POSTMARK_BOUNCE, "ID": 11, "Email": "eli@exa\x00mple.com"}
        )
        bad_text = client.post(
            f"/webhooks/postmark/{wid}",
            json={**POSTMARK_BOUNCE, "ID": 12, "Details": "smtp;550 5.1.1 no\x00 such user"},
        )
    assert bad_address.status_code == 200 and bad_text.status_code == 200
    assert suppressions(live.state.engine, wid) == {"eli@example.com": "hard_bounce"}
    [event] = feedback_events(live.state.engine, wid)
    assert event["profile_id"] == eli and "\x00" not in json.dumps(event["properties"])


def test_a_body_without_a_length_is_refused_once_past_the_limit(live: LiveServer, ws: Any) -> None:
    """A chunked body (no Content-Length) is refused as soon as it passes 5 MB, before any
    credential is looked at: it was read whole into memory first, so a caller with no
    credentials could send gigabytes (the answer came only after the body's last chunk)."""
    host, port = urlsplit(live.url).hostname, urlsplit(live.url).port
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(
            f"POST /webhooks/mailgun/{ws.workspace_id} HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        piece = b" " * (256 * 1024)
        for _ in range(24):  # 6 MB, and never the last (empty) chunk that ends the body
            conn.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        conn.settimeout(5)
        try:
            status_line = conn.recv(64).split(b"\r\n", 1)[0]
        except TimeoutError:
            status_line = b"no answer: the server is still reading the body"
    assert status_line.startswith(b"HTTP/1.1 413"), status_line
