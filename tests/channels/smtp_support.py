"""A real SMTP server on loopback (aiosmtpd) for the email tests: plain, STARTTLS, implicit TLS, AUTH;
and a DKIM key with its DNS record."""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, Session
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    peer: Any
    login: Any
    tls: bool = False

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.raw, policy=policy.default)  # type: ignore[return-value]


@dataclass
class Sink:
    """Records what it is sent; `rcpt_reply` / `data_reply` answer otherwise when set."""

    received: list[Received] = field(default_factory=list)
    rcpt_reply: str | None = None
    data_reply: str | None = None
    sessions: set[Any] = field(default_factory=set)

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.sessions.add(session.peer)
        if self.data_reply:
            return self.data_reply
        self.received.append(
            Received(
                envelope.mail_from or "",
                list(envelope.rcpt_tos),
                envelope.original_content or envelope.content,
                session.peer,
                session.auth_data,
                session.ssl is not None,
            )
        )
        return "250 Message accepted"


class Users:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.mechanisms: list[str] = []

    def __call__(self, server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
        self.mechanisms.append(mechanism)
        login = auth_data.login.decode() if isinstance(auth_data.login, bytes) else auth_data.login
        password = auth_data.password.decode() if isinstance(auth_data.password, bytes) else auth_data.password
        ok = self.users.get(login) == password
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)


def start_sink(sink: Sink, **kwargs: Any) -> Controller:
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return controller


def server_contexts(tmp_path: Any) -> tuple[ssl.SSLContext, str]:
    """A server TLS context with a certificate for 127.0.0.1 and localhost, and the CA file to trust it."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server, str(ca_file)


def dkim_key(tmp_path: Any) -> tuple[str, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    path = tmp_path / "dkim.pem"
    path.write_bytes(pem)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return str(path), b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
