"""Sending an issue: queue every active subscriber once, and walk the queue in batches.

The ledger (``store``) makes it safe: each batch is claimed (committed as ``submitting``) before
it is handed to the transport, then finished with every recipient's outcome. What each transport
outcome means for the batch (stop, fail, split, wait, back off, unknown) is ``outcomes.py``.

What a transport can prove later settles an ``unknown`` delivery (``settle_unknown``, at the
start of every send); the rest stay unknown until the operator says ``--resend-unknown``.

Per-recipient work is only what must differ per recipient: a signed token and the values that
fill the placeholders. Each variant was rendered and inlined once, when the issue was recorded
(``variants.py``).
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from digest.config import Delivery, Settings
from digest.delivery.outcomes import deliver_batch
from digest.delivery.queueing import Queuer
from digest.delivery.tokens import TOKEN_TAG, Signer, subscriber_links
from digest.delivery.transports.base import (
    AuthError,
    Batch,
    Orphan,
    Prepares,
    Recipient,
    RejectedError,
    Result,
    Settles,
    Transport,
    TransportError,
)
from digest.delivery.variants import stored_variant
from digest.issue.build import preview_values
from digest.issue.render import Rendered
from digest.models import DeliveryStatus, IssueStatus
from digest.store import ClaimCursor, Claimed, Store

log = logging.getLogger("digest.deliver")


class Progress(Protocol):
    def start(self, total: int) -> None: ...
    def advance(self, count: int) -> None: ...
    def close(self) -> None: ...


class NoProgress:
    def start(self, total: int) -> None: ...
    def advance(self, count: int) -> None: ...
    def close(self) -> None: ...


@dataclass
class SendReport:
    issue_key: str
    recorded: bool = False
    enqueued: int = 0
    orphaned: int = 0
    settled: int = 0  # unknown deliveries the transport proved submitted
    requeued: int = 0  # unknown deliveries the transport proved never sent: sent now
    resent: int = 0  # unknown deliveries queued again by --resend-unknown
    batches: int = 0
    sent_now: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def recipient_values(
    settings: Settings, signer: Signer, subscriber_id: int, email: str, name: str, *, issue_key: str = ""
) -> dict[str, str]:
    """What fills one subscriber's placeholders: their name and their signed links."""
    return dict(recipient(settings, signer, 0, subscriber_id, email, name, issue_key=issue_key).values)


def recipient(
    settings: Settings,
    signer: Signer,
    delivery_id: int,
    subscriber_id: int,
    email: str,
    name: str,
    *,
    issue_key: str = "",
) -> Recipient:
    """One subscriber as a recipient of issue ``issue_key``: their name, address, signed links,
    and the token those links carry."""
    token = signer.token(subscriber_id)
    values = {"name": name, "email": email, **subscriber_links(settings.newsletter.base_url, token, issue_key)}
    return Recipient(delivery_id, subscriber_id, email, values, token)


def send_pending(
    store: Store,
    settings: Settings,
    transport: Transport,
    signer: Signer,
    key: str,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    sleep: Callable[[float], None] = time.sleep,
    resend_unknown: bool = False,
) -> SendReport:
    """Mark orphaned batches unknown and settle what the transport can, then send every pending
    delivery, queueing the newcomers while the first batches go out.

    ``resend_unknown`` (the operator's decision) queues the unknown deliveries left after that
    again. ``stop`` is checked between batches: set it (on SIGTERM) to finish the batch in
    flight and take no new one.
    """
    cfg = settings.delivery
    report = SendReport(key)
    report.orphaned = store.ledger.reap_orphans(key, lease=timedelta(minutes=cfg.lease_minutes))
    if report.orphaned:
        log.warning(
            "%d batch(es) left in flight by a stopped process are now 'unknown'", report.orphaned, extra={"issue": key}
        )
    report.settled, report.requeued = settle_unknown(store, transport, key)
    if resend_unknown:
        report.resent = store.ledger.resend_unknown(key)
        if report.resent:
            log.warning(
                "%d unknown recipient(s) queued again (--resend-unknown): some of them may already have "
                "this issue and will get a second copy",
                report.resent,
                extra={"issue": key},
            )
    progress = progress or NoProgress()
    pending = store.ledger.counts(key).get(DeliveryStatus.PENDING, 0)
    preparer = _Preparer(store, settings, transport, signer, key)  # queues the newcomers meanwhile
    lanes = _Lanes(store, transport, cfg, preparer, report, progress, stop, sleep)
    try:
        progress.start(pending + preparer.waiting)
        lanes.run(transport.in_flight if isinstance(transport, Prepares) else 1)
    finally:
        report.enqueued = preparer.close()
        progress.close()
    report.counts = store.ledger.counts(key)
    if not report.counts.get(DeliveryStatus.PENDING) and not report.counts.get(DeliveryStatus.SUBMITTING):
        store.issues.set_status(key, IssueStatus.SENT, expect=(IssueStatus.SENDING,))
    return report


class _Lanes:
    """The send loop, run by as many threads as the transport may have requests in flight.

    Each lane takes the next batch built ahead, hands it over (committed: from here a crash
    leaves it ``unknown``), sends it and records its outcome, handing over the following batch
    in the same transaction when it is already built. With several lanes, one request's upload
    and the service's answer overlap the others': against SendGrid, where an answer takes longer
    than building the next request, that wait was most of a send. A crash then leaves at most
    one ``unknown`` batch per lane. The first error met in any lane stops them all (each
    finishes the batch it has in flight) and is raised here.
    """

    def __init__(
        self,
        store: Store,
        transport: Transport,
        cfg: Delivery,
        preparer: _Preparer,
        report: SendReport,
        progress: Progress,
        stop: threading.Event | None,
        sleep: Callable[[float], None],
    ) -> None:
        self._store, self._transport, self._cfg, self._preparer = store, transport, cfg, preparer
        self._report, self._progress, self._stop, self._sleep = report, progress, stop, sleep
        self._halt = threading.Event()  # set by a lane that met an error
        self._lock = threading.Lock()  # the report and the progress, shared by the lanes
        self._errors: list[BaseException] = []

    def run(self, count: int) -> None:
        """Send with ``count`` lanes (one runs in the calling thread); the first error met in any
        of them is raised here once all have stopped."""
        if count <= 1:
            self._lane()
        else:
            self._in_threads(count)
        if self._errors:
            raise self._errors[0]

    def _in_threads(self, count: int) -> None:
        threads = [threading.Thread(target=self._lane, name=f"digest-send-{i}", daemon=True) for i in range(count)]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException:  # Ctrl-C while waiting: the lanes finish what they have in flight
            self._halt.set()
            for thread in threads:
                thread.join()
            raise

    def _stopped(self) -> bool:
        return self._halt.is_set() or (self._stop is not None and self._stop.is_set())

    def _following(self) -> Ready | None:
        return None if self._stopped() else self._preparer.ready()

    def _lane(self) -> None:
        ledger = self._store.ledger
        handed: Ready | None = None  # handed over with the last batch's finish, not yet sent
        try:
            while not self._stopped():
                if handed is None:
                    prepared = self._preparer.next()
                    if prepared is None:
                        break
                    if self._stopped():  # stopped while it was being built: it never goes out
                        ledger.release(prepared[0])
                        break
                    if not ledger.hand_over(prepared[0]):
                        _taken_back(prepared[0])
                        continue
                    handed = prepared
                claimed, batch = handed
                handed = None  # from here _send_claimed finishes or releases it, even if it raises
                handed = _send_claimed(
                    self._store, self._transport, self._cfg, claimed, batch, self._sleep, self._following
                )
                with self._lock:
                    self._report.batches += 1
                    self._report.sent_now += len(claimed.recipients)
                    self._progress.advance(len(claimed.recipients))
        except BaseException as exc:  # raised by ``run``, in whichever thread it runs
            self._halt.set()
            with self._lock:
                self._errors.append(exc)
        finally:
            if handed is not None:  # handed over, then the send stopped: nothing of it went out
                ledger.release(handed[0])


def send_claimed(store: Store, settings: Settings, transport: Transport, signer: Signer, claimed: Claimed) -> None:
    """Send one batch claimed outside the send loop (a new reader's welcome copy of an issue)
    the way the loop sends each of its batches, and record its outcome in the ledger."""
    variant = stored_variant(store, claimed.issue_key, claimed.variant)
    _send_claimed(store, transport, settings.delivery, claimed, _batch(settings, signer, claimed, variant), time.sleep)


def settle_unknown(store: Store, transport: Transport, key: str) -> tuple[int, int]:
    """Let the transport settle the issue's unknown deliveries of its own batches: returns how
    many it proved (submitted, never sent). What it cannot prove stays unknown; so does
    everything when it cannot look (logged, and the send goes on)."""
    if not isinstance(transport, Settles):
        return 0, 0
    orphans = [Orphan(did, sid, email, key, bid) for did, sid, email, bid in store.ledger.orphans(key, transport.name)]
    if not orphans:
        return 0, 0
    try:
        resolved = transport.settle(orphans)
    except TransportError as exc:
        log.warning("%d unknown recipient(s) stay unknown: %s", len(orphans), exc, extra={"issue": key})
        return 0, 0
    submitted, unsent = store.ledger.settle(resolved)
    log.warning(
        "%d unknown recipient(s) settled by the %s transport: %d were submitted, %d never sent (sent now); "
        "%d stay unknown",
        submitted + unsent,
        transport.name,
        submitted,
        unsent,
        len(orphans) - submitted - unsent,
        extra={"issue": key},
    )
    return submitted, unsent


Ready = tuple[Claimed, Batch]
SWITCH_INTERVAL = 0.001  # seconds a thread may hold the GIL while the other waits for it
AHEAD = 2  # batches claimed ahead of the send loop at most: one being claimed, one being built


class _Preparer:
    """Claims and builds the next batches. For a transport that builds its request ahead
    (``Prepares``) two threads of its own do it while the send loop waits for the answer to the
    batch before: one claims the next batch while the other builds the one claimed before it. A
    claim is mostly a wait for the database (on PostgreSQL, its server's CPU for the claim's
    1,000 row updates) and a build is Python holding the GIL, so the two overlap instead of
    adding up; claimed in one thread, batches keep their order and their size. For the other
    transports, a batch is claimed and built when the loop asks.

    Every batch is claimed ahead (``handed_over=False``), ``AHEAD`` at most: until the loop
    hands it over, a crash puts it back to pending instead of leaving it ``unknown``. A batch
    whose building failed, and one claimed or built but never taken by the loop, are released
    here.

    The issue's newcomers are queued meanwhile by a ``Queuer`` of its own; a claim that finds
    nothing pending waits for its next range.
    """

    def __init__(self, store: Store, settings: Settings, transport: Transport, signer: Signer, key: str) -> None:
        self._store, self._settings, self._transport, self._signer, self._key = store, settings, transport, signer, key
        self._queuer = Queuer(store, settings, key)
        self.waiting = self._queuer.waiting  # subscribers not yet queued when the send started
        self._size = min(settings.delivery.batch_size, transport.max_batch)
        self._variants: dict[str, Rendered] = {}
        self._cursor = ClaimCursor()  # where the next claim searches
        # From the claim thread to the build thread, and from that to the loop: each ends with
        # None (nothing more pending) or the error that stopped it.
        self._claimed: queue.Queue[Claimed | BaseException | None] = queue.Queue()
        self._ready: queue.Queue[Ready | BaseException | None] = queue.Queue()
        self._room = threading.Semaphore(AHEAD)  # taken to claim a batch, given back when the loop takes it
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._switch = sys.getswitchinterval()
        if isinstance(transport, Prepares):
            # The loop's thread mostly waits (for the service, for the database) and must get the
            # GIL back at once when its answer comes, not after the 5 ms a builder may keep it:
            # measured, that wait cost about a quarter of a SendGrid send. Restored by ``close``.
            sys.setswitchinterval(SWITCH_INTERVAL)
            self._threads = [
                threading.Thread(target=self._claiming, name="digest-claim", daemon=True),
                threading.Thread(target=self._building, name="digest-build", daemon=True),
            ]
            for thread in self._threads:
                thread.start()

    def next(self) -> Ready | None:
        """The next claimed and built batch, or None when nothing is pending; the loop must hand
        it over or release it. An error met while claiming or building is raised here. Safe to
        call from several lanes at once: each batch goes to one, the end to all of them."""
        if not self._threads:
            claimed = self._claim()
            return None if claimed is None else self._built(claimed)
        return self._taken(self._ready.get())

    def ready(self) -> Ready | None:
        """The next batch if it is built already, never waiting (always None without threads of
        its own); the loop must hand it over or release it. The end of the queue or an error is
        left for ``next``."""
        if not self._threads:
            return None
        try:
            item = self._ready.get_nowait()
        except queue.Empty:
            return None
        if isinstance(item, tuple):
            return self._taken(item)
        self._ready.put_nowait(item)
        return None

    def _taken(self, item: Ready | BaseException | None) -> Ready | None:
        """A batch taken from the build thread: room to claim another. The end (None) or an
        error is that thread's last item: it goes back for every other lane to meet too."""
        if isinstance(item, tuple):
            self._room.release()
            return item
        self._ready.put_nowait(item)  # the thread has stopped: nothing else fills the queue
        if isinstance(item, BaseException):
            raise item
        return None

    def close(self) -> int:
        """Stop claiming and queueing, wait for the threads, and give back every batch claimed or
        built but never taken; returns how many subscribers were queued."""
        self._closing.set()
        queued = self._queuer.close()
        for thread in self._threads:
            thread.join()
        if self._threads:
            sys.setswitchinterval(self._switch)
        for waiting in (self._claimed, self._ready):
            while not waiting.empty():
                item = waiting.get_nowait()
                if isinstance(item, tuple):
                    self._store.ledger.release(item[0])
                elif isinstance(item, Claimed):
                    self._store.ledger.release(item)
        return queued

    def _claim(self) -> Claimed | None:
        """Claim the next batch, waiting for the queuer when nothing is pending yet; None once
        everything is queued and nothing is pending.

        Each claim searches on from the last (``ClaimCursor``), and again from the first variant
        after each range queued. Once everything is queued and nothing is found, one search with
        a new cursor, from the start of every variant, finds what was put back behind it
        (another worker's released batch)."""
        while True:
            pieces = self._queuer.pieces
            claimed = self._store.ledger.claim(
                self._key, self._size, self._transport.name, handed_over=False, cursor=self._cursor
            )
            if claimed is not None:
                return claimed
            if self._queuer.more_since(pieces):
                self._cursor.restart()
                continue
            if not self._cursor.positions:  # searched from the start of every variant
                return None
            self._cursor = ClaimCursor()

    def _built(self, claimed: Claimed) -> Ready:
        """A claimed batch built for its transport; released if building it fails."""
        try:
            if claimed.variant not in self._variants:
                self._variants[claimed.variant] = stored_variant(self._store, self._key, claimed.variant)
            batch = _batch(self._settings, self._signer, claimed, self._variants[claimed.variant])
            if isinstance(self._transport, Prepares):
                batch = self._transport.prepare(batch)
        except BaseException:
            self._store.ledger.release(claimed)
            raise
        return claimed, batch

    def _claiming(self) -> None:
        """The claim thread: the next batch whenever there is room for it, until nothing is
        pending, an error, or closing."""
        try:
            while self._wait_for_room():
                claimed = self._claim()
                self._claimed.put_nowait(claimed)
                if claimed is None:
                    return
        except BaseException as exc:  # the loop raises it: a thread's error would go unseen
            self._claimed.put_nowait(exc)

    def _building(self) -> None:
        """The build thread: builds each batch the claim thread claimed, in order, and passes on
        the end or the error that stopped it. Once closing, what it left unbuilt is released by
        ``close``."""
        while not self._closing.is_set():
            try:
                item = self._claimed.get(timeout=0.05)
            except queue.Empty:
                continue
            if not isinstance(item, Claimed):  # the end (None), or the claim thread's error
                self._ready.put_nowait(item)
                return
            try:
                self._ready.put_nowait(self._built(item))
            except BaseException as exc:  # released by _built; the loop raises it
                self._ready.put_nowait(exc)
                return

    def _wait_for_room(self) -> bool:
        """Wait until the loop has taken a batch claimed before: ``AHEAD`` at most, so a stop or
        a crash has at most that many to put back. False once closing."""
        while not self._closing.is_set():
            if self._room.acquire(timeout=0.05):
                return True
        return False


def _batch(settings: Settings, signer: Signer, claimed: Claimed, variant: Rendered) -> Batch:
    """A claimed batch as its transport gets it: every recipient's links made from their token,
    and the links all of them share but for it (``Batch.links``)."""
    key = claimed.issue_key
    recipients = tuple(
        recipient(settings, signer, did, sid, email, name, issue_key=key)
        for did, sid, email, name in claimed.recipients
    )
    links = subscriber_links(settings.newsletter.base_url, TOKEN_TAG, key)
    return Batch(key, variant, recipients, batch_id=claimed.id, links=links)


def _taken_back(claimed: Claimed) -> None:
    log.warning(
        "batch %d was taken back while it waited (its lease ran out?): not sent by this process",
        claimed.id,
        extra={"issue": claimed.issue_key},
    )


def _send_claimed(
    store: Store,
    transport: Transport,
    cfg: Delivery,
    claimed: Claimed,
    batch: Batch,
    sleep: Callable[[float], None],
    following: Callable[[], Ready | None] | None = None,
) -> Ready | None:
    """Send a batch handed over and record its outcome. ``following`` gives the next batch when
    it is already built: it is then handed over in the same transaction as this one's finish,
    and returned for the caller to send next (None: the caller takes and hands over the next)."""
    try:
        result = deliver_batch(transport, batch, cfg, sleep)
    except AuthError:
        store.ledger.release(claimed)  # nothing went out: the recipients wait for a working key
        raise
    except BaseException as exc:  # interrupted mid-request: it may have gone out
        store.ledger.finish(
            claimed, {r.delivery_id: (DeliveryStatus.UNKNOWN, f"interrupted: {exc!r}") for r in batch.recipients}
        )
        raise
    after = following() if following and not result.fatal else None
    if after is None:
        status = store.ledger.finish(claimed, result.outcomes, result.provider_id)
    else:
        try:
            status, ours = store.ledger.finish_and_hand_over(claimed, result.outcomes, result.provider_id, after[0])
        except BaseException:
            store.ledger.release(after[0])  # taken from the preparer: nobody else gives it back
            raise
        if not ours:
            _taken_back(after[0])
            after = None
    log.info(
        "batch %d (%d recipient(s)): %s",
        claimed.id,
        len(claimed.recipients),
        status,
        extra={"issue": claimed.issue_key},
    )
    if result.fatal:
        raise AuthError(result.fatal)
    return after


def send_test(
    settings: Settings, transport: Transport, variant: Rendered, key: str, addresses: Iterable[str]
) -> Result:
    """Test copies: the subject marked [TEST], links without a token, nothing recorded."""
    values = preview_values(settings)
    recipients = tuple(
        Recipient(i, 0, address, {**values, "email": address}) for i, address in enumerate(addresses, start=1)
    )
    batch = Batch(key, variant, recipients, test=True)
    result = deliver_batch(transport, batch, settings.delivery)
    problems = [
        f"{r.email}: {result.outcomes[r.delivery_id][1]}"
        for r in recipients
        if result.outcomes.get(r.delivery_id, ("failed",))[0] != "submitted"
    ]
    if problems:
        raise RejectedError("test copy not sent to " + "; ".join(problems))
    return result
