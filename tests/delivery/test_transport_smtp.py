"""The SMTP transport against a real aiosmtpd server on 127.0.0.1 (never the internet).

Each test starts its own server on an ephemeral port. The handler records every message with the
client's address and port (``session.peer``), which names the connection that carried it, so
"one connection" and "reconnected" are facts the server saw, not guesses from the client side.
Misbehaving servers are small handler subclasses: refuse a recipient, drop the connection at a
chosen point, stop listening.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import hostile
from digest.config import Settings
from digest.delivery.transports import open_transport, smtp
from digest.delivery.transports.base import (
    AuthError,
    Batch,
    Orphan,
    Recipient,
    RejectedError,
    Settles,
    TemporaryError,
    TransportError,
)
from digest.delivery.transports.smtp import PASSWORD_ENV, JournalError, SecurityError, SmtpTransport, _Connection
from digest.errors import ConfigError
from digest.issue.message import MessageTemplate
from factories import NEWSLETTER, SENDER, VARIANT, batch, recipient, sending

# --- the server ------------------------------------------------------------------------------


@dataclass
class Received:
    peer: tuple[str, int]
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    authenticated: bool

    @property
    def message(self) -> EmailMessage:
        msg = message_from_bytes(self.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps every message and every connection it saw."""

    refuse: dict[str, str] = field(default_factory=dict)  # recipient -> reply to its RCPT
    messages: list[Received] = field(default_factory=list)
    peers: list[tuple[str, int]] = field(default_factory=list)  # one per connection, in order
    quits: int = 0

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]) -> Any:
        session.host_name = hostname  # the 5-argument hook must set it (aiosmtpd 1.4)
        if session.peer not in self.peers:  # a second EHLO after STARTTLS is the same connection
            self.peers.append(session.peer)
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            Received(
                session.peer,
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content,
                server.transport.get_extra_info("ssl_object") is not None,  # after STARTTLS or implicit TLS
                bool(session.authenticated),
            )
        )
        return "250 2.0.0 Ok: queued"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.quits += 1
        return "221 Bye"

    def to(self) -> list[str]:
        return [r for m in self.messages for r in m.rcpt_tos]


class _Controller(Controller):
    """aiosmtpd 1.4.6's Controller with ``port=0``: learn the bound port before ``start()`` probes it.

    ``start()`` connects to ``(hostname, self.port)`` to check the server is up; with port 0 that
    probe would fail, so the real port is read from the listening socket first. Starting may take
    seconds on a loaded machine, so it is given 30 of them (aiosmtpd's default is 5).
    """

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **{"ready_timeout": 30.0, **kwargs})

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


ServerFactory = Callable[..., _Controller]


@pytest.fixture
def smtp_server() -> Iterator[ServerFactory]:
    """Start an aiosmtpd server with a handler (and any SMTP keyword arguments); stopped after the test."""
    started: list[_Controller] = []

    def start(handler: Any, **kwargs: Any) -> _Controller:
        controller = _Controller(handler, hostname="127.0.0.1", port=0, **kwargs)
        controller.start()
        started.append(controller)
        return controller

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture
def transports() -> Iterator[list[SmtpTransport]]:
    """Transports made by a test, closed after it even when it fails."""
    made: list[SmtpTransport] = []
    yield made
    for t in made:
        t.close()


# --- settings, batches -------------------------------------------------------------------------


def make_settings(tmp_path: Path, port: int, **smtp: Any) -> Settings:
    return sending(tmp_path, "smtp", {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 10, **smtp})


def submitted(*ids: int) -> dict[int, tuple[str, str]]:
    return {100 + i: ("submitted", "") for i in ids}


@pytest.fixture
def connect(tmp_path: Path, transports: list[SmtpTransport]) -> Callable[..., SmtpTransport]:
    """A transport for a server: ``connect(server, security=..., password=..., ssl_context=...)``."""

    def make(
        server: _Controller, *, password: str | None = None, ssl_context: ssl.SSLContext | None = None, **smtp: Any
    ) -> SmtpTransport:
        t = SmtpTransport(make_settings(tmp_path, server.port, **smtp), password=password, ssl_context=ssl_context)
        transports.append(t)
        return t

    return make


# --- one connection, one message per recipient ---------------------------------------------------


def test_a_batch_is_one_message_per_recipient_over_one_connection(smtp_server, connect):
    handler = Recorder()
    transport = connect(smtp_server(handler))

    result = transport.send(batch(1, 2, 3))

    assert result.outcomes == submitted(1, 2, 3)
    assert len(handler.peers) == 1 and transport.connections == 1
    assert [m.peer for m in handler.messages] == handler.peers * 3
    for i, received in zip((1, 2, 3), handler.messages, strict=True):
        r = recipient(i)
        assert received.mail_from == SENDER
        assert received.rcpt_tos == [r.email]
        msg = received.message
        assert msg["To"] == f'"Reader <{i}>" <{r.email}>'
        assert msg["From"] == NEWSLETTER["from"]
        assert msg["Subject"] == VARIANT.subject
        assert msg["List-Unsubscribe"] == f"<https://example.org/unsubscribe?t=tok{i}&x=1>"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg.get_content_type() == "multipart/alternative"
        text, html = msg.iter_parts()
        assert text.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
        assert text.get_content().strip() == f"Reader <{i}> https://example.org/unsubscribe?t=tok{i}&x=1"
        assert html.get_content().strip() == (
            f'<p>Reader &lt;{i}&gt; <a href="https://example.org/unsubscribe?t=tok{i}&amp;x=1">u</a></p>'
        )


class SlowToQueue(Recorder):
    """Answers each message's data only after ``seconds``, as a busy server does."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.seconds)
        return await super().handle_DATA(server, session, envelope)


def test_a_slow_answer_within_the_timeout_is_submitted(smtp_server, connect):
    handler = SlowToQueue(2.5)  # slow, but inside [delivery.smtp] timeout
    transport = connect(smtp_server(handler))

    assert transport.send(batch(1)).outcomes == submitted(1)
    assert handler.to() == ["r1@example.net"]


def test_batches_reuse_the_connection_and_close_says_quit(smtp_server, connect):
    handler = Recorder()
    transport = connect(smtp_server(handler))

    assert transport.send(batch(1, 2)).outcomes == submitted(1, 2)
    assert transport.send(batch(3, 4)).outcomes == submitted(3, 4)
    transport.close()

    assert len(handler.peers) == 1 and len({m.peer for m in handler.messages}) == 1
    assert handler.to() == [recipient(i).email for i in (1, 2, 3, 4)]
    assert handler.quits == 1
    transport.close()  # a second close is harmless


def test_a_connection_dropped_between_batches_is_reopened_without_a_duplicate(smtp_server, connect):
    class DropsAfterTwo(Recorder):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            reply = await super().handle_DATA(server, session, envelope)
            if len(self.messages) == 2:  # the end of the first batch: reply, then hang up
                asyncio.get_running_loop().call_soon(server.transport.close)
            return reply

    handler = DropsAfterTwo()
    transport = connect(smtp_server(handler))

    assert transport.send(batch(1, 2)).outcomes == submitted(1, 2)
    assert transport.send(batch(3, 4)).outcomes == submitted(3, 4)

    assert handler.to() == [recipient(i).email for i in (1, 2, 3, 4)]  # each exactly once
    assert len(handler.peers) == 2 and transport.connections == 2


def test_a_connection_dropped_mid_batch_before_the_data_is_reopened(smtp_server, connect):
    class DropsAtSecondMail(Recorder):
        mails = 0

        async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
            self.mails += 1
            if self.mails == 2:
                server.transport.abort()  # nothing of message 2 was taken
            envelope.mail_from = address
            return "250 OK"

    handler = DropsAtSecondMail()
    transport = connect(smtp_server(handler))

    assert transport.send(batch(1, 2, 3)).outcomes == submitted(1, 2, 3)
    assert handler.to() == [recipient(i).email for i in (1, 2, 3)]
    assert len(handler.peers) == 2


def test_a_server_closing_with_421_gets_the_message_on_a_new_connection(smtp_server, connect):
    class TwoPerConnection(Recorder):
        async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
            if sum(m.peer == session.peer for m in self.messages) >= 2:
                return "421 4.7.0 Too many messages on this connection"
            envelope.mail_from = address
            return "250 OK"

    handler = TwoPerConnection()
    transport = connect(smtp_server(handler))

    assert transport.send(batch(1, 2, 3, 4, 5)).outcomes == submitted(1, 2, 3, 4, 5)
    assert handler.to() == [recipient(i).email for i in (1, 2, 3, 4, 5)]
    assert len(handler.peers) == 3


def test_a_test_copy_is_marked_in_the_subject(smtp_server, connect):
    handler = Recorder()
    transport = connect(smtp_server(handler))

    assert transport.send(batch(1, test=True)).outcomes == submitted(1)
    assert handler.messages[0].message["Subject"] == f"[TEST] {VARIANT.subject}"


# --- hostile values, per-recipient errors ---------------------------------------------------------


@pytest.mark.parametrize("lead", hostile.SUBJECTS)
def test_a_hostile_title_and_name_add_no_header_to_what_the_server_receives(smtp_server, connect, tmp_path, lead):
    handler = Recorder()
    transport = connect(smtp_server(handler))
    values = {**recipient(1).values, "name": hostile.NAME, "unsubscribe_url": hostile.URL}
    evil = Recipient(101, 1, "eve@example.net", values)

    result = transport.send(Batch("2026-W48", hostile.variant(tmp_path, lead), (evil, recipient(2)), batch_id=1))

    assert result.outcomes == submitted(1, 2)
    assert handler.to() == ["eve@example.net", "r2@example.net"]
    for received in handler.messages:
        assert hostile.header_names(received.content) == hostile.expected()
        assert hostile.parsed(received.content)["Subject"] == hostile.SUBJECTS[lead]
    first = hostile.parsed(handler.messages[0].content)
    assert first["To"].addresses[0].display_name == hostile.NAME_SHOWN
    assert first["List-Unsubscribe"] == f"<{hostile.URL_SHOWN}>"


def test_a_recipient_whose_message_cannot_be_built_fails_alone(smtp_server, connect, monkeypatch):
    render = MessageTemplate.render

    def build(self: MessageTemplate, values: Any, *, now: dt.datetime, to: str) -> bytes:
        if to == "r2@example.net":
            raise ValueError("invalid arguments; address parts cannot contain CR or LF")
        return render(self, values, now=now, to=to)

    monkeypatch.setattr(MessageTemplate, "render", build)  # how SMTP builds each recipient's message
    handler = Recorder()
    transport = connect(smtp_server(handler))

    result = transport.send(batch(1, 2, 3))

    assert result.outcomes == {
        **submitted(1, 3),
        102: ("failed", "message not built: invalid arguments; address parts cannot contain CR or LF"),
    }
    assert handler.to() == ["r1@example.net", "r3@example.net"]


# --- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply", ["550 5.1.1 <r2@example.net>: Recipient address rejected", "451 4.7.1 Greylisted, try again later"]
)
def test_a_refused_recipient_fails_with_the_server_text_and_the_batch_goes_on(smtp_server, connect, reply):
    handler = Recorder(refuse={"r2@example.net": reply})
    transport = connect(smtp_server(handler))

    result = transport.send(batch(1, 2, 3))

    assert result.outcomes == {**submitted(1, 3), 102: ("failed", reply)}
    assert handler.to() == ["r1@example.net", "r3@example.net"]
    assert len(handler.peers) == 1  # a refusal leaves the session usable


@pytest.mark.parametrize(
    ("reply", "error"), [("553 5.7.1 Sender not allowed", RejectedError), ("451 4.3.0 Busy", TemporaryError)]
)
def test_a_sender_refused_for_every_message_fails_the_batch(smtp_server, connect, reply, error):
    class RefusesSender(Recorder):
        async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
            return reply

    handler = RefusesSender()
    transport = connect(smtp_server(handler))

    with pytest.raises(error, match=reply) as caught:
        transport.send(batch(1, 2))
    assert isinstance(caught.value.__cause__, smtplib.SMTPSenderRefused)
    assert handler.messages == []


def test_content_refused_for_one_message_fails_only_that_one(smtp_server, connect):
    class RefusesSecond(Recorder):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if envelope.rcpt_tos == ["r2@example.net"]:
                return "554 5.7.1 Message rejected as spam"
            return await super().handle_DATA(server, session, envelope)

    transport = connect(smtp_server(RefusesSecond()))

    result = transport.send(batch(1, 2, 3))
    assert result.outcomes == {**submitted(1, 3), 102: ("failed", "554 5.7.1 Message rejected as spam")}


# --- lost connections -------------------------------------------------------------------------------


def interrupt_at_rcpt(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    """The sending process stops (KeyboardInterrupt) while the server answers ``address``'s RCPT."""
    rcpt = smtplib.SMTP.rcpt

    def interrupted(self: smtplib.SMTP, recip: str, options: Any = ()) -> Any:
        if recip == address:
            raise KeyboardInterrupt
        return rcpt(self, recip, options)

    monkeypatch.setattr(_Connection, "rcpt", interrupted)


class DropsAfterDataOf(Recorder):
    """Takes the data of one recipient's message, then hangs up before answering (maybe delivered)."""

    def __init__(self, victim: str, *, then: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.victim = victim
        self.then = then

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if envelope.rcpt_tos == [self.victim]:
            server.transport.abort()
            if self.then:
                self.then()
        return reply


def test_lost_after_the_data_is_unknown_and_the_rest_go_on_a_new_connection(smtp_server, connect):
    handler = DropsAfterDataOf("r2@example.net")
    transport = connect(smtp_server(handler))

    result = transport.send(batch(1, 2, 3))

    assert result.outcomes[101] == ("submitted", "") and result.outcomes[103] == ("submitted", "")
    status, detail = result.outcomes[102]
    assert status == "unknown" and "may have been accepted" in detail
    assert handler.to() == ["r1@example.net", "r2@example.net", "r3@example.net"]  # r2 reached it, once
    assert len(handler.peers) == 2


def test_lost_after_the_data_with_no_way_back_fails_the_rest_without_dropping_them(smtp_server, connect):
    holder: list[_Controller] = []
    handler = DropsAfterDataOf("r2@example.net", then=lambda: holder[0].server.close())  # stop listening
    server = smtp_server(handler)
    holder.append(server)
    transport = connect(server)

    result = transport.send(batch(1, 2, 3, 4))

    assert result.outcomes[101] == ("submitted", "")
    assert result.outcomes[102][0] == "unknown"
    for did in (103, 104):
        status, detail = result.outcomes[did]
        assert status == "failed" and detail.startswith("not sent: cannot connect to SMTP server 127.0.0.1:")
    assert result.fatal == ""
    assert handler.to() == ["r1@example.net", "r2@example.net"]


def test_a_server_that_drops_every_connection_before_anything_went_out_is_temporary(smtp_server, connect):
    class AlwaysDrops(Recorder):
        async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
            server.transport.abort()
            return "250 OK"

    handler = AlwaysDrops()
    transport = connect(smtp_server(handler))

    with pytest.raises(TemporaryError, match="lost twice before the message was sent"):
        transport.send(batch(1, 2))
    assert handler.messages == [] and len(handler.peers) == 2  # one reconnect for the message, no more


def test_a_refused_connection_is_temporary(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    transport = SmtpTransport(make_settings(tmp_path, port))

    with pytest.raises(TemporaryError, match=f"cannot connect to SMTP server 127.0.0.1:{port}") as caught:
        transport.send(batch(1))
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    transport.close()


# --- login ---------------------------------------------------------------------------------------------


def authenticator(*, good: Callable[[], bool] = lambda: True, refusal: str | None = None) -> Callable[..., AuthResult]:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == (b"mailer", b"s3cret") and good()
        # handled=False: aiosmtpd answers the refusal itself (535 unless ``refusal`` says otherwise)
        return AuthResult(success=ok, handled=False, message=None if ok else refusal)

    return check


def test_login_with_the_password_from_the_environment(smtp_server, tmp_path, transports, monkeypatch):
    handler = Recorder()
    server = smtp_server(handler, authenticator=authenticator(), auth_require_tls=False)
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    settings = make_settings(tmp_path, server.port, username="mailer")

    transport = open_transport(settings)
    assert isinstance(transport, SmtpTransport) and transport.max_batch == 100
    transports.append(transport)

    assert transport.send(batch(1)).outcomes == submitted(1)
    assert handler.to() == ["r1@example.net"] and handler.messages[0].authenticated


@pytest.mark.parametrize(
    ("refusal", "error", "says"),
    [
        (None, AuthError, "refused the login of 'mailer': 535"),
        ("454 4.7.0 Temporary authentication failure", TemporaryError, "cannot log 'mailer' in for now: 454"),
    ],
)
def test_a_refused_login_stops_or_waits(smtp_server, connect, refusal, error, says):
    handler = Recorder()
    server = smtp_server(handler, authenticator=authenticator(refusal=refusal), auth_require_tls=False)
    transport = connect(server, username="mailer", password="wrong")

    with pytest.raises(error, match=says) as caught:
        transport.send(batch(1))
    assert isinstance(caught.value.__cause__, smtplib.SMTPAuthenticationError)
    assert handler.messages == []


def test_a_username_without_a_password_is_reported_before_sending(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"\\${PASSWORD_ENV} is not set"):
        SmtpTransport.from_settings(make_settings(tmp_path, 2525, username="mailer"))


def test_a_server_without_auth_cannot_log_in(smtp_server, connect):
    transport = connect(smtp_server(Recorder()), username="mailer", password="s3cret")  # AUTH needs TLS there

    with pytest.raises(AuthError, match="does not offer AUTH"):
        transport.send(batch(1))


def test_credentials_refused_after_part_of_the_batch_went_out_stop_the_send(smtp_server, connect):
    logins = []

    def first_only() -> bool:
        logins.append(1)
        return len(logins) == 1

    handler = DropsAfterDataOf("r1@example.net")
    server = smtp_server(handler, authenticator=authenticator(good=first_only), auth_require_tls=False)
    transport = connect(server, username="mailer", password="s3cret")

    result = transport.send(batch(1, 2))

    assert result.outcomes[101][0] == "unknown"
    assert result.outcomes[102][0] == "failed" and "refused the login" in result.outcomes[102][1]
    assert "refused the login" in result.fatal  # deliver records the outcomes, then stops the send


# --- TLS ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """What production does (``create_default_context``), trusting only the test CA."""
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA and a certificate for 127.0.0.1 it signed (EC keys: fast to make)."""
    folder = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "digest test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = Pki(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def test_starttls_then_login_with_a_verified_certificate(smtp_server, connect, pki):
    handler = Recorder()
    server = smtp_server(
        handler, tls_context=pki.server_context(), require_starttls=True, authenticator=authenticator()
    )  # AUTH offered only after STARTTLS, as on a real submission port
    transport = connect(
        server, security="starttls", username="mailer", password="s3cret", ssl_context=pki.client_context()
    )

    assert transport.send(batch(1, 2)).outcomes == submitted(1, 2)
    assert [(m.tls, m.authenticated) for m in handler.messages] == [(True, True), (True, True)]
    assert len(handler.peers) == 1


def test_starttls_refuses_a_certificate_it_cannot_verify(smtp_server, connect, pki):
    handler = Recorder()
    server = smtp_server(handler, tls_context=pki.server_context())
    transport = connect(server, security="starttls")  # production trust store: the test CA is unknown

    with pytest.raises(SecurityError, match="TLS certificate not trusted") as caught:
        transport.send(batch(1))
    assert isinstance(caught.value, AuthError)  # the whole send stops; the batch goes back untouched
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    assert handler.messages == []


def test_starttls_against_a_server_that_does_not_offer_it(smtp_server, connect):
    handler = Recorder()
    transport = connect(smtp_server(handler), security="starttls")

    with pytest.raises(SecurityError, match="does not offer STARTTLS") as caught:
        transport.send(batch(1))
    assert isinstance(caught.value, TransportError)
    assert handler.messages == []


def test_implicit_tls(smtp_server, connect, pki):
    handler = Recorder()
    server = smtp_server(handler, ssl_context=pki.server_context())
    transport = connect(server, security="tls", ssl_context=pki.client_context())

    assert transport.send(batch(1)).outcomes == submitted(1)
    assert handler.messages[0].tls


# --- settling unknown deliveries after a crash ---------------------------------------------------


def orphans(*ids: int) -> list[Orphan]:
    return [Orphan(100 + i, i, f"r{i}@example.net", "2026-W48", batch_id=ids[0]) for i in ids]


def journals(tmp_path: Path) -> list[str]:
    folder = tmp_path / "state" / "smtp-journal"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_batch_cut_off_at_rcpt_settles_as_sent_up_to_there_and_unsent_after(
    smtp_server, connect, tmp_path, monkeypatch
):
    handler = Recorder()
    server = smtp_server(handler)
    interrupt_at_rcpt(monkeypatch, "r3@example.net")
    with pytest.raises(KeyboardInterrupt):
        connect(server).send(batch(1, 2, 3, 4))
    assert handler.to() == ["r1@example.net", "r2@example.net"]
    assert journals(tmp_path) == ["2026-W48-1.log"]  # kept: the ledger will call the batch unknown

    after_restart = connect(server)
    assert isinstance(after_restart, Settles)
    resolved = after_restart.settle(orphans(1, 2, 3, 4))

    assert resolved == {101: "submitted", 102: "submitted", 103: "unsent", 104: "unsent"}
    assert journals(tmp_path) == []


def interrupt_at_rcpt_of(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    rcpt = smtplib.SMTP.rcpt

    def interrupted(self: smtplib.SMTP, recip: str, options: Any = ()) -> Any:
        if recip == address:
            raise KeyboardInterrupt  # the process stops while the server answers RCPT
        return rcpt(self, recip, options)

    monkeypatch.setattr(_Connection, "rcpt", interrupted)


def test_after_a_reboot_a_missing_journal_line_proves_nothing(smtp_server, connect, tmp_path, monkeypatch):
    """Lines not synced may die with the machine: read in another boot, the journal's lines
    still count, but a message without one stays unknown instead of being sent again."""
    handler = Recorder()
    server = smtp_server(handler)
    interrupt_at_rcpt_of(monkeypatch, "r3@example.net")
    with pytest.raises(KeyboardInterrupt):
        connect(server).send(batch(1, 2, 3, 4))
    monkeypatch.setattr(smtp, "boot_id", lambda: "another-boot")

    resolved = connect(server).settle(orphans(1, 2, 3, 4))

    assert resolved == {101: "submitted", 102: "submitted"}  # r3 and r4 stay unknown
    assert journals(tmp_path) == []


def test_where_the_boot_cannot_be_told_each_data_line_is_synced_before_its_message(
    smtp_server, connect, tmp_path, monkeypatch
):
    monkeypatch.setattr(smtp, "boot_id", lambda: "")
    synced: list[str] = []
    fdatasync = os.fdatasync

    def noted(fd: int) -> None:
        fdatasync(fd)
        synced.append(Path(f"/proc/self/fd/{fd}").read_text(encoding="utf-8").splitlines()[-1])

    monkeypatch.setattr(os, "fdatasync", noted)
    handler = Recorder()
    server = smtp_server(handler)
    interrupt_at_rcpt_of(monkeypatch, "r3@example.net")
    with pytest.raises(KeyboardInterrupt):
        connect(server).send(batch(1, 2, 3, 4))

    assert synced == ["data\tr1@example.net", "data\tr2@example.net"]
    monkeypatch.setattr(smtp, "boot_id", lambda: "another-boot")  # a synced journal tells all, whenever read
    resolved = connect(server).settle(orphans(1, 2, 3, 4))
    assert resolved == {101: "submitted", 102: "submitted", 103: "unsent", 104: "unsent"}


def test_a_message_cut_off_after_its_data_stays_unknown(smtp_server, connect, tmp_path, monkeypatch):
    handler = Recorder()
    server = smtp_server(handler)
    send = smtplib.SMTP.send
    payloads = []

    def interrupted_after_second_payload(self: smtplib.SMTP, data: Any) -> None:
        send(self, data)
        if isinstance(data, bytes) and data.endswith(b"\r\n.\r\n"):
            payloads.append(data)
            if len(payloads) == 2:
                raise KeyboardInterrupt  # r2's data is out; its answer never read

    monkeypatch.setattr(_Connection, "send", interrupted_after_second_payload)
    with pytest.raises(KeyboardInterrupt):
        connect(server).send(batch(1, 2, 3))

    resolved = connect(server).settle(orphans(1, 2, 3))

    assert resolved == {101: "submitted", 103: "unsent"}  # r2 may have been taken: left unknown


def test_a_batch_sent_to_the_end_leaves_no_journal_so_nothing_is_settled_from_it(smtp_server, connect, tmp_path):
    handler = DropsAfterDataOf("r2@example.net")
    transport = connect(smtp_server(handler))

    assert transport.send(batch(1, 2, 3)).outcomes[102][0] == "unknown"
    assert journals(tmp_path) == []
    assert transport.settle(orphans(1, 2, 3)) == {}  # no evidence: whatever is unknown stays so


def test_no_message_goes_out_when_the_journal_cannot_be_written(smtp_server, tmp_path, transports):
    handler = Recorder()
    server = smtp_server(handler)
    settings = make_settings(tmp_path, server.port)
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "smtp-journal").write_text("a file where the folder should be")
    transport = SmtpTransport(settings)
    transports.append(transport)

    with pytest.raises(JournalError, match=r"cannot write the SMTP journal .*smtp-journal"):
        transport.send(batch(1))
    assert handler.messages == []
    assert transport.send(batch(1, test=True)).outcomes == submitted(1)  # a test copy is not journaled


# --- several connections ([delivery.smtp] connections) -------------------------------------------------


def test_several_connections_share_a_batch_and_everyone_gets_one_message(smtp_server, connect):
    handler = SlowToQueue(0.05)  # slow enough that every connection gets a share
    transport = connect(smtp_server(handler), connections=3)
    assert transport.max_batch == 300

    first = transport.send(batch(*range(1, 13)))
    second = transport.send(batch(*range(13, 25)))
    transport.close()

    assert first.outcomes == submitted(*range(1, 13)) and second.outcomes == submitted(*range(13, 25))
    assert sorted(handler.to()) == sorted(recipient(i).email for i in range(1, 25))  # each exactly once
    assert len(handler.peers) == 3 and transport.connections == 3  # kept across batches
    assert {m.peer for m in handler.messages} == set(handler.peers)
    assert handler.quits == 3
    for received in handler.messages:  # each recipient's own message, whichever connection carried it
        i = int(received.rcpt_tos[0].removeprefix("r").partition("@")[0])
        assert received.message["To"] == f'"Reader <{i}>" <{received.rcpt_tos[0]}>'
        assert received.message["List-Unsubscribe"] == f"<https://example.org/unsubscribe?t=tok{i}&x=1>"


def test_a_connection_lost_after_the_data_leaves_that_message_unknown_and_the_rest_go_out(smtp_server, connect):
    handler = DropsAfterDataOf("r5@example.net")
    transport = connect(smtp_server(handler), connections=3)

    result = transport.send(batch(*range(1, 13)))

    status, detail = result.outcomes[105]
    assert status == "unknown" and "may have been accepted" in detail
    assert {k: v for k, v in result.outcomes.items() if k != 105} == submitted(*range(1, 5), *range(6, 13))
    assert sorted(handler.to()) == sorted(recipient(i).email for i in range(1, 13))  # r5 reached it, once
    assert len(handler.peers) == 4  # the one that dropped was opened again


def test_a_slot_that_cannot_reconnect_leaves_its_share_to_the_others(smtp_server, connect):
    class DropsOnceAllAreConnected(DropsAfterDataOf):
        """Holds r2's data until all three connections are open (one slot may otherwise send r1
        and r2 before the others have connected, and then nobody is left to take the rest)."""

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if envelope.rcpt_tos == [self.victim]:
                for _ in range(500):
                    if len(self.peers) >= 3:
                        break
                    await asyncio.sleep(0.01)
            return await super().handle_DATA(server, session, envelope)

    holder: list[_Controller] = []
    handler = DropsOnceAllAreConnected("r2@example.net", then=lambda: holder[0].server.close())  # no new connections
    server = smtp_server(handler)
    holder.append(server)
    transport = connect(server, connections=3)

    result = transport.send(batch(*range(1, 13)))

    assert result.outcomes[102][0] == "unknown"
    assert {k: v for k, v in result.outcomes.items() if k != 102} == submitted(1, *range(3, 13))
    assert sorted(handler.to()) == sorted(recipient(i).email for i in range(1, 13))
    assert result.fatal == ""


def test_when_no_slot_can_go_on_the_rest_fail_and_nobody_is_sent_twice(smtp_server, connect):
    class DropsEveryConnectionAfterItsFirst(Recorder):
        """Takes one message per connection, then hangs up after its data (maybe delivered), and
        accepts no connection after the first three."""

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            reply = await super().handle_DATA(server, session, envelope)
            server.transport.abort()
            if len(self.messages) == 3:
                holder[0].server.close()
            return reply

    holder: list[_Controller] = []
    handler = DropsEveryConnectionAfterItsFirst()
    server = smtp_server(handler)
    holder.append(server)
    transport = connect(server, connections=3)

    result = transport.send(batch(*range(1, 8)))

    sent = {received.rcpt_tos[0] for received in handler.messages}
    assert len(sent) == len(handler.messages) >= 1  # nobody twice
    for i in range(1, 8):
        status, detail = result.outcomes[100 + i]
        if recipient(i).email in sent:
            assert status == "unknown"
        else:
            assert status == "failed" and detail.startswith("not sent: ")


def test_a_batch_interrupted_on_several_connections_settles_from_the_shared_journal(
    smtp_server, connect, tmp_path, monkeypatch
):
    handler = SlowToQueue(0.05)
    server = smtp_server(handler)
    interrupt_at_rcpt(monkeypatch, "r7@example.net")
    with pytest.raises(KeyboardInterrupt):
        connect(server, connections=3).send(batch(*range(1, 13)))
    assert journals(tmp_path) == ["2026-W48-1.log"]

    resolved = connect(server).settle(orphans(*range(1, 13)))

    received = set(handler.to())
    assert "r7@example.net" not in received
    for i in range(1, 13):  # what the server has is submitted, everything else unsent: nothing unknown
        assert resolved[100 + i] == ("submitted" if recipient(i).email in received else "unsent"), i
    assert journals(tmp_path) == []
