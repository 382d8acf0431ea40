"""The one small interface every transport implements, and the errors it may raise.

A transport turns a batch (one rendered variant, many recipients) into whatever its service
wants, hands it over, and reports each recipient's outcome. It never retries and never touches
the ledger: ``deliver`` decides what an error means for the batch (after django-anymail's split
between backend and sending logic). Each error type says what ``deliver`` may do next.

A transport that can find out afterwards what became of a delivery whose outcome is ``unknown``
(its process died or was interrupted mid-batch) also has ``settle`` (see ``Settles``): the
outbox can look for the file, SMTP can read the journal it keeps of how far each message got.
``deliver`` calls it where orphaned batches are reaped, before anything is sent.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol, runtime_checkable

from digest.errors import DigestError
from digest.issue.message import MessageTemplate, build_message
from digest.issue.render import Rendered
from digest.text import one_line

if TYPE_CHECKING:
    from digest.config import Settings, TransportSettings

log = logging.getLogger("digest.transports")

Outcome = Literal["submitted", "failed", "unknown"]
# What ``settle`` may conclude about a delivery whose outcome was unknown: it did reach the
# service (``submitted``), or it certainly did not (``unsent``: safe to send again).
Settlement = Literal["submitted", "unsent"]


class Recipient(NamedTuple):
    """One recipient of a batch and the values that fill the variant's placeholders.

    A named tuple, not a frozen dataclass: a million are made for a send of a million, and a
    frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (0.9 us
    against 0.3 us each)."""

    delivery_id: int
    subscriber_id: int
    email: str
    values: Mapping[str, str]  # name, email, unsubscribe_url, preferences_url
    token: str = ""  # the signed token of their links (``tokens.subscriber_links``); "" if none


@dataclass(frozen=True, slots=True)
class Batch:
    """What a transport is handed: a variant, who gets it, and how to label it."""

    issue_key: str
    variant: Rendered
    recipients: tuple[Recipient, ...]
    batch_id: int = 0
    test: bool = False  # a test copy: subject marked [TEST], nothing recorded against the issue
    # What the transport made of the batch ahead of time (``Prepares``), read only by that
    # transport's ``send``; a part of the batch (``outcomes`` splits one) has none.
    prepared: object = None
    # The link fields as ``tokens.subscriber_links`` makes them with ``TOKEN_TAG`` for the token,
    # when every recipient's links were made that way from their own ``token``: a transport may
    # then write the links into the message once and send each recipient's token alone.
    links: Mapping[str, str] | None = None

    @property
    def subject_prefix(self) -> str:
        return "[TEST] " if self.test else ""

    @property
    def recorded(self) -> bool:
        """Whether its recipients are deliveries in the ledger (not a test copy, not a notice to
        the editors): only those can be orphaned, so only those need evidence for ``settle``."""
        return not self.test and all(r.subscriber_id for r in self.recipients)


@dataclass(frozen=True, slots=True)
class Orphan:
    """A delivery whose outcome is unknown, and the batch it was last sent in."""

    delivery_id: int
    subscriber_id: int
    email: str
    issue_key: str
    batch_id: int


@dataclass(slots=True)
class Result:
    """Per-recipient outcomes, keyed by delivery id, and the service's id for the request.

    ``fatal`` is set when part of a batch went out and then the credentials were refused: the
    outcomes are recorded, then the send stops.
    """

    outcomes: dict[int, tuple[Outcome, str]] = field(default_factory=dict)
    provider_id: str = ""
    fatal: str = ""


def not_built(recipient: Recipient, exc: Exception) -> tuple[Outcome, str]:
    """The outcome of a recipient whose message (or request part) could not be built.

    ``failed``, never ``unknown``: nothing was handed over for them. Transports build each
    recipient's part on its own and record this instead of raising, so one bad value (a name, an
    address) fails its recipient alone and the rest of the batch goes out.
    """
    reason = f"message not built: {one_line(str(exc)) or type(exc).__name__}"
    log.warning("%s: %s", recipient.email, reason)
    return "failed", reason


def messages(
    settings: Settings, batch: Batch, outcomes: dict[int, tuple[Outcome, str]]
) -> Iterator[tuple[int, Recipient, EmailMessage]]:
    """Each recipient's message with its place in the batch, built one at a time as the transport
    asks for it (SMTP sends each before the next is built).

    One of the two places transports build messages, beside ``message_bytes`` (SMTP's way, from
    the variant's template): in both, a recipient whose message cannot be built is recorded in
    ``outcomes`` (``not_built``) and skipped, so it fails alone.
    """
    now = datetime.now(UTC)
    for index, r in enumerate(batch.recipients):
        try:
            message = build_message(
                settings, batch.variant, r.values, now=now, to=r.email, subject_prefix=batch.subject_prefix
            )
        except Exception as exc:  # any build error is this recipient's alone; see not_built
            outcomes[r.delivery_id] = not_built(r, exc)
            continue
        yield index, r, message


class Templates:
    """Each variant's ``MessageTemplate``, made on its first batch and kept for the next ones.

    For transports that send each recipient their own message as bytes (SMTP): the variant is
    encoded once, not once per recipient or per batch. The ``keep`` most recently used are kept
    (a send walks the variants in turn; 32 templates of the sample issue hold about 4 MB).
    """

    def __init__(self, settings: Settings, keep: int = 32) -> None:
        self.settings = settings
        self.keep = keep
        self._made: OrderedDict[tuple[Rendered, str], MessageTemplate] = OrderedDict()

    def of(self, batch: Batch) -> MessageTemplate:
        key = (batch.variant, batch.subject_prefix)
        template = self._made.get(key)
        if template is None:
            template = MessageTemplate.of(self.settings, batch.variant, batch.subject_prefix)
            self._made[key] = template
            while len(self._made) > self.keep:
                self._made.popitem(last=False)
        else:
            self._made.move_to_end(key)
        return template


def message_bytes(
    template: MessageTemplate, r: Recipient, now: datetime, outcomes: dict[int, tuple[Outcome, str]]
) -> bytes | None:
    """``r``'s whole message from the variant's template, or None when it cannot be built (then
    recorded in ``outcomes`` as ``not_built``, so it fails alone, as with ``messages``)."""
    try:
        return template.render(r.values, now=now, to=r.email)
    except Exception as exc:  # any build error is this recipient's alone; see not_built
        outcomes[r.delivery_id] = not_built(r, exc)
        return None


class Transport(Protocol):
    name: str
    max_batch: int

    def send(self, batch: Batch) -> Result:
        """Hand the batch over; raise a TransportError subclass if the batch as a whole failed."""
        ...

    def close(self) -> None: ...


class TransportClass(Protocol):
    """A transport class as the registry (``transports.TRANSPORTS``) holds it: the name a config
    gives it, the model of its ``[delivery.<name>]`` table, and how to open it from the settings
    (where a missing secret is a ``ConfigError``, before anything is claimed)."""

    name: str

    @property
    def settings_model(self) -> type[TransportSettings]: ...

    def from_settings(self, settings: Settings) -> Transport: ...


@runtime_checkable
class Settles(Protocol):
    """The optional step of a transport that can settle ``unknown`` deliveries of its own batches."""

    def settle(self, orphans: Sequence[Orphan]) -> dict[int, Settlement]:
        """What is certain about each orphan, by delivery id; an orphan left out stays unknown.

        Only evidence counts: "no sign of it" is ``unsent`` only where the transport would have
        left a sign before the service could have taken the message.
        """
        ...


@runtime_checkable
class Prepares(Protocol):
    """The optional step of a transport that can build a batch's request before handing it over.

    The runner calls it in a thread of its own while the batch before is in flight, so building
    and encoding the next request overlaps waiting for the service. It must not reach the service.
    ``in_flight`` says how many batches ``send`` may be given at once, from as many threads: up
    to that many requests then wait for the service together.
    """

    in_flight: int

    def prepare(self, batch: Batch) -> Batch:
        """The batch carrying its request in ``prepared``, for this transport's ``send``."""
        ...


class TransportError(DigestError):
    """The batch as a whole was not accepted.

    ``settled`` holds the outcomes that stand whatever became of the batch: recipients whose
    part could not be built (``not_built``) were never handed over, so they are ``failed`` with
    their own reason even when the request for the others timed out.
    """

    settled: Mapping[int, tuple[Outcome, str]] = MappingProxyType({})


class AuthError(TransportError):
    """Credentials refused (401/403): nothing can go out; the whole send stops."""

    exit_code = 3


class RejectedError(TransportError, ValueError):
    """The service refused this batch's content (400): the batch fails, the send goes on."""


class TooLargeError(TransportError):
    """The request was too large (413): send the batch again in smaller parts."""


class RateLimitedError(TransportError):
    """Too many requests (429): wait ``retry_after`` seconds, then send the same batch again."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TemporaryError(TransportError, ConnectionError):
    """5xx or a refused connection before the request went out: safe to retry after a pause."""


class UncertainError(TransportError, TimeoutError):
    """The request went out but no answer came back: it may have been accepted. Never re-sent."""


def error_for_status(status: int, message: str, *, retry_after: float = 0.0, hint: str | None = None) -> TransportError:
    """What an HTTP service's answer ``status`` (not 2xx) means for the batch, as the error that
    tells ``deliver`` what to do next: one reading of the codes for every HTTP transport.

    ``retry_after`` is the wait a 429 asked for; ``hint`` goes with the error (what to check).
    """
    if status in (401, 403):
        return AuthError(message, hint=hint)
    if status == 413:
        return TooLargeError(message, hint=hint)
    if status == 429:
        return RateLimitedError(message, retry_after=retry_after)
    if status >= 500:
        return TemporaryError(message, hint=hint)
    return RejectedError(message, hint=hint)
