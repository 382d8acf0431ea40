"""The SMTP transport: one message per recipient over reused connections (stdlib ``smtplib``).

A batch (the unit ``deliver`` checkpoints) becomes one SMTP transaction per recipient, and the
envelope names only them, so a refusal or a lost connection concerns exactly one recipient.
Each message comes from the variant's ``MessageTemplate`` (made on its first batch and kept):
the variant's MIME is encoded once and only the recipient's values are encoded and joined in,
the same message ``build_message`` makes at a small part of its cost. Those bytes need no
dot-stuffing (no line starts with a dot), so ``_Connection.data()`` only looks for one.

``[delivery.smtp] connections`` (default 1) sets how many connections send at once. Each is a
slot, opened on first use and kept for every later message and batch until ``close()`` (QUIT):
opening, STARTTLS and AUTH cost more round trips than a message does. With one, the batch is
sent on the calling thread; with more, one thread per slot takes the batch's recipients in turn
from a shared queue (smtplib waits on its socket without the GIL), and a batch holds
``MAX_BATCH`` recipients per slot so the wait for the last message of a batch stays short.
Every rule below holds per message and per connection, whichever slot sends it.

What each outcome means, and why (``deliver`` reads ``failed`` as "never sent, safe to send again
with ``digest send --retry-failed``" and ``unknown`` as "maybe sent, not sent again on its own"):

- accepted (250 after the data): ``submitted``.
- the recipient's message cannot be built (``base.not_built``): ``failed``, nothing sent; the batch goes on.
- a recipient refused at RCPT, 5xx or 4xx: ``failed`` with the server's code and text, and the
  batch goes on. A 4xx (greylisting, a full mailbox) is not retried here: the transport never
  retries and ``deliver`` only retries whole batches, which would send the others twice. The
  recipient is ``failed``, so ``--retry-failed`` sends it again later, when retrying can help.
- the sender (MAIL FROM) or the content (DATA) refused: that recipient ``failed``. If that happens
  to every message of the batch, the problem is the batch, not its recipients: ``RejectedError``
  (``TemporaryError`` if every refusal was a 4xx, so ``deliver`` retries it; nothing went out).
- 421 (the server is closing the connection) before the message was taken: treated as a dropped
  connection, below, since many servers cap the messages per connection that way.
- login refused (535): ``AuthError``; 454 and other 4xx: ``TemporaryError``.
- the connection cannot be made as secure as configured (no STARTTLS, a certificate that does not
  verify): ``SecurityError``, an ``AuthError``: every batch would meet it, so the send stops.
- cannot connect (refused, timeout, DNS, bad greeting) while nothing of this batch went out:
  ``TemporaryError``; ``deliver`` backs off and sends the same batch again, which is harmless.

A dropped connection (``SMTPServerDisconnected``, a reset or broken pipe, a timeout) is judged by
how far the message had got, which is why ``_Connection`` overrides ``data()``: smtplib's own
``send_message`` cannot tell "lost before the end of the data" from "lost waiting for the reply".

- Lost before the final ``.`` was written: the server cannot have taken the message. Reconnect
  and send that message again, once; a second loss stops the batch as below.
- Lost after the final ``.``, before the reply: the server may have queued it. That recipient is
  ``unknown`` and is never sent again. The transport then reconnects and goes on with the
  recipients not yet attempted: they cannot be duplicated, because nothing of theirs was sent.
- With several slots, a slot that cannot (re)connect, or loses its connection twice before a
  message's data, puts that message back, untouched, and stops for this batch; the other slots
  send it and the rest. Refused credentials, an untrusted certificate or a journal that cannot
  be written stop every slot, since each would meet them. What follows applies once every
  slot has stopped with recipients left.
- When the transport cannot (re)connect after part of the batch went out (``submitted`` or
  ``unknown``), raising would make ``deliver`` fail or retry the whole batch (sending the
  ``submitted`` ones twice) or lose their outcomes. So the recipients not yet sent are returned as
  ``failed`` ("not sent: ..."), which ``--retry-failed`` sends later, and the others keep their
  real outcome. An ``AuthError`` met then also sets ``Result.fatal``, so the send stops after the
  outcomes are recorded. Nobody is sent twice, and nobody is dropped without an outcome.

After a crash the ledger only knows that a batch was in flight. So, while a recorded batch is
sent, a journal (``<data_dir>/smtp-journal/<issue>-<batch>.log``) notes each message's step:
``data`` once the DATA command is sent, before the message itself goes (a server with only the
command has no message), then its outcome. ``settle`` reads it on the next start: no line, or
a refusal, means the server never got that message's data, so it is sent again; ``submitted``
stands; ``data`` with no outcome, or ``unknown``, stays unknown. A batch without a journal (sent
from another host, or the journal lost) stays unknown as well. The journal is removed once its
batch's outcomes are returned or settled. The slots share their batch's journal.

What survives what: a line written outlives a killed process (the kernel's page cache has it),
so after a kill, or any crash of digest alone, the journal is exact. A crash of the machine or a
power cut may lose the last lines. Syncing each ``data`` line before its message would cover
that, at a cost measured at 0.3 to 1.4 ms a message on this project's machine (a third of the
rate beside a local Postfix, which syncs its queue to the same disk). So instead the journal's
first line, synced once per batch, names the boot of the kernel that wrote it
(``/proc/sys/kernel/random/boot_id``): read in the same boot, no ``data`` line means "never
sent"; read after a reboot, the lines there still count but a missing one proves nothing, so
those messages stay unknown (``digest send --resend-unknown`` sends them). What a power cut
costs is that precision, never a duplicate. Where the boot cannot be told (not Linux), each
``data`` line is synced (``fdatasync``) before the message goes, as before.

The password comes from ``$DIGEST_SMTP_PASSWORD``. A username without it is reported by
``from_settings`` as a ``ConfigError`` (exit code 2), like SendGrid's missing key and the missing
signing secret: before any batch is claimed, rather than as a refusal in the middle of a send.

Certificates are verified with ``ssl.create_default_context()``. ``ssl_context`` in the
constructor replaces it; it exists so the tests can trust their own self-signed CA and is never
set by ``from_settings``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from digest.config import Settings, Smtp, secret
from digest.delivery.transports.base import (
    AuthError,
    Batch,
    Orphan,
    Outcome,
    Recipient,
    RejectedError,
    Result,
    Settlement,
    Templates,
    TemporaryError,
    TransportError,
    message_bytes,
)
from digest.errors import ConfigError
from digest.issue.message import MessageTemplate

log = logging.getLogger("digest.transports.smtp")

PASSWORD_ENV = "DIGEST_SMTP_PASSWORD"
MAX_BATCH = 100  # recipients per batch and connection: each is one SMTP transaction, a batch a checkpoint
MAX_CLAIM = 1000  # the most [delivery] batch_size allows
SERVER_CLOSING = 421  # RFC 5321: "service not available, closing transmission channel"


class SecurityError(AuthError):
    """The connection cannot be secured as configured (no STARTTLS, an untrusted certificate).

    Sending anyway would expose the password and the mail, and every batch would meet the same
    refusal; so, like refused credentials, the whole send stops and the batch goes back untouched.
    """


class _Connection(smtplib.SMTP):
    """``smtplib.SMTP`` that records whether the end of a message's data was written.

    ``payload_sent`` turns True once the final ``CRLF.CRLF`` has been handed to the socket. After
    that a lost connection may still have delivered the message (the server queues it as soon as
    it reads the dot); before it, it cannot have. ``data()`` is CPython's own, plus that flag.
    """

    payload_sent = False
    before_data: Callable[[], None] | None = None  # notes the step in the batch's journal

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.payload_sent = False
        self.putcmd("data")
        if self.before_data is not None:  # synced while the 354 is on its way; raising, no payload goes
            self.before_data()
        code, reply = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        if isinstance(msg, str):
            msg = re.sub(r"(?:\r\n|\n|\r(?!\n))", "\r\n", msg).encode("ascii")
        payload = bytes(msg)
        if payload.startswith(b".") or b"\n." in payload:  # a template's message never has one
            payload = re.sub(rb"(?m)^\.", b"..", payload)  # dot-stuffing, RFC 5321 4.5.2
        if not payload.endswith(b"\r\n"):
            payload += b"\r\n"
        self.send(payload + b".\r\n")
        self.payload_sent = True
        return self.getreply()


class _SSLConnection(_Connection, smtplib.SMTP_SSL):
    """Implicit TLS (``security = "tls"``, port 465) with the same ``data()``."""


class JournalError(TransportError):
    """The journal cannot be written: the message is not sent, since a crash would leave no
    evidence of it. (Not an ``OSError``: it must not pass for a dropped connection.)"""


BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # Linux: new at every boot


def boot_id() -> str:
    """This boot of the machine's kernel, or "" where it cannot be told (not Linux)."""
    try:
        return BOOT_ID.read_text(encoding="ascii").strip()
    except OSError:
        return ""


@dataclass(frozen=True, slots=True)
class _Evidence:
    """What a journal tells: each address's last step, and whether a missing step means "never
    sent" (``complete``) or may be a line lost with the page cache (then it proves nothing)."""

    steps: dict[str, str]
    complete: bool


class _Journal:
    """How far each message of one recorded batch got, on disk, for ``settle`` after a crash.

    One line per step, ``<step>\t<address>`` (an address is unique within a batch): ``data`` is
    written before the message's content is sent, so a message without it never reached the
    server; its outcome (``submitted``, ``failed``, ``unknown``, ``unsent``) follows the answer.
    Every line is one ``O_APPEND`` write, so the slots' threads never split one another's.

    A written line outlives a killed process (it is in the kernel's page cache) but not a
    crash of the machine or a power cut. So the first line, ``boot\t<boot id>``, synced once,
    names the boot that wrote the journal, and only a journal of the running boot is
    ``complete``: there, no ``data`` line means the message was never sent. After a reboot
    the lines that are there still count (they were written), but a missing one proves nothing
    and leaves its message unknown. Where the boot cannot be told, each ``data`` line is synced
    before the content goes (``fdatasync``), and the journal is complete whatever happens.
    """

    def __init__(self, path: Path, boot: str) -> None:
        self.path = path
        self._sync_each = not boot
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
            if boot:
                os.write(self._fd, f"boot\t{boot}\n".encode())
                os.fsync(self._fd)  # once a batch: a journal on disk always says whose boot it is
        except OSError as exc:
            raise JournalError(
                f"cannot write the SMTP journal {path}: {exc.strerror or exc}",
                hint="check that [store] data_dir is writable",
            ) from exc

    def before_data(self, address: str) -> None:
        """Note that ``address``'s content may now reach the server; raise if it cannot be noted."""
        try:
            os.write(self._fd, f"data\t{address}\n".encode())
            if self._sync_each:
                os.fdatasync(self._fd)
        except OSError as exc:
            raise JournalError(f"cannot write the SMTP journal {self.path}: {exc.strerror or exc}") from exc

    def outcome(self, step: str, address: str) -> None:
        """Note a message's outcome. Never raises: the outcome is returned to ``deliver`` anyway,
        and a missing line only leaves the message ``unknown`` after a crash (the safe side)."""
        try:
            os.write(self._fd, f"{step}\t{address}\n".encode())
        except OSError as exc:
            log.warning("cannot write the SMTP journal %s: %s", self.path, exc.strerror or exc)

    def close(self, *, remove: bool) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
        if remove:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)

    @staticmethod
    def read(path: Path, boot: str) -> _Evidence | None:
        """What the journal tells, read during boot ``boot``; None when there is none (nothing)."""
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise JournalError(f"cannot read the SMTP journal {path}: {exc.strerror or exc}") from exc
        written_in = None  # no boot line: every data line was synced
        steps: dict[str, str] = {}
        for line in text.splitlines():
            step, tab, address = line.partition("\t")
            if step == "boot" and written_in is None and not steps:
                written_in = address
            elif tab:
                steps[address] = step
        return _Evidence(steps, complete=written_in is None or (bool(boot) and written_in == boot))


# A message's last step in the journal -> what is certain about it (absent: still unknown).
_SETTLED: dict[str | None, Settlement] = {
    None: "unsent",
    "unsent": "unsent",
    "failed": "unsent",
    "submitted": "submitted",
}


@dataclass(frozen=True, slots=True)
class _Sent:
    """What became of one message: its outcome, and whether the sender or content was refused."""

    outcome: Outcome
    detail: str = ""
    envelope_refused: bool = False  # MAIL FROM or DATA refused: the same for every message?
    code: int = 0
    cause: BaseException | None = None


def envelope_sender(settings: Settings) -> str:
    """The address part of ``[newsletter] from``: the MAIL FROM, where bounces go."""
    return parseaddr(settings.newsletter.from_address)[1]


class _Slot:
    """One of the transport's connections, kept across batches; used by one thread at a time."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.conn: _Connection | None = None

    def discard(self) -> None:
        """Forget a connection that can no longer be trusted, without a QUIT it could not answer."""
        conn, self.conn = self.conn, None
        _close_quietly(conn)

    def quit(self) -> None:
        """QUIT and close. Never raises: every message already has its outcome by now."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            if conn.sock is not None:
                conn.quit()
        except (smtplib.SMTPException, OSError):
            pass  # the server went first; nothing is lost
        finally:
            _close_quietly(conn)


_Item = tuple[int, Recipient]  # a recipient and its place in the batch


class _Queue:
    """A batch's recipients, taken one at a time by the slots' threads.

    A slot that cannot send (no connection, lost twice before the data) puts its recipient back,
    untouched, for another slot; ``close`` stops every slot taking more. What is left when all
    have stopped was never attempted: ``rest``.
    """

    def __init__(self, recipients: Sequence[Recipient]) -> None:
        self._items = list(enumerate(recipients))
        self._next = 0
        self._back: list[_Item] = []
        self._closed = False
        self._lock = threading.Lock()

    def take(self) -> _Item | None:
        with self._lock:
            if self._closed:
                return None
            if self._back:
                return self._back.pop()
            if self._next < len(self._items):
                self._next += 1
                return self._items[self._next - 1]
            return None

    def put_back(self, item: _Item) -> None:
        with self._lock:
            self._back.append(item)

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def rest(self) -> list[_Item]:
        with self._lock:
            return sorted([*self._back, *self._items[self._next :]])


@dataclass
class _Tally:
    """What the slots found while sending one batch (each dict write is one step under the GIL)."""

    outcomes: dict[int, tuple[Outcome, str]] = field(default_factory=dict)
    refused: list[_Sent] = field(default_factory=list)  # sender or content refused
    went_out: bool = False  # something submitted or maybe submitted: never raise the batch after
    errors: list[TransportError] = field(default_factory=list)  # why slots stopped
    crash: BaseException | None = None  # anything else, raised once every slot has stopped


class SmtpTransport:
    """Sends each recipient its own message over ``connections`` SMTP connections, reused until ``close()``."""

    name = "smtp"
    settings_model = Smtp
    max_batch = MAX_BATCH

    def __init__(
        self, settings: Settings, *, password: str | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.settings = settings
        self.cfg = settings.delivery.smtp
        if self.cfg.username and not password:
            raise ConfigError(
                f"[delivery.smtp] username is {self.cfg.username!r} but ${PASSWORD_ENV} is not set",
                hint=f"export {PASSWORD_ENV} with that account's password, or leave username empty to send "
                "without logging in",
            )
        self.sender = envelope_sender(settings)
        # Each slot gets MAX_BATCH recipients of a batch, so the batch-end wait is short for all.
        self.max_batch = min(MAX_BATCH * self.cfg.connections, MAX_CLAIM)
        self.connections = 0  # connections opened so far: for logs, tests and the benchmark
        self._opened = threading.Lock()
        self._password = password or ""
        self._ssl_context = ssl_context
        self._slots = [_Slot(n) for n in range(self.cfg.connections)]
        self._helo_name = ""
        self._journal: _Journal | None = None
        self._boot = boot_id()
        self._templates = Templates(settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpTransport:
        return cls(settings, password=secret(PASSWORD_ENV))

    @property
    def where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    # --- sending ----------------------------------------------------------------------------

    def send(self, batch: Batch) -> Result:
        """One message per recipient; see the module docstring for what each outcome means.

        A recorded batch is journaled while it is sent. The journal is kept only when the send
        is cut off (an interrupt): then the batch is ``unknown`` and ``settle`` needs it.
        """
        path = self._journal_path(batch.issue_key, batch.batch_id)
        journal = _Journal(path, self._boot) if batch.recorded else None
        self._journal = journal
        finished = False
        try:
            result = self._send_batch(batch)
            finished = True
            return result
        except TransportError:
            finished = True  # nothing of the batch went out, and ``deliver`` knows it
            raise
        finally:
            self._journal = None
            if journal is not None:
                journal.close(remove=finished)

    def settle(self, orphans: Sequence[Orphan]) -> dict[int, Settlement]:
        """What the journals of the orphans' batches tell (see the module docstring).

        Each journal read is removed: ``deliver`` records what it told, and what it could not
        tell (data sent, no answer) stays unknown whether the journal is there or not.
        """
        by_batch: dict[tuple[str, int], list[Orphan]] = {}
        for orphan in orphans:
            by_batch.setdefault((orphan.issue_key, orphan.batch_id), []).append(orphan)
        resolved: dict[int, Settlement] = {}
        for (key, batch_id), group in by_batch.items():
            path = self._journal_path(key, batch_id)
            evidence = _Journal.read(path, self._boot)
            if evidence is None:
                continue
            for orphan in group:
                step = evidence.steps.get(orphan.email)
                settled = _SETTLED.get(step) if step is not None or evidence.complete else None
                if settled is not None:
                    resolved[orphan.delivery_id] = settled
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        return resolved

    def _journal_path(self, key: str, batch_id: int) -> Path:
        return self.settings.data_dir / "smtp-journal" / f"{key}-{batch_id}.log"

    def _send_batch(self, batch: Batch) -> Result:
        """The batch over every slot at once (on this thread when there is one), then its outcomes."""
        queue = _Queue(batch.recipients)
        tally = _Tally()
        template = self._templates.of(batch)
        now = datetime.now(UTC)
        if len(self._slots) == 1:
            self._work(self._slots[0], queue, template, now, tally)
        else:
            self._in_threads(queue, template, now, tally)
        if tally.crash is not None:
            raise tally.crash
        fatal = ""
        left = queue.rest()
        if left:  # every slot stopped before the end: these were never attempted
            errors = tally.errors
            error = next((e for e in errors if isinstance(e, AuthError)), errors[0])
            if not tally.went_out:
                raise error
            fatal = str(error) if isinstance(error, AuthError) else ""
            reason = f"not sent: {error}"
            log.warning("batch %d: %s; %d recipient(s) left failed", batch.batch_id, error, len(left))
            for _, rest in left:
                tally.outcomes[rest.delivery_id] = ("failed", reason)
        refused = tally.refused
        if batch.recipients and len(refused) == len(batch.recipients):
            first = refused[0]
            text = f"{self.where} refused every message of the batch: {first.detail}"
            if all(400 <= s.code < 500 for s in refused):
                raise TemporaryError(text) from first.cause
            raise RejectedError(text) from first.cause
        return Result(tally.outcomes, provider_id=self.where, fatal=fatal)

    def _in_threads(self, queue: _Queue, template: MessageTemplate, now: datetime, tally: _Tally) -> None:
        """One thread per slot (smtplib waits on the socket without the GIL). Interrupted, the
        threads finish the message they are on (each step bounded by ``timeout``), so the journal
        tells how far each got; a second interrupt ends the wait, and the daemon threads with
        the process, leaving at worst a ``data`` line without its outcome: unknown."""
        threads = [
            threading.Thread(
                target=self._work, args=(slot, queue, template, now, tally), name=f"smtp-{slot.number}", daemon=True
            )
            for slot in self._slots
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException:
            queue.close()
            for thread in threads:
                thread.join()
            raise

    def _work(self, slot: _Slot, queue: _Queue, template: MessageTemplate, now: datetime, tally: _Tally) -> None:
        """Send the queue's recipients over ``slot`` until the queue is empty or the slot cannot go on."""
        try:
            while (item := queue.take()) is not None:
                _, r = item
                message = message_bytes(template, r, now, tally.outcomes)
                if message is None:
                    continue
                try:
                    sent = self._send_one(slot, message, r.email)
                except TransportError as exc:  # cannot (re)connect, lost twice, no journal: nothing sent
                    queue.put_back(item)
                    tally.errors.append(exc)
                    if isinstance(exc, AuthError | JournalError):  # every slot would meet it
                        queue.close()
                    return
                tally.outcomes[r.delivery_id] = (sent.outcome, sent.detail)
                if sent.outcome != "failed":
                    tally.went_out = True  # only ever set, so no thread can undo another's
                if sent.envelope_refused:
                    tally.refused.append(sent)
        except BaseException as exc:  # an interrupt (or a bug): stop every slot, raise it from send
            queue.close()
            tally.crash = tally.crash or exc
            if threading.current_thread() is threading.main_thread():
                raise

    def _send_one(self, slot: _Slot, message: bytes, to: str) -> _Sent:
        """``_transact``, with each step noted in the batch's journal when there is one."""
        journal = self._journal
        if journal is None:
            return self._transact(slot, message, to)
        try:
            sent = self._transact(slot, message, to, before_data=lambda: journal.before_data(to))
        except JournalError:
            slot.discard()  # mid-transaction, and its data must not go out now
            raise
        except TransportError:
            journal.outcome("unsent", to)  # lost before the data was sent: it cannot have arrived
            raise
        journal.outcome(sent.outcome, to)
        return sent

    def _transact(self, slot: _Slot, message: bytes, to: str, before_data: Callable[[], None] | None = None) -> _Sent:
        """Send one message, reconnecting once if the connection drops before its data was sent.

        Raises a ``TransportError`` only when no connection can be had (or the second one drops
        too) before this message was written; every other end is an outcome for this recipient.
        """
        lost: BaseException | None = None
        for attempt in (1, 2):
            conn = self._connection(slot)  # raises TemporaryError / AuthError / SecurityError
            conn.payload_sent = False  # it still says True for the message before this one
            conn.before_data = before_data
            try:
                conn.sendmail(self.sender, [to], message, _mail_options(conn, self.sender, to))
                return _Sent("submitted")
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = exc.recipients.get(to) or next(iter(exc.recipients.values()))
                if code == SERVER_CLOSING and attempt == 1:
                    lost = exc
                    slot.discard()
                    continue
                return _Sent("failed", _reply(code, text), code=code, cause=exc)
            except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                # A definite answer, even after the data: the server said it did not take it.
                if exc.smtp_code == SERVER_CLOSING and attempt == 1:
                    lost = exc
                    slot.discard()
                    continue
                detail = _reply(exc.smtp_code, exc.smtp_error)
                return _Sent("failed", detail, envelope_refused=True, code=exc.smtp_code, cause=exc)
            except smtplib.SMTPNotSupportedError as exc:  # e.g. a non-ASCII address, no SMTPUTF8
                slot.discard()
                return _Sent("failed", f"{self.where}: {exc}", cause=exc)
            except (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException, OSError) as exc:
                # Dropped, reset, timed out, or a reply that makes no sense: the session is unusable.
                payload_sent = conn.payload_sent
                slot.discard()
                if payload_sent:
                    log.warning("%s: connection lost after the data for %s, before the reply", self.where, to)
                    return _Sent(
                        "unknown",
                        f"connection to {self.where} lost after the message was sent, before the server "
                        f"answered ({_describe(exc, self.cfg.timeout)}): it may have been accepted",
                        cause=exc,
                    )
                lost = exc
                log.info("%s: connection lost (%s); reconnecting", self.where, _describe(exc, self.cfg.timeout))
        assert lost is not None
        raise TemporaryError(
            f"connection to {self.where} lost twice before the message was sent ({_describe(lost, self.cfg.timeout)})"
        ) from lost

    # --- the connections --------------------------------------------------------------------

    def _connection(self, slot: _Slot) -> _Connection:
        """The slot's open connection, or a new one (EHLO, STARTTLS, login) if it has none or it closed."""
        conn = slot.conn
        if conn is not None and conn.sock is not None:
            return conn
        slot.conn = None
        conn = self._open()
        slot.conn = conn
        with self._opened:
            self.connections += 1
        return conn

    def _open(self) -> _Connection:
        cfg = self.cfg
        if not self._helo_name:
            self._helo_name = socket.getfqdn()  # smtplib would look it up for every connection
        conn: _Connection | None = None
        try:
            if cfg.security == "tls":
                conn = _SSLConnection(
                    cfg.host, cfg.port, local_hostname=self._helo_name, timeout=cfg.timeout, context=self._tls()
                )
            else:
                conn = _Connection(cfg.host, cfg.port, local_hostname=self._helo_name, timeout=cfg.timeout)
            conn.ehlo_or_helo_if_needed()
            if cfg.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise SecurityError(
                        f"SMTP server {self.where} does not offer STARTTLS",
                        hint='check [delivery.smtp] port (587 offers it); security = "none" is for local relays only',
                    )
                conn.starttls(context=self._tls())
                conn.ehlo()
            if cfg.username:
                self._login(conn)
        except TransportError:
            _close_quietly(conn)
            raise
        except ssl.SSLCertVerificationError as exc:
            _close_quietly(conn)
            raise SecurityError(
                f"SMTP server {self.where}: TLS certificate not trusted ({exc.verify_message or exc})",
                hint="check [delivery.smtp] host: it must be a name the server's certificate is issued for",
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            _close_quietly(conn)
            raise TemporaryError(f"cannot connect to SMTP server {self.where}: {_describe(exc, cfg.timeout)}") from exc
        return conn

    def _login(self, conn: _Connection) -> None:
        user = self.cfg.username
        try:
            conn.login(user, self._password)
        except smtplib.SMTPAuthenticationError as exc:
            if 400 <= exc.smtp_code < 500:
                raise TemporaryError(
                    f"SMTP server {self.where} cannot log {user!r} in for now: {_reply(exc.smtp_code, exc.smtp_error)}"
                ) from exc
            raise AuthError(
                f"SMTP server {self.where} refused the login of {user!r}: {_reply(exc.smtp_code, exc.smtp_error)}",
                hint=f"check [delivery.smtp] username and ${PASSWORD_ENV}",
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise AuthError(
                f"SMTP server {self.where} does not offer AUTH, so {user!r} cannot log in",
                hint='servers offer AUTH only over TLS: use security = "starttls" or "tls", or leave username empty',
            ) from exc
        except smtplib.SMTPServerDisconnected:
            raise  # a dropped connection, not a verdict on the credentials
        except smtplib.SMTPException as exc:  # no mechanism both sides know
            raise AuthError(f"SMTP server {self.where}: cannot log {user!r} in: {exc}") from exc

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def close(self) -> None:
        """QUIT and close every connection. Never raises: every message already has its outcome."""
        for slot in self._slots:
            slot.quit()


def _mail_options(conn: smtplib.SMTP, sender: str, to: str) -> list[str]:
    """MAIL FROM's options, as ``smtplib.send_message`` sets them: SMTPUTF8 for a non-ASCII
    address (whose message ``MessageTemplate`` writes in UTF-8), refused if the server lacks it."""
    if sender.isascii() and to.isascii():
        return []
    if not conn.has_extn("smtputf8"):
        raise smtplib.SMTPNotSupportedError(
            "One or more source or delivery addresses require internationalized email support, "
            "but the server does not advertise the required SMTPUTF8 capability"
        )
    return ["SMTPUTF8", "BODY=8BITMIME"]


def _close_quietly(conn: smtplib.SMTP | None) -> None:
    if conn is None:
        return
    with contextlib.suppress(OSError):
        conn.close()


def _reply(code: int, text: bytes | str) -> str:
    """A server reply as one line: ``550 5.1.1 <x@example.org>: no such user``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()


def _describe(exc: BaseException, timeout: float) -> str:
    """A short, human account of a connection failure."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply(exc.smtp_code, exc.smtp_error)
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s ([delivery.smtp] timeout)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host name: {exc.strerror or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
