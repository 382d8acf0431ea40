"""Queueing an issue: one delivery for every active subscriber who has none yet.

Queueing is idempotent (the ledger keeps one delivery per subscriber and issue), so it can be
done at any time, twice, or by two workers at once: nobody is queued twice.

On PostgreSQL a send queues in pieces, a range of subscriber ids at a time, in a thread of its
own (``Queuer``), while the first batches are already claimed and sent: there every queued row's
foreign keys are checked, row by row, and a million readers took about 19 s to queue in one
statement, all of it before the first batch could go out. On SQLite (one writer) a send queues
everyone at once, first.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from digest.config import Settings
from digest.delivery.variants import Variants
from digest.store import Store

Choice = tuple[str, ...]  # a subscriber's choice of sections; () when none was chosen

# Subscriber ids queued per transaction, by database. PostgreSQL's claims do not wait for a
# piece (they lock other rows). SQLite is left out: with one writer, pieces queued beside the
# claims only take turns with them (measured: no faster), and the queueing thread's connection
# kept its own page cache, 2 to 4 MB more at the peak; there everyone is queued at once, first.
SPAN = {"postgresql": 50_000}


def enqueue(store: Store, settings: Settings, key: str) -> int:
    """Queue every active subscriber not yet queued for the issue, in one transaction, with the
    variant their choice of sections calls for (rendered and stored now if it is new); returns
    how many were queued.

    Data flows one way: the ledger names the choices still to queue, this layer decides their
    variants, and the ledger inserts the deliveries from that plain mapping.
    """
    waiting = store.ledger.waiting(key)
    return store.ledger.enqueue(key, _variants(store, settings, key, waiting), waiting=waiting)


def _variants(store: Store, settings: Settings, key: str, waiting: Mapping[str, int]) -> dict[Choice, str | None]:
    """The variant (or None: no article in it) for each choice of sections still ``waiting``."""
    variant_of = Variants(store, settings, key)
    choices = {store.ledger.choice(text) for text in waiting}
    return {choice: variant_of(choice) for choice in sorted(choices)}


class Queuer:
    """Queues an issue's waiting subscribers: a range of ids at a time in a thread of its own
    where ``SPAN`` gives a size for the database, else all at once as it starts.

    The choices of sections still waiting, and their variants, are read and decided once, when
    it starts (``waiting`` says how many subscribers that is). The ranges cover the subscriber
    ids as they are at the start: someone who subscribes during the send is queued by the next
    send, as they would have been when the whole issue was queued at once.

    ``more_since`` tells a claimer that found nothing pending whether waiting can help.
    """

    def __init__(self, store: Store, settings: Settings, key: str) -> None:
        self._store, self._key = store, key
        self._waiting = store.ledger.waiting(key)
        self.waiting = sum(self._waiting.values())
        self._variants = _variants(store, settings, key, self._waiting)
        self.queued = 0
        self._pieces = 0  # ranges queued so far
        self._done = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._ranges: list[tuple[int, int]] = []
        span = SPAN.get(store.ledger.dialect)
        if not self._waiting:
            self._done = True
        elif span is None:  # everyone at once, before the first claim
            self.queued = store.ledger.enqueue(key, self._variants, waiting=self._waiting)
            self._done = True
        else:
            self._ranges = store.ledger.id_ranges(span)
            self._thread = threading.Thread(target=self._run, name="digest-queue", daemon=True)
            self._thread.start()

    @property
    def pieces(self) -> int:
        """How many ranges are queued so far: read it before a claim, pass it to ``more_since``."""
        with self._changed:
            return self._pieces

    def more_since(self, pieces: int) -> bool:
        """After a claim found nothing pending: wait until a range is queued after ``pieces``
        were (True: claim again), or until all are (False: the queue is empty for good). An
        error met while queueing is raised here."""
        with self._changed:
            self._changed.wait_for(lambda: self._pieces > pieces or self._done)
            if self._error is not None:
                raise self._error
            return self._pieces > pieces

    def close(self) -> int:
        """Stop after the range being queued and wait for it; returns how many were queued."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join()
        return self.queued

    def _run(self) -> None:
        try:
            for ids in self._ranges:
                if self._closing.is_set():
                    break
                added = self._store.ledger.enqueue(self._key, self._variants, ids=ids, waiting=self._waiting)
                with self._changed:
                    self.queued += added
                    self._pieces += 1
                    self._changed.notify_all()
        except BaseException as exc:  # raised by ``more_since`` in the claiming thread
            self._error = exc
        finally:
            with self._changed:
                self._done = True
                self._changed.notify_all()
