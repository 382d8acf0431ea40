"""The delivery ledger: one row per (issue, subscriber), walked in claimed batches.

Everything that must hold when processes crash or run twice is decided here, in transactions:

- one delivery row per (issue, subscriber), so queueing an issue twice adds only newcomers;
- a batch is claimed (its deliveries moved to ``submitting`` under a row lock) and committed
  *before* it is handed to a transport, so a crash leaves evidence instead of a silent gap;
- a batch still ``submitting`` whose process is gone is ``unknown``: reported, never re-sent on
  its own. What a transport can prove about an unknown delivery afterwards (``settle``) turns it
  ``submitted`` or back to ``pending``; the rest wait for the operator (``resend_unknown``).

Locks: on PostgreSQL, ``FOR UPDATE SKIP LOCKED`` lets two senders claim disjoint batches; on
SQLite every transaction is ``BEGIN IMMEDIATE``, so claims are serialised by the database file.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from digest.errors import StoreError
from digest.models import BatchStatus, DeliveryStatus, SubscriberStatus
from digest.store.engine import Repository, alive, chunks, claimer_id, utcnow
from digest.store.schema import CLAIMABLE, batches, deliveries, issues, subscribers

NO_ARTICLE = "no article in the chosen sections this week"


@dataclass(frozen=True, slots=True)
class Claimed:
    """A batch claimed by this process: committed as ``submitting`` before any send."""

    id: int
    issue_key: str
    variant: str
    recipients: tuple[tuple[int, int, str, str], ...]  # (delivery id, subscriber id, email, name)


@dataclass
class ClaimCursor:
    """Where one send's claims search next: in each variant, after the last delivery it claimed
    there, starting at the variant its last claim found. The claim index also holds the
    deliveries claimed before (migration 0010), so a send that searched from the start each
    time would walk over all its own claims again.

    ``restart`` once deliveries may have been queued in a variant already passed (a send's next
    range of subscribers): the next claim looks again from the first variant, each from where
    this send left it. Deliveries put back behind a position (another worker's released batch)
    are found by a new cursor, which searches every variant from its start.
    """

    positions: dict[str, int] = field(default_factory=dict)  # variant: the last delivery id claimed
    variant: str | None = None  # where the next search starts; None: at the first variant

    def restart(self) -> None:
        self.variant = None

    def moved(self, claimed: Claimed) -> None:
        """After ``claimed``: on in its variant (whose ids a claim takes in ascending order)."""
        self.variant = claimed.variant
        self.positions[claimed.variant] = claimed.recipients[-1][0]


@dataclass(frozen=True, slots=True)
class Problem:
    email: str
    status: DeliveryStatus
    error: str


class Ledger(Repository):
    """Deliveries queued, claimed in batches, finished, released, reaped, settled and retried."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        # SQLite has one writer. A send's two threads (one claims the next batch while the other
        # hands one over and finishes it) take turns here, handed over at once, rather than in
        # SQLite's busy handler, which sleeps in steps of milliseconds. PostgreSQL locks rows.
        self._turn: AbstractContextManager[Any] = threading.Lock() if self.dialect == "sqlite" else nullcontext()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction of the send loop, after this process's other writers."""
        with self._turn, self.engine.begin() as conn:
            yield conn

    # --- queueing ----------------------------------------------------------------------------

    def choices_to_queue(self, key: str) -> set[tuple[str, ...]]:
        """The distinct choices of sections (``()``: none chosen) among active subscribers who
        have no delivery for this issue yet: what ``enqueue`` needs a variant for."""
        return {_choice(text) for text in self.waiting(key)}

    def waiting(self, key: str) -> dict[str, int]:
        """How many active subscribers have no delivery for the issue yet, by their choice of
        sections as the database's JSON text (what ``enqueue`` takes as ``waiting``)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_SECTIONS, sa.func.count()).where(_waiting(key)).group_by(_SECTIONS))
            return {text: int(n) for text, n in rows}

    @staticmethod
    def choice(text: str) -> tuple[str, ...]:
        """A choice of sections from the database's JSON text of it (a key of ``waiting``)."""
        return _choice(text)

    def id_ranges(self, span: int) -> list[tuple[int, int]]:
        """Subscriber ids from the lowest to the highest now, as ranges (first, last) of ``span``
        ids each: the pieces ``enqueue`` can queue one transaction at a time."""
        with self.engine.connect() as conn:
            low, high = conn.execute(sa.select(sa.func.min(subscribers.c.id), sa.func.max(subscribers.c.id))).one()
        if low is None:
            return []
        return [(first, min(first + span - 1, high)) for first in range(low, high + 1, span)]

    def enqueue(
        self,
        key: str,
        variants: Mapping[tuple[str, ...], str | None],
        *,
        ids: tuple[int, int] | None = None,
        waiting: Iterable[str] | None = None,
    ) -> int:
        """A delivery for every active subscriber who has none for this issue yet (returns how many).

        ``variants`` maps each choice of sections (from ``choices_to_queue``) to the variant that
        subscriber gets, or None when that variant has no article this week: the delivery is then
        recorded as skipped, so nobody is sent an empty email. A subscriber whose choice is not
        in the mapping (it changed a moment ago) is left for the next ``enqueue``. Everyone is
        queued by one INSERT .. SELECT whose variant, status and error follow the subscriber's
        choice: no subscriber passes through Python, so memory stays flat at a million readers
        however many variants there are.

        ``ids`` (first, last) queues only the subscribers in that range of ids, so a large list
        can be queued in pieces while its first batches go out; ``waiting`` is the choices as
        ``waiting`` gave them, read once for all the pieces instead of once a piece.
        """
        now = utcnow()
        # The choices as the database writes them, read before the write transaction: on SQLite
        # that transaction holds the database's only write lock.
        texts = self.waiting(key) if waiting is None else waiting
        by_text = {text: variants[_choice(text)] for text in texts if _choice(text) in variants}
        if not by_text:
            return 0
        # The rows this INSERT added, as both drivers report them (sqlite3's changes, psycopg's
        # command tag; SQLAlchemy keeps an INSERT's only when asked), not counted before and
        # after: on PostgreSQL another worker's rows, committed in between, would count as this
        # one's. RETURNING would bring every new id into memory.
        insert = _queue_by_choice(self.insert(deliveries), key, by_text, now, ids)
        with self._write() as conn:
            return int(conn.execute(insert, execution_options={"preserve_rowcount": True}).rowcount)

    # --- claiming and finishing batches ------------------------------------------------------

    def claim(
        self, key: str, size: int, transport: str, *, handed_over: bool = True, cursor: ClaimCursor | None = None
    ) -> Claimed | None:
        """Claim up to ``size`` pending deliveries of one variant as a new ``submitting`` batch.

        The search walks the claim index in (variant, id) order: from the start, or where
        ``cursor`` (a send's own, moved on by each claim) says.

        Deliveries whose subscriber is no longer active are marked ``skipped`` instead: an
        unsubscribe that lands before the batch is claimed is honoured, and so is a subscriber
        forgotten while their delivery was being queued (no foreign key stops that: migration
        0009), whose delivery is left without a subscriber. A batch claimed ahead
        (``handed_over=False``) must be passed to ``hand_over`` just before it goes out; until
        then a crash returns it to pending (``reap_orphans``).
        """
        now = utcnow()
        d = deliveries
        locking = self.dialect == "postgresql"
        with self._write() as conn:
            if locking:
                conn.exec_driver_sql(IN_INDEX_ORDER)
            while True:
                rows = _search(conn, claim_query(key, size, locking=locking), key, cursor)
                if not rows:
                    return None
                variant, live, gone = _partition(rows)
                for among in _id_in(conn, d.c.id, gone):
                    conn.execute(
                        d.update()
                        .where(among)
                        .values(status=DeliveryStatus.SKIPPED, error="unsubscribed before sending", updated_at=now)
                    )
                if live:
                    break
            batch_id = _open_batch(conn, key, variant, transport, len(live), now, handed_over=handed_over)
            _mark_claimed(conn, key, variant, [r[0] for r in live], batch_id, now)
        claimed = Claimed(batch_id, key, variant, tuple(live))
        if cursor is not None:
            cursor.moved(claimed)
        return claimed

    def claim_one(self, key: str, subscriber_id: int, variant: str | None, transport: str) -> Claimed | None:
        """Queue issue ``key`` for one active subscriber and claim it at once as a batch of one
        (a new reader's welcome copy); None when they already have a delivery of this issue (so
        nobody gets an issue twice) or are not active. A ``variant`` of None (no article in their
        sections) records the delivery as skipped and claims nothing."""
        now = utcnow()
        with self.engine.begin() as conn:
            person = conn.execute(
                sa.select(subscribers.c.email, subscribers.c.name).where(
                    subscribers.c.id == subscriber_id,
                    subscribers.c.status == SubscriberStatus.ACTIVE,
                    _recorded(key),
                )
            ).first()
            if person is None:
                return None
            delivery_id = conn.execute(
                self.insert(deliveries)
                .values(subscriber_id=subscriber_id, **_delivery(key, variant, now))
                .on_conflict_do_nothing()
                .returning(deliveries.c.id)
            ).scalar()
            if delivery_id is None or variant is None:
                return None
            batch_id = _open_batch(conn, key, variant, transport, 1, now)
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id == delivery_id)
                .values(status=DeliveryStatus.SUBMITTING, batch_id=batch_id)
            )
        return Claimed(batch_id, key, variant, ((delivery_id, subscriber_id, person.email, person.name),))

    def finish(self, batch: Claimed, outcomes: Mapping[int, tuple[str, str]], provider_id: str = "") -> BatchStatus:
        """Record what the transport said for each delivery id: (status, error). Returns the
        batch's status: the worst of its recipients' (unknown, then failed, then submitted)."""
        with self._write() as conn:
            return _finish(conn, batch, outcomes, provider_id)

    def finish_and_hand_over(
        self, batch: Claimed, outcomes: Mapping[int, tuple[str, str]], provider_id: str, following: Claimed
    ) -> tuple[BatchStatus, bool]:
        """``finish`` one batch and ``hand_over`` the one claimed ahead after it, in one
        transaction: one commit per batch sent instead of two. Returns the finished batch's status
        and whether the following one is this process's to send."""
        with self._write() as conn:
            return _finish(conn, batch, outcomes, provider_id), _hand_over(conn, following)

    def hand_over(self, batch: Claimed) -> bool:
        """Commit that a batch claimed ahead is now going to the transport: from here on a crash
        leaves it ``unknown``. Its lease starts again now. False when it is no longer this
        process's to send (reaped or released meanwhile): then it must not go out."""
        with self._write() as conn:
            return _hand_over(conn, batch)

    def release(self, batch: Claimed) -> None:
        """Give a claimed batch back untouched (nothing of it went out: the send was refused, or
        it was claimed ahead and the send stopped before handing it over)."""
        with self._write() as conn:
            _put_back(conn, [batch.id], _in_batch(batch), utcnow())

    # --- after a crash: orphans, settling, retrying ------------------------------------------

    def reap_orphans(self, key: str, *, lease: timedelta) -> int:
        """Batches left ``submitting`` by a process that is gone become ``unknown`` (never re-sent)
        and are counted; those it had claimed ahead and never handed over go back to pending,
        since nothing of them went out. A claim by a live process, or by one on another host
        within its lease, is left alone."""
        now = utcnow()
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(batches.c.id, batches.c.claimed_by, batches.c.claimed_at, batches.c.handed_over).where(
                    batches.c.issue_key == key, batches.c.status == BatchStatus.SUBMITTING
                )
            ).all()
            dead = [r for r in rows if not alive(r.claimed_by, lease, r.claimed_at, now)]
            unsent = [r.id for r in dead if not r.handed_over]
            for chunk in chunks(unsent):
                _put_back(conn, chunk, _of_batches(key, chunk), now)
            orphaned = [r.id for r in dead if r.handed_over]
            for chunk in chunks(orphaned):
                _mark_unknown(conn, key, chunk, "the sending process stopped during this batch", now)
        return len(orphaned)

    def orphans(self, key: str, transport: str) -> list[tuple[int, int, str, int]]:
        """The issue's ``unknown`` deliveries whose last batch went through ``transport``, as
        (delivery id, subscriber id, email, batch id): what that transport may be able to settle."""
        d, s = deliveries, subscribers
        query = (
            sa.select(d.c.id, d.c.subscriber_id, s.c.email, d.c.batch_id)
            .join(s, s.c.id == d.c.subscriber_id)
            .join(batches, batches.c.id == d.c.batch_id)
            .where(d.c.issue_key == key, d.c.status == DeliveryStatus.UNKNOWN, batches.c.transport == transport)
            .order_by(d.c.id)
        )
        with self.engine.connect() as conn:
            return [(r.id, r.subscriber_id, r.email, r.batch_id) for r in conn.execute(query)]

    def settle(self, resolved: Mapping[int, str]) -> tuple[int, int]:
        """Record what a transport proved about unknown deliveries, by id: ``submitted`` ones were
        sent; ``unsent`` ones never were, so they go back to ``pending`` (out again in this run).
        Returns (submitted, queued again). Only rows still ``unknown`` change, so two processes
        settling at once cannot undo what the other did since. Batches keep their status: history.
        """
        now = utcnow()
        changes = {
            "submitted": {"status": DeliveryStatus.SUBMITTED, "error": None, "updated_at": now},
            "unsent": {"status": DeliveryStatus.PENDING, "batch_id": None, "error": None, "updated_at": now},
        }
        counts = {"submitted": 0, "unsent": 0}
        with self.engine.begin() as conn:
            for settlement, values in changes.items():
                ids = [did for did, s in resolved.items() if s == settlement]
                for chunk in chunks(ids):
                    counts[settlement] += conn.execute(
                        deliveries.update()
                        .where(deliveries.c.id.in_(chunk), deliveries.c.status == DeliveryStatus.UNKNOWN)
                        .values(**values)
                    ).rowcount
        return counts["submitted"], counts["unsent"]

    def resend_unknown(self, key: str) -> int:
        """Queue the issue's unknown deliveries again: the operator's decision, since some of them
        may have arrived and will then arrive twice. Their batches become ``retried``."""
        unknown = (deliveries.c.issue_key == key) & (deliveries.c.status == DeliveryStatus.UNKNOWN)
        with self.engine.begin() as conn:
            batch_ids = conn.execute(sa.select(deliveries.c.batch_id).where(unknown).distinct()).scalars().all()
            count = conn.execute(
                deliveries.update()
                .where(unknown)
                .values(status=DeliveryStatus.PENDING, batch_id=None, error=None, updated_at=utcnow())
            ).rowcount
            for chunk in chunks([b for b in batch_ids if b is not None]):
                conn.execute(
                    batches.update()
                    .where(batches.c.id.in_(chunk), batches.c.status == BatchStatus.UNKNOWN)
                    .values(status=BatchStatus.RETRIED)
                )
        return count

    def retry_failed(self, key: str) -> int:
        """Put the issue's failed recipients back in the queue; failed batches become ``retried``.

        Recipients, not batches: an SMTP batch is ``unknown`` as a whole when one message was lost
        after its data, yet the recipients it then could not send are ``failed`` and retryable.
        """
        with self.engine.begin() as conn:
            count = conn.execute(
                deliveries.update()
                .where(deliveries.c.issue_key == key, deliveries.c.status == DeliveryStatus.FAILED)
                .values(status=DeliveryStatus.PENDING, batch_id=None, error=None, updated_at=utcnow())
            ).rowcount
            conn.execute(
                batches.update()
                .where(batches.c.issue_key == key, batches.c.status == BatchStatus.FAILED)
                .values(status=BatchStatus.RETRIED)
            )
        return count

    # --- reports -----------------------------------------------------------------------------

    def counts(self, key: str) -> dict[str, int]:
        """How many of the issue's deliveries are in each state."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(deliveries.c.status, sa.func.count())
                .where(deliveries.c.issue_key == key)
                .group_by(deliveries.c.status)
            )
            return {status: n for status, n in rows}

    def counts_by_variant(self, key: str) -> dict[str, dict[str, int]]:
        """How many of the issue's deliveries are in each state, per variant."""
        found: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for variant, status, n in conn.execute(
                sa.select(deliveries.c.variant, deliveries.c.status, sa.func.count())
                .where(deliveries.c.issue_key == key)
                .group_by(deliveries.c.variant, deliveries.c.status)
            ):
                found.setdefault(variant, {})[status] = n
        return found

    def problems(self, key: str, limit: int | None = None) -> list[Problem]:
        """Failed and unknown recipients of an issue, for ``digest status``."""
        query = (
            sa.select(subscribers.c.email, deliveries.c.status, deliveries.c.error)
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(
                deliveries.c.issue_key == key,
                deliveries.c.status.in_((DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN)),
            )
            .order_by(deliveries.c.status, subscribers.c.email)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [Problem(r.email, DeliveryStatus(r.status), r.error or "") for r in conn.execute(query)]


# For a claim's transaction on PostgreSQL: walk the claim index in order and stop at the batch's
# last row. Its planner, with no statistics for a table filled a moment before (or statistics
# from before the send), estimated that few rows match and chose to fetch every pending delivery
# after the cursor's position and sort them: a million-reader send took a second a claim. Only
# the claim's own transaction is changed (SET LOCAL), and the index walk is the only plan left.
IN_INDEX_ORDER = "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off"


def claim_query(key: str, size: int, *, locking: bool) -> sa.Select[Any]:
    """The next ``size`` claimable deliveries of issue ``key`` in the claim index's order, with
    their subscribers (``_search`` narrows it to a variant and a position). ``locking``
    (PostgreSQL) locks them, skipping those another claim holds. A recipient's four fields come
    first: ``row[:4]`` is what ``Claimed`` holds of them."""
    d, s = deliveries, subscribers
    query = (
        sa.select(d.c.id, d.c.subscriber_id, s.c.email, s.c.name, d.c.variant, s.c.status)
        .outerjoin(s, s.c.id == d.c.subscriber_id)
        .where(d.c.issue_key == key, d.c.status == DeliveryStatus.PENDING, CLAIMABLE)
        .order_by(d.c.variant, d.c.id)
        .limit(size)
    )
    return query.with_for_update(skip_locked=True, of=d) if locking else query


def next_variant(key: str, after: str | None) -> sa.Select[Any]:
    """The first variant of issue ``key``'s deliveries (the first after ``after``, when given):
    a step along the claim index."""
    d = deliveries
    query = sa.select(d.c.variant).where(d.c.issue_key == key).order_by(d.c.variant).limit(1)
    return query if after is None else query.where(d.c.variant > after)


# A subscriber's choice of sections as the database's JSON text: "[]" when none was chosen.
_SECTIONS = sa.cast(subscribers.c.sections, sa.Text)


def _waiting(key: str) -> sa.ColumnElement[bool]:
    """Active subscribers with no delivery for the issue yet.

    For reads only: inside the INSERT .. SELECT, a NOT EXISTS against the table being filled,
    with planner statistics still saying it is empty, made PostgreSQL choose a nested loop that
    turned the insert quadratic. There the unique (issue, subscriber) index answers ON CONFLICT.
    """
    queued = sa.exists().where(deliveries.c.issue_key == key, deliveries.c.subscriber_id == subscribers.c.id)
    return (subscribers.c.status == SubscriberStatus.ACTIVE) & ~queued


def _delivery(key: str, variant: str | None, now: datetime) -> dict[str, Any]:
    """A new delivery of the issue (but its subscriber): pending, or skipped when its variant
    has no article this week. Plain strings: bound as literals in the INSERT .. SELECT."""
    pending = variant is not None
    return {
        "issue_key": key,
        "variant": variant if pending else "none",
        "status": (DeliveryStatus.PENDING if pending else DeliveryStatus.SKIPPED).value,
        "updated_at": now,
        "error": None if pending else NO_ARTICLE,
    }


def _queue_by_choice(
    insert: Any, key: str, variant_of: Mapping[str, str | None], now: datetime, ids: tuple[int, int] | None
) -> Any:
    """One INSERT .. SELECT of a delivery for every active subscriber whose choice of sections
    (as JSON text) is in ``variant_of`` (and whose id is in ``ids``, first to last, when given):
    variant, status and error are a CASE on that text."""
    rows = {text: _delivery(key, variant, now) for text, variant in variant_of.items()}

    def by_choice(column: str) -> Any:
        values = {text: row[column] for text, row in rows.items()}
        if len(set(values.values())) == 1:  # the same for everyone (one variant, most often)
            value = next(iter(values.values()))
            return sa.literal(value) if value is not None else sa.null()
        return sa.case(
            {text: sa.literal(v) if v is not None else sa.null() for text, v in values.items()}, value=_SECTIONS
        )

    columns = ["issue_key", "subscriber_id", "variant", "status", "updated_at", "error"]
    everyone = sa.select(
        sa.literal(key),
        subscribers.c.id,
        by_choice("variant"),
        by_choice("status"),
        sa.literal(now),
        by_choice("error"),
    ).where(subscribers.c.status == SubscriberStatus.ACTIVE, _SECTIONS.in_(sorted(rows)))
    if ids is not None:
        everyone = everyone.where(subscribers.c.id.between(*ids))
    return insert.from_select(columns, everyone.where(_recorded(key))).on_conflict_do_nothing()


def _recorded(key: str) -> sa.ColumnElement[bool]:
    """Whether issue ``key`` is recorded: nothing is queued for any other (deliveries have no
    foreign key to say so, migration 0009). Evaluated once per statement, not per row."""
    return sa.exists().where(issues.c.key == key)


def _choice(text: str) -> tuple[str, ...]:
    """A choice of sections from the database's JSON text of it."""
    return tuple(json.loads(text))


def _search(conn: Connection, query: sa.Select[Any], key: str, cursor: ClaimCursor | None) -> Sequence[sa.Row[Any]]:
    """A claim's rows (``query``, from ``claim_query``): from the start, or variant by variant
    from the cursor's, each after the cursor's position in it. Each search is a range of the
    claim index on both databases: SQLite bounds one by a row value ``(variant, id) > (?, ?)``
    on its first column only, so it walked every claimed row of the variant."""
    if cursor is None:
        return conn.execute(query).all()
    d = deliveries
    variant = cursor.variant if cursor.variant is not None else conn.execute(next_variant(key, None)).scalar()
    while variant is not None:
        if rows := conn.execute(query.where(d.c.variant == variant, d.c.id > cursor.positions.get(variant, 0))).all():
            return rows
        variant = conn.execute(next_variant(key, variant)).scalar()
    return []


def _partition(rows: Sequence[Sequence[Any]]) -> tuple[str, list[tuple[int, int, str, str]], list[int]]:
    """A claim's rows (delivery id, subscriber id, email, name, variant, subscriber status) as
    the first row's variant, that variant's active recipients, and the delivery ids of its
    recipients no longer active. One pass, by position: 1,000 rows a batch."""
    variant = rows[0][4]
    active = SubscriberStatus.ACTIVE.value  # a plain str: compared for every row
    live: list[tuple[int, int, str, str]] = []
    gone: list[int] = []
    for delivery_id, subscriber_id, email, name, row_variant, status in rows:
        if row_variant != variant:
            continue
        if status == active:
            live.append((delivery_id, subscriber_id, email, name))
        else:
            gone.append(delivery_id)
    return variant, live, gone


def _mark_claimed(conn: Connection, key: str, variant: str, ids: Sequence[int], batch_id: int, now: datetime) -> None:
    """Put the claimed deliveries ``ids`` (ascending) in batch ``batch_id`` as ``submitting``.

    On SQLite the claim holds the database's one write lock from its SELECT to here, so the
    claimable deliveries of ``variant`` between the first id and the last are exactly those
    ids (the others in the range were just marked skipped, and nobody else can write): one
    statement with five values, where a list of the ids took two statements of 500 values each,
    about 4 ms of a batch's 17 to bind. A count that differs would mean that reasoning broke:
    the transaction is rolled back rather than claim what was not chosen. On PostgreSQL other
    workers' claims (SKIP LOCKED) may sit in the range: there the ids themselves are named.
    """
    d = deliveries
    values = {"status": DeliveryStatus.SUBMITTING, "batch_id": batch_id, "updated_at": now}
    if conn.dialect.name != "sqlite":
        for among in _id_in(conn, d.c.id, ids):
            conn.execute(d.update().where(among).values(**values))
        return
    marked = conn.execute(
        d.update()
        .where(
            d.c.issue_key == key,
            d.c.variant == variant,
            d.c.status == DeliveryStatus.PENDING,
            CLAIMABLE,
            d.c.id.between(ids[0], ids[-1]),
        )
        .values(**values)
    ).rowcount
    if marked != len(ids):
        raise StoreError(f"claim of {len(ids)} deliveries of {key} marked {marked}: nothing was claimed")


def _worst(statuses: set[str]) -> BatchStatus:
    """A batch's status from its recipients': unknown, then failed, then submitted."""
    for status in (BatchStatus.UNKNOWN, BatchStatus.FAILED):
        if status in statuses:
            return status
    return BatchStatus.SUBMITTED


def _id_in(conn: Connection, column: sa.ColumnElement[int], ids: Sequence[int]) -> Iterator[sa.ColumnElement[bool]]:
    """Conditions that together pick the rows whose ``column`` is one of ``ids``: one array
    parameter on PostgreSQL (a claim's 1,000 bound values cost about 12 ms of Python to render
    and parse), lists of at most ``chunks`` values on SQLite, which bounds a statement's."""
    if not ids:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY  # only here: a SQLite process never loads it

        yield column == sa.any_(sa.bindparam("ids", list(ids), type_=ARRAY(sa.Integer)))
        return
    for chunk in chunks(ids):
        yield column.in_(chunk)


def _finish(conn: Connection, batch: Claimed, outcomes: Mapping[int, tuple[str, str]], provider_id: str) -> BatchStatus:
    """Each delivery's outcome, one UPDATE per distinct (status, error), and the batch's own.

    Most batches have one outcome for everyone (all submitted): then the batch's deliveries are
    updated by their batch id, and nobody's id is named or even grouped."""
    now = utcnow()
    distinct = set(outcomes.values())
    overall = _worst({status for status, _ in distinct})
    errors = sorted({e for (_, e) in distinct if e})
    if len(distinct) == 1:
        ((status, error),) = distinct
        conn.execute(
            deliveries.update().where(_in_batch(batch)).values(status=status, error=error or None, updated_at=now)
        )
    else:
        by_status: dict[tuple[str, str], list[int]] = {}
        for delivery_id, outcome in outcomes.items():
            by_status.setdefault(outcome, []).append(delivery_id)
        for (status, error), ids in by_status.items():
            for among in _id_in(conn, deliveries.c.id, ids):
                conn.execute(
                    deliveries.update().where(among).values(status=status, error=error or None, updated_at=now)
                )
    conn.execute(
        batches.update()
        .where(batches.c.id == batch.id)
        .values(
            status=overall, finished_at=now, provider_id=provider_id or None, error="; ".join(errors)[:2000] or None
        )
    )
    return overall


def _hand_over(conn: Connection, batch: Claimed) -> bool:
    """Mark a batch claimed ahead by this process as handed over; False when it no longer is."""
    changed = conn.execute(
        batches.update()
        .where(
            batches.c.id == batch.id,
            batches.c.status == BatchStatus.SUBMITTING,
            batches.c.handed_over.is_(False),
            batches.c.claimed_by == claimer_id(),
        )
        .values(handed_over=True, claimed_at=utcnow())
    ).rowcount
    return changed == 1


def _mark_unknown(conn: Connection, key: str, ids: Sequence[int], error: str, now: datetime) -> None:
    """Batches of issue ``key`` (and their deliveries still in flight) whose outcome nobody can
    tell any more."""
    conn.execute(
        batches.update().where(batches.c.id.in_(ids)).values(status=BatchStatus.UNKNOWN, error=error, finished_at=now)
    )
    conn.execute(
        deliveries.update()
        .where(_of_batches(key, ids), deliveries.c.status == DeliveryStatus.SUBMITTING)
        .values(status=DeliveryStatus.UNKNOWN, error=error, updated_at=now)
    )


def _put_back(conn: Connection, ids: Sequence[int], rows: sa.ColumnElement[bool], now: datetime) -> None:
    """Batches ``ids`` none of which went out, whose deliveries ``rows`` picks: those are pending
    again, the batches gone.

    A delivery of theirs that is no longer in flight keeps its status but loses the batch, which
    no longer exists (``batch_id`` has no foreign key to do it: migration 0009)."""
    conn.execute(
        deliveries.update()
        .where(rows, deliveries.c.status == DeliveryStatus.SUBMITTING)
        .values(status=DeliveryStatus.PENDING, batch_id=None, error=None, updated_at=now)
    )
    conn.execute(deliveries.update().where(rows).values(batch_id=None))
    conn.execute(batches.delete().where(batches.c.id.in_(ids)))


def _in_batch(batch: Claimed) -> sa.ColumnElement[bool]:
    """The deliveries of a batch this process claimed, found through the claim index (``batch_id``
    has none, migration 0010): they are one variant's, between its first id and its last; other
    batches' deliveries in that range are told apart by their batch id."""
    ids = [recipient[0] for recipient in batch.recipients]
    d = deliveries
    return (
        (d.c.issue_key == batch.issue_key)
        & (d.c.variant == batch.variant)
        & d.c.id.between(min(ids), max(ids))
        & (d.c.batch_id == batch.id)
    )


def _of_batches(key: str, ids: Sequence[int]) -> sa.ColumnElement[bool]:
    """The deliveries of issue ``key``'s batches ``ids``, whose ranges are not known (after a
    crash): found among all the issue's deliveries, as ``batch_id`` has no index (migration 0010)."""
    return (deliveries.c.issue_key == key) & deliveries.c.batch_id.in_(ids)


def _open_batch(
    conn: Connection, key: str, variant: str, transport: str, size: int, now: datetime, *, handed_over: bool = True
) -> int:
    """Record a batch as claimed by this process (``submitting``) before anything of it is handed
    to ``transport``: the row a crash leaves behind is what makes it an orphan (or, not yet
    ``handed_over``, a batch to put back)."""
    return int(
        conn.execute(
            batches.insert()
            .values(
                issue_key=key,
                variant=variant,
                status=BatchStatus.SUBMITTING,
                transport=transport,
                size=size,
                claimed_by=claimer_id(),
                claimed_at=now,
                handed_over=handed_over,
            )
            .returning(batches.c.id)
        ).scalar_one()
    )
