"""Queueing an issue in pieces (``delivery.queueing``) while its first batches go out, on SQLite
and PostgreSQL: everyone is queued and sent exactly once, whatever the pieces and whenever
queueing stops or fails."""

from __future__ import annotations

import threading
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from digest.config import Settings
from digest.delivery import queueing, runner
from digest.delivery.transports.base import Batch, Result
from digest.delivery.transports.memory import MemoryTransport
from digest.store import Store
from factories import KEY, SIGNER, Sleeps, readers
from factories import ready_to_send as prepare
from factories import settings as base_settings


@pytest.fixture
def pieces_of_three(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queueing, "SPAN", {"sqlite": 3, "postgresql": 3})


def make_settings(tmp_path: Path, batch_size: int) -> Settings:
    return base_settings(tmp_path, delivery={"batch_size": batch_size})


def send(store: Store, settings: Settings, transport: MemoryTransport) -> runner.SendReport:
    return runner.send_pending(store, settings, transport, SIGNER, KEY, sleep=Sleeps())


def received(transport: MemoryTransport) -> Counter[str]:
    return Counter(d.recipient.email for d in transport.delivered)


def everyone(count: int) -> Counter[str]:
    return Counter(r.email for r in readers(count))


def test_ranges_cover_every_subscriber_and_queueing_them_one_by_one_queues_each_once(store):
    store.subscribers.merge(readers(7))
    prepare(store, 0)
    ranges = store.ledger.id_ranges(3)
    ids = sorted(s.id for s in store.subscribers.every())

    assert ranges[0][0] == ids[0] and ranges[-1][1] == ids[-1]
    assert all(later[0] == earlier[1] + 1 for earlier, later in pairwise(ranges))
    waiting = store.ledger.waiting(KEY)
    assert waiting == {"[]": 7}
    added = [store.ledger.enqueue(KEY, {(): "all"}, ids=r, waiting=waiting) for r in ranges]
    assert sum(added) == 7 and all(n <= 3 for n in added)
    assert store.ledger.enqueue(KEY, {(): "all"}) == 0  # the whole list again: nobody new
    assert store.ledger.counts(KEY) == {"pending": 7}


def test_the_first_batches_go_out_before_the_last_piece_is_queued(tmp_path, store, pieces_of_three, monkeypatch):
    prepare(store, 10)
    settings = make_settings(tmp_path, batch_size=2)
    transport = MemoryTransport(settings)
    first_sent = threading.Event()
    last_id = max(s.id for s in store.subscribers.every())
    enqueue, deliver = store.ledger.enqueue, transport.send
    waited: list[bool] = []

    def enqueue_last_piece_after_a_send(key: str, variants: Any, **kw: Any) -> int:
        if kw.get("ids") and kw["ids"][1] == last_id:
            waited.append(first_sent.wait(timeout=10))
        return enqueue(key, variants, **kw)

    def send_and_tell(batch: Batch) -> Result:
        result = deliver(batch)
        first_sent.set()
        return result

    monkeypatch.setattr(store.ledger, "enqueue", enqueue_last_piece_after_a_send)
    monkeypatch.setattr(transport, "send", send_and_tell)

    report = send(store, settings, transport)

    assert waited == [True]  # a batch had gone out while the last piece still waited to be queued
    assert report.enqueued == 10
    assert report.counts == {"submitted": 10}
    assert received(transport) == everyone(10)
    assert store.issues.get(KEY).status == "sent"


def test_an_error_while_queueing_stops_the_send_and_a_rerun_sends_the_rest_once(
    tmp_path, store, pieces_of_three, monkeypatch
):
    prepare(store, 10)
    settings = make_settings(tmp_path, batch_size=2)
    transport = MemoryTransport(settings)
    enqueue = store.ledger.enqueue
    calls: list[int] = []

    def fail_on_the_third_piece(key: str, variants: Any, **kw: Any) -> int:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the database went away")
        return enqueue(key, variants, **kw)

    monkeypatch.setattr(store.ledger, "enqueue", fail_on_the_third_piece)
    with pytest.raises(RuntimeError, match="the database went away"):
        send(store, settings, transport)

    counts = store.ledger.counts(KEY)
    assert "submitting" not in counts  # nothing claimed is left in flight
    assert counts.get("submitted", 0) == sum(received(transport).values()) <= 6
    assert store.issues.get(KEY).status == "sending"

    monkeypatch.setattr(store.ledger, "enqueue", enqueue)
    send(store, settings, transport)
    assert received(transport) == everyone(10)
    assert store.ledger.counts(KEY) == {"submitted": 10}
    assert store.issues.get(KEY).status == "sent"


def test_a_subscriber_already_queued_by_another_worker_is_not_queued_again(tmp_path, store, pieces_of_three):
    prepare(store, 8)
    settings = make_settings(tmp_path, batch_size=3)
    # Another worker queued the whole list a moment before this one started.
    assert queueing.enqueue(store, settings, KEY) == 8
    transport = MemoryTransport(settings)

    report = send(store, settings, transport)

    assert report.enqueued == 0
    assert received(transport) == everyone(8)


def test_on_sqlite_everyone_is_queued_at_once_before_the_first_claim(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'digest.sqlite3'}")  # PostgreSQL queues in pieces: above
    prepare(store, 5)
    queuer = queueing.Queuer(store, make_settings(tmp_path, batch_size=2), KEY)
    assert queuer.queued == 5  # already, with no thread of its own
    assert store.ledger.counts(KEY) == {"pending": 5}
    assert queuer.more_since(queuer.pieces) is False
    assert queuer.close() == 5
    store.close()
