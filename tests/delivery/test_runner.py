"""The send runner's outcome rules (README, "Sending"), against the in-memory transport.

The memory transport answers each request as the test tells it and keeps every message it
accepted, so "each subscriber exactly once" is counted on the receiving side, and every rule
(stop, fail, split, wait, back off, unknown) is checked without a server, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from digest.config import Settings
from digest.delivery import runner
from digest.delivery.transports import base
from digest.delivery.transports.base import AuthError, RejectedError
from digest.delivery.transports.memory import ACCEPTED, Answer, MemoryTransport, timeout
from digest.issue.message import build_message
from digest.issue.render import Rendered
from digest.store import Problem, Store
from factories import KEY, SIGNER, VARIANT, Sleeps, readers
from factories import ready_to_send as prepare
from factories import settings as base_settings


def make_settings(tmp_path: Path, **delivery: Any) -> Settings:
    cfg = {"batch_size": 1000, "retries": 3, "backoff": 1.0, "max_backoff": 3.0, "max_rate_wait": 30.0}
    return base_settings(tmp_path, delivery={**cfg, **delivery})


def emails(count: int) -> list[str]:
    return [r.email for r in readers(count)]


def send(store: Store, settings: Settings, transport: MemoryTransport, sleeps: Sleeps | None = None, **kw: Any):
    return runner.send_pending(
        store, settings, transport, SIGNER, KEY, sleep=sleeps if sleeps is not None else Sleeps(), **kw
    )


def received(transport: MemoryTransport) -> Counter[str]:
    return Counter(d.recipient.email for d in transport.delivered)


def sizes(transport: MemoryTransport) -> list[int]:
    return [len(r.recipients) for r in transport.requests]


# --- accepted ----------------------------------------------------------------------------------


def test_each_subscriber_gets_their_own_message_once_in_batches_the_transport_takes(tmp_path, store):
    prepare(store, 10)
    settings = make_settings(tmp_path, batch_size=4)
    transport = MemoryTransport(settings, max_batch=3)  # smaller than batch_size: it wins

    report = send(store, settings, transport)

    assert report.counts == {"submitted": 10}
    assert sizes(transport) == [3, 3, 3, 1]
    assert received(transport) == Counter(emails(10))
    message = next(d.message for d in transport.delivered if d.recipient.email == "reader3@example.org")
    assert message["To"] == "Reader 3 <reader3@example.org>"
    assert message["Subject"] == VARIANT.subject
    token = SIGNER.token(transport.delivered[3].recipient.subscriber_id)
    # The link names the issue too (&i=), for the desk's report of what came from it.
    assert message["List-Unsubscribe"] == f"<https://news.example.org/unsubscribe?t={token}&i={KEY}>"
    assert store.issues.get(KEY).status == "sent"
    # Run again: nothing more goes out.
    assert send(store, settings, transport).sent_now == 0
    assert len(transport.requests) == 4


def test_a_recipient_refused_by_the_service_fails_alone_and_the_rest_go_out(tmp_path, store):
    prepare(store, 3)
    settings = make_settings(tmp_path)
    transport = MemoryTransport(settings)
    transport.refuse("reader1@example.org", "550 5.1.1 no such user")

    report = send(store, settings, transport)

    assert report.counts == {"submitted": 2, "failed": 1}
    assert store.ledger.problems(KEY) == [Problem("reader1@example.org", "failed", "550 5.1.1 no such user")]
    assert received(transport) == Counter(["reader0@example.org", "reader2@example.org"])


# --- 401/403: stop ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_stop_the_send_and_give_the_batch_back_untouched(tmp_path, store, status):
    prepare(store, 6)
    settings = make_settings(tmp_path, batch_size=2)
    transport = MemoryTransport(settings)
    transport.answer(Answer(status, "the API key was refused"))

    with pytest.raises(AuthError, match=f"memory answered {status} the API key was refused") as info:
        send(store, settings, transport)

    assert info.value.exit_code == 3
    assert sizes(transport) == [2]  # no other batch was tried
    assert store.ledger.counts(KEY) == {"pending": 6}  # nothing marked submitted, nobody lost
    assert store.issues.get(KEY).status == "sending"
    # With a working key, everyone gets it once.
    assert send(store, settings, transport).counts == {"submitted": 6}
    assert received(transport) == Counter(emails(6))


def test_refused_credentials_are_raised_in_a_thread_that_is_not_the_main_one(tmp_path, store):
    # The scheduler sends from its job threads: an error there must reach the job, not vanish.
    prepare(store, 4)
    settings = make_settings(tmp_path, batch_size=2)
    transport = MemoryTransport(settings)
    transport.answer(Answer(401, "the API key was refused"))
    raised: list[BaseException] = []

    def job() -> None:
        try:
            send(store, settings, transport)
        except AuthError as exc:
            raised.append(exc)

    thread = threading.Thread(target=job)
    thread.start()
    thread.join(30)
    assert [str(e) for e in raised] == ["memory answered 401 the API key was refused"]
    assert store.ledger.counts(KEY) == {"pending": 4}


# --- 400: that batch fails ------------------------------------------------------------------------


def test_a_refused_batch_fails_with_the_services_words_and_the_send_goes_on(tmp_path, store):
    prepare(store, 4)
    settings = make_settings(tmp_path, batch_size=2)
    transport = MemoryTransport(settings)
    transport.answer(Answer(400, "from.email: does not match a verified Sender Identity"))

    report = send(store, settings, transport)

    assert report.counts == {"failed": 2, "submitted": 2}
    reason = "memory answered 400 from.email: does not match a verified Sender Identity"
    assert store.ledger.problems(KEY) == [
        Problem("reader0@example.org", "failed", reason),
        Problem("reader1@example.org", "failed", reason),
    ]
    assert received(transport) == Counter(["reader2@example.org", "reader3@example.org"])
    assert sizes(transport) == [2, 2]  # a 400 is not retried


# --- 413: split -------------------------------------------------------------------------------------


def test_a_batch_too_large_is_split_in_halves_until_each_part_is_taken(tmp_path, store):
    prepare(store, 8)
    settings = make_settings(tmp_path)
    transport = MemoryTransport(settings, max_request=2)

    report = send(store, settings, transport)

    assert report.counts == {"submitted": 8}
    assert sizes(transport) == [8, 4, 2, 2, 4, 2, 2]
    assert received(transport) == Counter(emails(8))
    assert report.batches == 1  # one claimed batch, sent in parts


def test_a_recipient_too_large_even_alone_fails_with_the_reason(tmp_path, store):
    prepare(store, 1)
    settings = make_settings(tmp_path)
    transport = MemoryTransport(settings)
    transport.answer(413)

    assert send(store, settings, transport).counts == {"failed": 1}
    [problem] = store.ledger.problems(KEY)
    assert problem.error == "too large for the service even alone: memory answered 413"


def test_credentials_refused_after_half_a_split_batch_went_out_record_that_half_then_stop(tmp_path, store):
    prepare(store, 4)
    settings = make_settings(tmp_path)
    transport = MemoryTransport(settings)
    transport.answer(413, ACCEPTED, 401)

    with pytest.raises(AuthError, match="memory answered 401"):
        send(store, settings, transport)

    assert store.ledger.counts(KEY) == {"submitted": 2, "failed": 2}
    assert received(transport) == Counter(["reader0@example.org", "reader1@example.org"])
    # The failed half goes out with --retry-failed; the submitted half is never sent again.
    store.ledger.retry_failed(KEY)
    assert send(store, settings, transport).counts == {"submitted": 4}
    assert received(transport) == Counter(emails(4))


# --- 429: wait until the reset, within a bound ------------------------------------------------------


def test_rate_limited_waits_until_the_reset_then_sends_the_same_batch_again(tmp_path, store):
    prepare(store, 3)
    settings = make_settings(tmp_path)
    transport = MemoryTransport(settings)
    transport.answer(Answer(429, retry_after=12.5))
    sleeps = Sleeps()

    assert send(store, settings, transport, sleeps).counts == {"submitted": 3}

    assert sleeps == [12.5]
    assert [r.recipients for r in transport.requests] == [tuple(emails(3))] * 2
    assert received(transport) == Counter(emails(3))


def test_rate_limited_longer_than_max_rate_wait_fails_the_batch_and_the_send_goes_on(tmp_path, store):
    prepare(store, 4)
    settings = make_settings(tmp_path, batch_size=2, max_rate_wait=30)
    transport = MemoryTransport(settings)
    transport.answer(Answer(429, retry_after=20), Answer(429, retry_after=20))
    sleeps = Sleeps()

    report = send(store, settings, transport, sleeps)

    assert report.counts == {"failed": 2, "submitted": 2}
    assert sleeps == [20]  # the second wait would have passed the bound: not waited
    [first, _] = store.ledger.problems(KEY)
    assert first.error == ("memory answered 429 (gave up: waiting 40 s would pass [delivery] max_rate_wait = 30 s)")


def test_a_limit_that_has_already_reset_is_not_asked_again_without_end(tmp_path, store):
    # A 429 whose reset time has passed (clocks differ) asks for no wait at all; answered so again
    # and again, the batch must still fail within max_rate_wait, not hammer the service forever.
    prepare(store, 2)
    settings = make_settings(tmp_path, max_rate_wait=5)
    transport = MemoryTransport(settings)
    transport.otherwise = Answer(429, retry_after=0)
    sleeps = Sleeps()

    report = send(store, settings, transport, sleeps)

    assert report.counts == {"failed": 2}
    assert sleeps == [1.0] * 5  # a second at least each time, 5 s in all
    assert len(transport.requests) == 6
    [problem, _] = store.ledger.problems(KEY)
    assert problem.error == "memory answered 429 (gave up: waiting 6 s would pass [delivery] max_rate_wait = 5 s)"


# --- 5xx: back off with jitter, a bounded number of times ---------------------------------------------


def test_server_errors_are_retried_with_growing_jittered_delays_then_the_batch_fails(tmp_path, store):
    prepare(store, 2)
    settings = make_settings(tmp_path, retries=3, backoff=1.0, max_backoff=3.0)
    transport = MemoryTransport(settings)
    transport.otherwise = Answer(503, "service unavailable")
    sleeps = Sleeps()

    report = send(store, settings, transport, sleeps)

    assert report.counts == {"failed": 2}
    assert len(transport.requests) == 4  # the first try and 3 retries
    full = [1.0, 2.0, 3.0]  # doubling from backoff, capped at max_backoff
    assert len(sleeps) == 3
    assert all(f / 2 <= s <= f for s, f in zip(sleeps, full, strict=True)), sleeps
    assert len({s / f for s, f in zip(sleeps, full, strict=True)}) > 1, "no jitter: every delay the same fraction"
    [problem, _] = store.ledger.problems(KEY)
    assert problem.error == "memory answered 503 service unavailable (after 4 tries)"


def test_a_server_error_that_passes_is_sent_once(tmp_path, store):
    prepare(store, 2)
    settings = make_settings(tmp_path)
    transport = MemoryTransport(settings)
    transport.answer(502, 500)
    sleeps = Sleeps()

    assert send(store, settings, transport, sleeps).counts == {"submitted": 2}
    assert len(sleeps) == 2 and len(transport.requests) == 3
    assert received(transport) == Counter(emails(2))


def test_an_interrupt_while_backing_off_leaves_the_batch_unknown(tmp_path, store):
    prepare(store, 2)
    settings = make_settings(tmp_path)
    transport = MemoryTransport(settings)
    transport.answer(503)

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.send_pending(store, settings, transport, SIGNER, KEY, sleep=interrupted)

    assert store.ledger.counts(KEY) == {"unknown": 2}
    assert all(p.error == "interrupted: KeyboardInterrupt()" for p in store.ledger.problems(KEY))


# --- timeout: unknown, never sent again on its own ------------------------------------------------------


def test_a_timeout_leaves_the_batch_unknown_and_it_is_not_sent_again_on_its_own(tmp_path, store):
    prepare(store, 4)
    settings = make_settings(tmp_path, batch_size=2)
    transport = MemoryTransport(settings)
    transport.answer(timeout())

    report = send(store, settings, transport)

    assert report.counts == {"unknown": 2, "submitted": 2}
    assert [p.status for p in store.ledger.problems(KEY)] == ["unknown", "unknown"]
    again = send(store, settings, transport)
    assert (again.sent_now, again.settled, again.requeued) == (0, 0, 0)
    assert len(transport.requests) == 2
    assert store.issues.get(KEY).status == "sent"  # nothing pending: its recipients wait for the operator
    # --resend-unknown is the operator's word: they are sent again.
    resent = send(store, settings, transport, resend_unknown=True)
    assert resent.resent == 2 and resent.counts == {"submitted": 4}
    assert received(transport) == Counter(emails(4))


@pytest.mark.parametrize(("accepted", "settled", "requests"), [(True, (2, 0), 1), (False, (0, 2), 2)])
def test_what_the_transport_can_tell_of_an_unknown_batch_settles_it_at_the_next_send(
    tmp_path, store, accepted, settled, requests
):
    prepare(store, 2)
    settings = make_settings(tmp_path)
    transport = MemoryTransport(settings)
    transport.answer(timeout(accepted=accepted))
    assert send(store, settings, transport).counts == {"unknown": 2}

    report = send(store, settings, transport)

    assert (report.settled, report.requeued) == settled
    assert report.counts == {"submitted": 2}
    assert len(transport.requests) == requests  # sent again only when it certainly never arrived
    assert received(transport) == Counter(emails(2))


# --- one recipient's message cannot be built -----------------------------------------------------------


@pytest.fixture
def unbuildable(monkeypatch):
    """reader1's message cannot be built (as a bad value anywhere in it would do)."""

    def build(settings: Settings, variant: Rendered, values: Any, **kwargs: Any) -> EmailMessage:
        if kwargs["to"] == "reader1@example.org":
            raise ValueError("invalid arguments; address parts cannot contain CR or LF")
        return build_message(settings, variant, values, **kwargs)

    monkeypatch.setattr(base, "build_message", build)


NOT_BUILT = Problem(
    "reader1@example.org", "failed", "message not built: invalid arguments; address parts cannot contain CR or LF"
)


def test_a_recipient_whose_message_cannot_be_built_fails_alone(tmp_path, store, unbuildable):
    prepare(store, 3)
    settings = make_settings(tmp_path)
    transport = MemoryTransport(settings)

    report = send(store, settings, transport)

    assert report.counts == {"submitted": 2, "failed": 1}
    assert store.ledger.problems(KEY) == [NOT_BUILT]
    assert [r.recipients for r in transport.requests] == [("reader0@example.org", "reader2@example.org")]


@pytest.mark.parametrize(
    ("answer", "others"),
    [
        (timeout(), ("unknown", "memory: no answer after the request went out")),
        (400, ("failed", "memory answered 400")),
    ],
)
def test_a_recipient_that_cannot_be_built_keeps_its_own_reason_when_the_batch_fails(
    tmp_path, store, unbuildable, answer, others
):
    prepare(store, 3)
    settings = make_settings(tmp_path)
    transport = MemoryTransport(settings)
    transport.answer(answer)

    send(store, settings, transport)

    status, reason = others
    by_email = {p.email: p for p in store.ledger.problems(KEY)}
    assert by_email == {
        "reader0@example.org": Problem("reader0@example.org", status, reason),
        "reader1@example.org": NOT_BUILT,  # never handed over, so never "maybe sent"
        "reader2@example.org": Problem("reader2@example.org", status, reason),
    }


# --- between batches ---------------------------------------------------------------------------------------


def test_a_stop_takes_no_new_batch_after_the_one_in_flight(tmp_path, store):
    prepare(store, 6)
    settings = make_settings(tmp_path, batch_size=2)
    transport = MemoryTransport(settings)
    stop = threading.Event()

    class StopAfterOne:
        def start(self, total: int) -> None: ...
        def advance(self, count: int) -> None:
            stop.set()  # as SIGTERM does while a batch is in flight

        def close(self) -> None: ...

    report = send(store, settings, transport, stop=stop, progress=StopAfterOne())

    assert report.counts == {"submitted": 2, "pending": 4}
    assert store.issues.get(KEY).status == "sending"
    assert sizes(transport) == [2]


# --- test copies -------------------------------------------------------------------------------------------


def test_a_test_copy_is_marked_records_nothing_and_names_a_recipient_it_did_not_reach(tmp_path, store):
    prepare(store, 1)
    settings = make_settings(tmp_path)
    transport = MemoryTransport(settings)
    transport.refuse("gone@example.org")

    with pytest.raises(
        RejectedError, match=re.escape("test copy not sent to gone@example.org: 550 5.1.1 no such user")
    ):
        runner.send_test(settings, transport, VARIANT, KEY, ["editor@example.org", "gone@example.org"])

    [copy] = transport.delivered
    assert copy.message["Subject"] == f"[TEST] {VARIANT.subject}"
    assert copy.recipient.email == "editor@example.org"
    assert store.ledger.counts(KEY) == {}  # nobody enqueued, nothing recorded
