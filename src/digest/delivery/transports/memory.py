"""The in-memory transport: keeps what it is handed and answers as it is told, for tests.

Like django-anymail's test backend, it lets the send runner's outcome rules be exercised without a
server. Each recipient's message is built as every transport builds it (``build_message``, so one
that cannot be built fails alone, as ``base.not_built`` says), and each batch is one request, as
with SendGrid. How the service answers the next requests is scripted with ``answer``:

- ``ACCEPTED`` (any 2xx): every message is kept in ``delivered``, but for the recipients told to
  ``refuse``, which are ``failed`` with the refusal (as an SMTP server refuses one at RCPT);
- an HTTP error status: 400, 401/403, 413, 429 (with ``retry_after``, the wait until the limit
  resets), 5xx; read by ``base.error_for_status``, the same reading an HTTP transport makes;
- ``timeout()``: the request went out and no answer came back, so the batch's outcome is
  uncertain, and nothing tells later what became of it (as with SendGrid).
  ``timeout(accepted=True)`` is a service that took it all the same and ``accepted=False`` one
  that did not; either way ``settle`` can tell afterwards (as the outbox's files can).

Once the script is used up, every request gets ``otherwise`` (``ACCEPTED`` unless told else).
``max_request`` is the most recipients one request may carry; a larger one is answered 413.

``settle`` tells only what such a timeout left as evidence; about any other delivery it says
nothing, so it stays unknown.

It is not registered as a transport a config can name: it keeps messages in the process, so a
``digest send`` through it would mark every subscriber submitted while nobody got anything.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage

from digest.config import Settings
from digest.delivery.transports.base import (
    Batch,
    Orphan,
    Outcome,
    Recipient,
    Result,
    Settlement,
    TransportError,
    UncertainError,
    error_for_status,
    messages,
)


@dataclass(frozen=True, slots=True)
class Answer:
    """How the service answers one request (see the module docstring)."""

    status: int = 202
    detail: str = ""
    retry_after: float = 0.0  # a 429's wait until the limit resets, in seconds
    timeout: bool = False  # no answer after the request went out
    accepted: bool | None = None  # after a timeout: whether the service took it, if settle can tell

    def __str__(self) -> str:
        return "no answer" if self.timeout else f"{self.status} {self.detail}".strip()


ACCEPTED = Answer()


def timeout(*, accepted: bool | None = None) -> Answer:
    """No answer came back after the request went out. ``accepted`` True or False: the service
    took it or not, and ``settle`` can tell which afterwards; None: nobody can tell."""
    return Answer(timeout=True, accepted=accepted)


@dataclass(frozen=True, slots=True)
class Request:
    """One batch as it was handed over: who was in it, and how it was answered."""

    issue_key: str
    batch_id: int
    test: bool
    recipients: tuple[str, ...]  # addresses of the messages in the request (built ones only)
    answer: Answer


@dataclass(frozen=True, slots=True)
class Delivered:
    """One message the service kept: to whom, in which batch, exactly as it was built."""

    issue_key: str
    batch_id: int
    recipient: Recipient
    message: EmailMessage


class MemoryTransport:
    """Sends nowhere: keeps each request in ``requests`` and each kept message in ``delivered``."""

    name = "memory"

    def __init__(self, settings: Settings, *, max_batch: int = 1000, max_request: int = 0) -> None:
        self.settings = settings
        self.max_batch = max_batch
        self.max_request = max_request  # 0: no limit
        self.otherwise = ACCEPTED
        self.requests: list[Request] = []
        self.delivered: list[Delivered] = []
        self.closed = False
        self._script: deque[Answer] = deque()
        self._refusals: dict[str, str] = {}
        self._fates: dict[int, Settlement] = {}  # delivery id -> what settle can tell of it

    def answer(self, *answers: Answer | int) -> None:
        """Answer the next requests so, in order (an int is an HTTP status)."""
        self._script.extend(a if isinstance(a, Answer) else Answer(status=a) for a in answers)

    def refuse(self, email: str, reason: str = "550 5.1.1 no such user") -> None:
        """Refuse ``email`` in every accepted request from now on: that recipient fails alone."""
        self._refusals[email] = reason

    def received(self, email: str) -> int:
        """How many messages ``email`` was delivered: what "exactly once" is counted on."""
        return sum(1 for d in self.delivered if d.recipient.email == email)

    def send(self, batch: Batch) -> Result:
        messages, outcomes = self._build(batch)
        if not messages:  # nobody left to send to: no request at all
            return Result(outcomes)
        answer = self._next_answer(len(messages))
        self.requests.append(
            Request(batch.issue_key, batch.batch_id, batch.test, tuple(r.email for r, _ in messages), answer)
        )
        if answer.timeout:
            self._time_out(batch, messages, answer.accepted)
            raise self._settled(UncertainError("memory: no answer after the request went out"), outcomes)
        if not 200 <= answer.status < 300:
            error = error_for_status(answer.status, f"memory answered {answer}", retry_after=answer.retry_after)
            raise self._settled(error, outcomes)
        for r, message in messages:
            refusal = self._refusals.get(r.email, "")
            if not refusal:
                self.delivered.append(Delivered(batch.issue_key, batch.batch_id, r, message))
            outcomes[r.delivery_id] = ("failed", refusal) if refusal else ("submitted", "")
        return Result(outcomes, provider_id=f"memory-{len(self.requests)}")

    def settle(self, orphans: Sequence[Orphan]) -> dict[int, Settlement]:
        """What a timeout left as evidence of each orphan; one without is left out (stays unknown)."""
        return {o.delivery_id: self._fates[o.delivery_id] for o in orphans if o.delivery_id in self._fates}

    def close(self) -> None:
        self.closed = True

    def _build(self, batch: Batch) -> tuple[list[tuple[Recipient, EmailMessage]], dict[int, tuple[Outcome, str]]]:
        """Each recipient's message, and the outcomes of those whose message cannot be built."""
        outcomes: dict[int, tuple[Outcome, str]] = {}
        built = [(r, message) for _, r, message in messages(self.settings, batch, outcomes)]
        return built, outcomes

    def _next_answer(self, size: int) -> Answer:
        if self.max_request and size > self.max_request:
            return Answer(413, f"{size} recipients, more than {self.max_request}")
        return self._script.popleft() if self._script else self.otherwise

    def _time_out(self, batch: Batch, messages: list[tuple[Recipient, EmailMessage]], accepted: bool | None) -> None:
        """A request without an answer: kept if the service took it; evidence for ``settle`` if
        there is any (a recorded batch's delivery ids only: other batches' ids repeat)."""
        for r, message in messages:
            if accepted:
                self.delivered.append(Delivered(batch.issue_key, batch.batch_id, r, message))
            if accepted is not None and batch.recorded:
                self._fates[r.delivery_id] = "submitted" if accepted else "unsent"

    @staticmethod
    def _settled(error: TransportError, outcomes: dict[int, tuple[Outcome, str]]) -> TransportError:
        """The error, carrying the outcomes that stand whatever became of the request."""
        error.settled = outcomes
        return error
