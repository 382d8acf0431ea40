"""The database: subscribers and the delivery ledger, on SQLite or PostgreSQL.

Everything that must hold when processes crash or run twice is decided here, in transactions:

- one delivery row per (issue, subscriber), so recording an issue twice adds only newcomers;
- a batch is claimed (its deliveries moved to ``submitting`` under a row lock) and committed
  *before* it is handed to a transport, so a crash leaves evidence instead of a silent gap;
- a batch still ``submitting`` whose process is gone is ``unknown``: reported, never re-sent on
  its own. What a transport can prove about an unknown delivery afterwards (``settle``) turns it
  ``submitted`` or back to ``pending``; the rest wait for the operator (``resend_unknown``).

Locks: on PostgreSQL, ``FOR UPDATE SKIP LOCKED`` lets two senders claim disjoint batches; on
SQLite every transaction is ``BEGIN IMMEDIATE``, so claims are serialised by the database file.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from digest.errors import StoreError
from digest.store.schema import (
    batches,
    deliveries,
    heartbeats,
    issue_articles,
    issue_edits,
    issues,
    scheduler_runs,
    subscribers,
    variants,
)

SQLITE_BUSY_MS = 30_000
MIGRATION_LOCK = 0x6469676573  # "diges": the PostgreSQL advisory lock held while migrating
_MIGRATING = threading.Lock()
CHUNK = 500  # rows per IN (...) list: well under SQLite's bound-parameter limit


def utcnow() -> datetime:
    return datetime.now(UTC)


def email_key(email: str) -> str:
    """The identity of an address: case-folded whole (providers treat local parts case-blind)."""
    return email.strip().casefold()


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str
    name: str
    status: str
    sections: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class NewSubscriber:
    """A row to merge into the list (from an import or ``subscribers add``)."""

    email: str
    name: str = ""
    sections: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MergeReport:
    added: int
    updated: int
    unchanged: int
    kept_suppressed: tuple[str, ...]
    resubscribed: int


@dataclass(frozen=True, slots=True)
class Claimed:
    """A batch claimed by this process: committed as ``submitting`` before any send."""

    id: int
    issue_key: str
    variant: str
    recipients: tuple[tuple[int, int, str, str], ...]  # (delivery id, subscriber id, email, name)


@dataclass(frozen=True, slots=True)
class IssueRecord:
    key: str
    status: str
    subject: str
    window_start: datetime
    window_end: datetime
    article_count: int
    send_at: datetime | None
    approved_at: datetime | None
    sent_at: datetime | None
    note: str


@dataclass(frozen=True, slots=True)
class Problem:
    email: str
    status: str
    error: str


# A suppression only ever gets stronger: active < unsubscribed < bounced < complained.
_SUPPRESSION_RANK = {"active": 0, "unsubscribed": 1, "bounced": 2, "complained": 3}


def claimer_id() -> str:
    """Who holds a claim: host and process, so a restart on the same host can tell it died."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(claimer: str, lease: timedelta, claimed_at: datetime, now: datetime) -> bool:
    host, _, pid = claimer.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return _aware(claimed_at) + lease > now


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def make_engine(url: str) -> Engine:
    """An engine with the settings each database needs for the ledger's guarantees."""
    try:
        if url.startswith("sqlite"):
            return _sqlite_engine(url)
        return sa.create_engine(url, pool_pre_ping=True)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise StoreError(f"database URL {_redact(url)!r} cannot be used: {exc}") from exc


def _sqlite_engine(url: str) -> Engine:
    path = sa.engine.make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_MS / 1000})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let the "begin" hook below issue BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _immediate(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _redact(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"


class Store:
    """Subscribers and the ledger. Open with ``Store.open(url)``; it migrates the schema first."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    @classmethod
    def open(cls, url: str) -> Store:
        store = cls(make_engine(url))
        try:
            store.upgrade()
        except sa.exc.OperationalError as exc:
            raise StoreError(
                f"cannot open the database {_redact(url)}: {exc.orig}",
                hint="check [store] url or $DIGEST_DATABASE_URL, and that the server is running",
            ) from exc
        return store

    def close(self) -> None:
        self.engine.dispose()

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (the newest by default), keeping the data (Alembic)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(resources.files("digest.store") / "migrations"))
        with _MIGRATING, self.engine.begin() as conn:  # Alembic's API is not thread-safe
            if self.dialect == "postgresql":
                # Two processes opening a new database at once must not both create the tables.
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

    def _insert(self) -> Any:
        return postgresql.insert if self.dialect == "postgresql" else sqlite.insert

    # --- subscribers -----------------------------------------------------------------------

    def merge_subscribers(self, rows: Iterable[NewSubscriber], *, resubscribe: bool = False) -> MergeReport:
        """Add new addresses and update names and sections of known ones, in one transaction.

        A suppressed address (unsubscribed, bounced, complained) stays suppressed unless
        ``resubscribe`` says otherwise: an old list re-imported must never undo an unsubscribe.
        """
        incoming = {email_key(r.email): r for r in rows}
        now = utcnow()
        added = updated = unchanged = resubscribed = 0
        kept: list[str] = []
        with self.engine.begin() as conn:
            existing: dict[str, Any] = {}
            for chunk in _chunks(list(incoming)):
                for row in conn.execute(sa.select(subscribers).where(subscribers.c.email_key.in_(chunk))):
                    existing[row.email_key] = row
            new_rows = []
            for key, r in incoming.items():
                old = existing.get(key)
                if old is None:
                    new_rows.append(
                        {
                            "email": r.email.strip(),
                            "email_key": key,
                            "name": r.name,
                            "status": "active",
                            "sections": list(r.sections),
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
                    continue
                changes: dict[str, Any] = {}
                if old.status != "active":
                    if resubscribe:
                        changes["status"] = "active"
                        resubscribed += 1
                    else:
                        kept.append(old.email)
                if r.name and r.name != old.name:
                    changes["name"] = r.name
                if r.sections and list(r.sections) != list(old.sections or []):
                    changes["sections"] = list(r.sections)
                if changes:
                    changes["updated_at"] = now
                    conn.execute(subscribers.update().where(subscribers.c.id == old.id).values(**changes))
                    updated += 1
                else:
                    unchanged += 1
            if new_rows:
                conn.execute(subscribers.insert(), new_rows)
                added = len(new_rows)
        return MergeReport(added, updated, unchanged, tuple(kept), resubscribed)

    def set_status(self, email: str, status: str) -> bool:
        """Change one subscriber's status (e.g. unsubscribe); False if the address is unknown."""
        with self.engine.begin() as conn:
            result = conn.execute(
                subscribers.update()
                .where(subscribers.c.email_key == email_key(email))
                .values(status=status, updated_at=utcnow())
            )
        return bool(result.rowcount)

    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)).first()
        return _subscriber(row) if row else None

    def suppress(self, subscriber_id: int, status: str) -> bool:
        """Stop all mail to a subscriber at once (one-click unsubscribe, bounce, complaint).

        Idempotent, and it never turns a stronger suppression into a weaker one: a complaint
        stays a complaint if an unsubscribe arrives after it. False if the id is unknown.
        """
        with self.engine.begin() as conn:
            current = conn.execute(sa.select(subscribers.c.status).where(subscribers.c.id == subscriber_id)).scalar()
            if current is None:
                return False
            if _SUPPRESSION_RANK[status] > _SUPPRESSION_RANK[current]:
                conn.execute(
                    subscribers.update()
                    .where(subscribers.c.id == subscriber_id)
                    .values(status=status, updated_at=utcnow())
                )
        return True

    def suppress_email(self, email: str, status: str) -> bool:
        """``suppress`` by address (for provider events, which name the address)."""
        found = self.subscriber(email)
        return self.suppress(found.id, status) if found else False

    def set_sections(self, subscriber_id: int, sections: Sequence[str]) -> bool:
        """A subscriber's choice of sections (empty means all): their next issue carries only those."""
        with self.engine.begin() as conn:
            result = conn.execute(
                subscribers.update()
                .where(subscribers.c.id == subscriber_id)
                .values(sections=list(sections), updated_at=utcnow())
            )
        return bool(result.rowcount)

    def forget(self, email: str) -> bool:
        """Delete a subscriber and their delivery history (a request to be forgotten)."""
        with self.engine.begin() as conn:
            result = conn.execute(subscribers.delete().where(subscribers.c.email_key == email_key(email)))
        return bool(result.rowcount)

    def subscribers(self, status: str | None = None) -> Iterator[Subscriber]:
        """Every subscriber (optionally of one status), oldest first, streamed."""
        query = sa.select(subscribers).order_by(subscribers.c.id)
        if status:
            query = query.where(subscribers.c.status == status)
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=1000).execute(query):
                yield _subscriber(row)

    def subscriber(self, email: str) -> Subscriber | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(subscribers).where(subscribers.c.email_key == email_key(email))).first()
        return _subscriber(row) if row else None

    def subscriber_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(subscribers.c.status, sa.func.count()).group_by(subscribers.c.status))
            return {status: n for status, n in rows}

    # --- issues ----------------------------------------------------------------------------

    def record_issue(
        self,
        key: str,
        *,
        subject: str,
        window: tuple[datetime, datetime],
        article_count: int,
        summary: Mapping[str, Any],
        rendered: Mapping[str, tuple[str, str, str]],
        articles: Sequence[str] = (),
        status: str = "sending",
        send_at: datetime | None = None,
    ) -> bool:
        """Store an issue, its variants (subject, html, text) and its article URLs.

        Returns True if this call recorded it. An issue already recorded keeps its snapshot (every
        batch of one issue sends the same content, whichever process sends it), except a draft or
        a skipped issue, which a new build replaces: editors rebuild drafts, and a week skipped
        for a passing reason may be built again.
        """
        now = utcnow()
        values = dict(
            subject=subject,
            window_start=window[0],
            window_end=window[1],
            article_count=article_count,
            summary=dict(summary),
            status=status,
            send_at=send_at,
            note=None,
        )
        with self.engine.begin() as conn:
            current = conn.execute(sa.select(issues.c.status).where(issues.c.key == key)).scalar()
            if current is None:
                inserted = conn.execute(
                    self._insert()(issues)
                    .values(key=key, created_at=now, **values)
                    .on_conflict_do_nothing()
                    .returning(issues.c.key)
                ).scalar()
                if inserted is None:  # another process recorded it a moment ago
                    return False
            elif current in ("draft", "skipped"):
                conn.execute(issues.update().where(issues.c.key == key).values(**values))
                conn.execute(variants.delete().where(variants.c.issue_key == key))
                conn.execute(issue_articles.delete().where(issue_articles.c.issue_key == key))
            else:
                return False
            conn.execute(
                variants.insert(),
                [
                    {"issue_key": key, "variant": name, "subject": s, "html": h, "text": t}
                    for name, (s, h, t) in rendered.items()
                ],
            )
            urls = list(dict.fromkeys(articles))
            if urls:
                conn.execute(issue_articles.insert(), [{"issue_key": key, "canonical_url": u} for u in urls])
        return True

    def skip_issue(
        self, key: str, note: str, *, window: tuple[datetime, datetime], send_at: datetime | None = None
    ) -> None:
        """Record that an issue was not sent, and why (a thin week, feeds down, no approval)."""
        now = utcnow()
        with self.engine.begin() as conn:
            current = conn.execute(sa.select(issues.c.status).where(issues.c.key == key)).scalar()
            if current is None:
                conn.execute(
                    self._insert()(issues)
                    .values(
                        key=key,
                        subject="",
                        window_start=window[0],
                        window_end=window[1],
                        article_count=0,
                        summary={},
                        created_at=now,
                        status="skipped",
                        send_at=send_at,
                        note=note,
                    )
                    .on_conflict_do_nothing()
                )
            elif current in ("draft", "approved", "skipped"):
                conn.execute(issues.update().where(issues.c.key == key).values(status="skipped", note=note))

    def issue(self, key: str) -> IssueRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(issues).where(issues.c.key == key)).first()
        return _issue(row) if row else None

    def issue_list(self, limit: int = 52) -> list[tuple[IssueRecord, dict[str, int]]]:
        """The newest issues with their delivery counts, for `digest issues`."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(issues).order_by(issues.c.window_end.desc()).limit(limit)).all()
            counts: dict[str, dict[str, int]] = {}
            keys = [r.key for r in rows]
            if keys:
                for key, status, n in conn.execute(
                    sa.select(deliveries.c.issue_key, deliveries.c.status, sa.func.count())
                    .where(deliveries.c.issue_key.in_(keys))
                    .group_by(deliveries.c.issue_key, deliveries.c.status)
                ):
                    counts.setdefault(key, {})[status] = n
        return [(_issue(r), counts.get(r.key, {})) for r in rows]

    def set_issue_status(self, key: str, status: str, *, expect: Sequence[str] = (), note: str | None = None) -> bool:
        """Move an issue to ``status`` (only from one of ``expect``, if given); False if it was not."""
        now = utcnow()
        values: dict[str, Any] = {"status": status}
        if status == "approved":
            values["approved_at"] = now
        if status == "sent":
            values["sent_at"] = now
        if note is not None:
            values["note"] = note
        query = issues.update().where(issues.c.key == key)
        if expect:
            query = query.where(issues.c.status.in_(expect))
        with self.engine.begin() as conn:
            return bool(conn.execute(query.values(**values)).rowcount)

    def add_edit(self, key: str, url: str, action: str) -> None:
        """Pin or exclude an article for one issue (the latest word on a URL wins)."""
        with self.engine.begin() as conn:
            conn.execute(issue_edits.delete().where(issue_edits.c.issue_key == key, issue_edits.c.url == url))
            conn.execute(issue_edits.insert().values(issue_key=key, url=url, action=action, created_at=utcnow()))

    def edits(self, key: str) -> tuple[list[str], list[str]]:
        """(pins in the order given, excluded URLs) for an issue."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(issue_edits.c.url, issue_edits.c.action)
                .where(issue_edits.c.issue_key == key)
                .order_by(issue_edits.c.created_at)
            ).all()
        return [r.url for r in rows if r.action == "pin"], [r.url for r in rows if r.action == "exclude"]

    def sent_articles(self, *, besides: str) -> set[str]:
        """Canonical URLs of articles in other issues already sending or sent: never sent again."""
        query = (
            sa.select(issue_articles.c.canonical_url)
            .join(issues, issues.c.key == issue_articles.c.issue_key)
            .where(issues.c.status.in_(("sending", "sent")), issues.c.key != besides)
        )
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    # --- scheduler ---------------------------------------------------------------------------

    def claim_run(self, run_key: str) -> bool:
        """Take a scheduled run (job and fire time); False if another process already has it."""
        with self.engine.begin() as conn:
            got = conn.execute(
                self._insert()(scheduler_runs)
                .values(run_key=run_key, holder=claimer_id(), started_at=utcnow())
                .on_conflict_do_nothing()
                .returning(scheduler_runs.c.run_key)
            ).scalar()
        return got is not None

    def adopt_run(self, run_key: str, *, lease: timedelta) -> bool:
        """Take over an unfinished run whose process is gone (a restart after SIGTERM or a crash)."""
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(scheduler_runs).where(scheduler_runs.c.run_key == run_key)).first()
            if row is None or row.finished_at is not None or _alive(row.holder, lease, row.started_at, now):
                return False
            taken = conn.execute(
                scheduler_runs.update()
                .where(
                    scheduler_runs.c.run_key == run_key,
                    scheduler_runs.c.holder == row.holder,
                    scheduler_runs.c.finished_at.is_(None),
                )
                .values(holder=claimer_id())
            ).rowcount
        return bool(taken)  # another restarting process may have adopted it a moment ago

    def unfinished_runs(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(scheduler_runs.c.run_key).where(scheduler_runs.c.finished_at.is_(None))
                ).scalars()
            )

    def finish_run(self, run_key: str, outcome: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                scheduler_runs.update()
                .where(scheduler_runs.c.run_key == run_key)
                .values(finished_at=utcnow(), outcome=outcome[:2000])
            )

    def run_outcome(self, run_key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(scheduler_runs.c.outcome).where(scheduler_runs.c.run_key == run_key)).scalar()

    def beat(self, name: str = "scheduler") -> None:
        """Record that the scheduler is alive (read by `digest health`)."""
        values = {"holder": claimer_id(), "beat_at": utcnow()}
        stmt = self._insert()(heartbeats).values(name=name, **values)
        stmt = stmt.on_conflict_do_update(index_elements=[heartbeats.c.name], set_=values)
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def last_beat(self, name: str = "scheduler") -> tuple[str, datetime] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(heartbeats).where(heartbeats.c.name == name)).first()
        return (row.holder, _aware(row.beat_at)) if row else None

    def issue_exists(self, key: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(issues.c.key).where(issues.c.key == key)).first() is not None

    def variant(self, key: str, name: str) -> tuple[str, str, str]:
        """The stored (subject, html, text) of one variant of an issue."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(variants.c.subject, variants.c.html, variants.c.text).where(
                    variants.c.issue_key == key, variants.c.variant == name
                )
            ).first()
        if row is None:
            raise StoreError(f"issue {key} has no stored variant {name!r}")
        return row.subject, row.html, row.text

    def sent_issues(self) -> list[IssueRecord]:
        """Issues that went out (sending or sent), newest first: the web archive."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(issues).where(issues.c.status.in_(("sending", "sent"))).order_by(issues.c.window_end.desc())
            ).all()
        return [_issue(r) for r in rows]

    def latest_issue(self) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(issues.c.key).order_by(issues.c.created_at.desc()).limit(1)).scalar()

    # --- the ledger ------------------------------------------------------------------------

    def enqueue(self, key: str, variant_of: Callable[[tuple[str, ...]], str | None]) -> int:
        """A delivery for every active subscriber who has none for this issue yet (returns how many).

        ``variant_of`` maps a choice of sections to the variant that subscriber gets, or None
        when that variant has no article this week: the delivery is then recorded as skipped, so
        nobody is sent an empty email. Subscribers who chose nothing (most) are queued with one
        INSERT .. SELECT; the others are read, given their variant, and inserted in batches.
        """
        now = utcnow()
        # No NOT EXISTS against deliveries: with the table growing inside this very statement and
        # planner statistics still saying it is empty, PostgreSQL chose a nested loop that made
        # the insert quadratic. The unique (issue, subscriber) index answers ON CONFLICT per row.
        waiting = subscribers.c.status == "active"
        chose_nothing = sa.cast(subscribers.c.sections, sa.Text) == "[]"
        columns = ["issue_key", "subscriber_id", "variant", "status", "updated_at", "error"]
        everyone = sa.select(
            sa.literal(key),
            subscribers.c.id,
            sa.literal(variant_of(()) or "all"),
            sa.literal("pending"),
            sa.literal(now),
            sa.null(),
        ).where(waiting, chose_nothing)
        # Variants are looked up (and, for a new choice, rendered and stored) before the write
        # transaction: on SQLite that transaction holds the database's only write lock.
        with self.engine.connect() as conn:
            chosen = conn.execute(
                sa.select(subscribers.c.id, subscribers.c.sections).where(waiting, ~chose_nothing)
            ).all()
        variant_for = {choice: variant_of(choice) for choice in {tuple(sections or ()) for _, sections in chosen}}
        rows = []
        for subscriber_id, sections in chosen:
            variant = variant_for[tuple(sections or ())]
            rows.append(
                {
                    "issue_key": key,
                    "subscriber_id": subscriber_id,
                    "variant": variant or "none",
                    "status": "pending" if variant else "skipped",
                    "updated_at": now,
                    "error": None if variant else "no article in the chosen sections this week",
                }
            )
        # Counted before and after: rowcount is not reliable for INSERT .. SELECT on every driver,
        # and RETURNING would bring every new id into memory.
        count = sa.select(sa.func.count()).select_from(deliveries).where(deliveries.c.issue_key == key)
        with self.engine.begin() as conn:
            before = conn.execute(count).scalar_one()
            conn.execute(self._insert()(deliveries).from_select(columns, everyone).on_conflict_do_nothing())
            for chunk in _chunks(rows, 1000):
                conn.execute(self._insert()(deliveries).on_conflict_do_nothing(), list(chunk))
            return conn.execute(count).scalar_one() - before

    def section_choices(self) -> set[tuple[str, ...]]:
        """The distinct non-empty choices of sections among active subscribers."""
        import json

        text = sa.cast(subscribers.c.sections, sa.Text)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(text).where(subscribers.c.status == "active", text != "[]").distinct()
            ).scalars()
            return {tuple(json.loads(r)) for r in rows}

    def add_variant(self, key: str, name: str, rendered: tuple[str, str, str]) -> None:
        """Store one more variant of a recorded issue (a choice of sections first met now)."""
        subject, html, text = rendered
        with self.engine.begin() as conn:
            conn.execute(
                self._insert()(variants)
                .values(issue_key=key, variant=name, subject=subject, html=html, text=text)
                .on_conflict_do_nothing()
            )

    def variant_names(self, key: str) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(variants.c.variant).where(variants.c.issue_key == key)).scalars())

    def issue_summary(self, key: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(issues.c.summary).where(issues.c.key == key)).scalar() or {})

    def reap_orphans(self, key: str, *, lease: timedelta) -> int:
        """Batches left ``submitting`` by a process that is gone become ``unknown`` (never re-sent)."""
        now = utcnow()
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(batches.c.id, batches.c.claimed_by, batches.c.claimed_at).where(
                    batches.c.issue_key == key, batches.c.status == "submitting"
                )
            ).all()
            dead = [r.id for r in rows if not _alive(r.claimed_by, lease, r.claimed_at, now)]
            for chunk in _chunks(dead):
                self._close_batches(conn, chunk, "unknown", "the sending process stopped during this batch", now)
        return len(dead)

    def orphans(self, key: str, transport: str) -> list[tuple[int, int, str, int]]:
        """The issue's ``unknown`` deliveries whose last batch went through ``transport``, as
        (delivery id, subscriber id, email, batch id): what that transport may be able to settle."""
        d, s = deliveries, subscribers
        query = (
            sa.select(d.c.id, d.c.subscriber_id, s.c.email, d.c.batch_id)
            .join(s, s.c.id == d.c.subscriber_id)
            .join(batches, batches.c.id == d.c.batch_id)
            .where(d.c.issue_key == key, d.c.status == "unknown", batches.c.transport == transport)
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
            "submitted": {"status": "submitted", "error": None, "updated_at": now},
            "unsent": {"status": "pending", "batch_id": None, "error": None, "updated_at": now},
        }
        counts = {"submitted": 0, "unsent": 0}
        with self.engine.begin() as conn:
            for settlement, values in changes.items():
                ids = [did for did, s in resolved.items() if s == settlement]
                for chunk in _chunks(ids):
                    counts[settlement] += conn.execute(
                        deliveries.update()
                        .where(deliveries.c.id.in_(chunk), deliveries.c.status == "unknown")
                        .values(**values)
                    ).rowcount
        return counts["submitted"], counts["unsent"]

    def resend_unknown(self, key: str) -> int:
        """Queue the issue's unknown deliveries again: the operator's decision, since some of them
        may have arrived and will then arrive twice. Their batches become ``retried``."""
        now = utcnow()
        unknown = (deliveries.c.issue_key == key) & (deliveries.c.status == "unknown")
        with self.engine.begin() as conn:
            batch_ids = conn.execute(sa.select(deliveries.c.batch_id).where(unknown).distinct()).scalars().all()
            count = conn.execute(
                deliveries.update().where(unknown).values(status="pending", batch_id=None, updated_at=now)
            ).rowcount
            for chunk in _chunks([b for b in batch_ids if b is not None]):
                conn.execute(
                    batches.update()
                    .where(batches.c.id.in_(chunk), batches.c.status == "unknown")
                    .values(status="retried")
                )
        return count

    def claim(self, key: str, size: int, transport: str) -> Claimed | None:
        """Claim up to ``size`` pending deliveries of one variant as a new ``submitting`` batch.

        Deliveries whose subscriber is no longer active are marked ``skipped`` instead: an
        unsubscribe that lands before the batch is claimed is honoured.
        """
        now = utcnow()
        d, s = deliveries, subscribers
        query = (
            sa.select(d.c.id, d.c.subscriber_id, d.c.variant, s.c.email, s.c.name, s.c.status)
            .join(s, s.c.id == d.c.subscriber_id)
            .where(d.c.issue_key == key, d.c.status == "pending")
            .order_by(d.c.variant, d.c.id)
            .limit(size)
        )
        if self.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True, of=d)
        with self.engine.begin() as conn:
            while True:
                rows = conn.execute(query).all()
                if not rows:
                    return None
                variant = rows[0].variant
                rows = [r for r in rows if r.variant == variant]
                gone = [r.id for r in rows if r.status != "active"]
                if gone:
                    for chunk in _chunks(gone):
                        conn.execute(
                            d.update()
                            .where(d.c.id.in_(chunk))
                            .values(status="skipped", error="unsubscribed before sending", updated_at=now)
                        )
                live = [r for r in rows if r.status == "active"]
                if live:
                    break
            batch_id = conn.execute(
                batches.insert()
                .values(
                    issue_key=key,
                    variant=variant,
                    status="submitting",
                    transport=transport,
                    size=len(live),
                    claimed_by=claimer_id(),
                    claimed_at=now,
                )
                .returning(batches.c.id)
            ).scalar_one()
            for chunk in _chunks([r.id for r in live]):
                conn.execute(
                    d.update().where(d.c.id.in_(chunk)).values(status="submitting", batch_id=batch_id, updated_at=now)
                )
        return Claimed(batch_id, key, variant, tuple((r.id, r.subscriber_id, r.email, r.name) for r in live))

    def finish(self, batch: Claimed, outcomes: Mapping[int, tuple[str, str]], provider_id: str = "") -> str:
        """Record what the transport said for each delivery id: (status, error). Returns the
        batch's status: the worst of its recipients' (unknown, then failed, then submitted)."""
        now = utcnow()
        by_status: dict[tuple[str, str], list[int]] = {}
        for delivery_id, (status, error) in outcomes.items():
            by_status.setdefault((status, error), []).append(delivery_id)
        statuses = {status for status, _ in by_status}
        overall = "unknown" if "unknown" in statuses else "failed" if "failed" in statuses else "submitted"
        errors = sorted({e for (_, e) in by_status if e})
        with self.engine.begin() as conn:
            if len(by_status) == 1:
                ((status, error),) = by_status
                conn.execute(
                    deliveries.update()
                    .where(deliveries.c.batch_id == batch.id)
                    .values(status=status, error=error or None, updated_at=now)
                )
            else:
                for (status, error), ids in by_status.items():
                    for chunk in _chunks(ids):
                        conn.execute(
                            deliveries.update()
                            .where(deliveries.c.id.in_(chunk))
                            .values(status=status, error=error or None, updated_at=now)
                        )
            conn.execute(
                batches.update()
                .where(batches.c.id == batch.id)
                .values(
                    status=overall,
                    finished_at=now,
                    provider_id=provider_id or None,
                    error="; ".join(errors)[:2000] or None,
                )
            )
        return overall

    def release(self, batch: Claimed) -> None:
        """Give a claimed batch back untouched (the send was refused before anything went out)."""
        with self.engine.begin() as conn:
            conn.execute(
                deliveries.update()
                .where(deliveries.c.batch_id == batch.id)
                .values(status="pending", batch_id=None, updated_at=utcnow())
            )
            conn.execute(batches.delete().where(batches.c.id == batch.id))

    def retry_failed(self, key: str) -> int:
        """Put the issue's failed recipients back in the queue; failed batches become ``retried``.

        Recipients, not batches: an SMTP batch is ``unknown`` as a whole when one message was lost
        after its data, yet the recipients it then could not send are ``failed`` and retryable.
        """
        now = utcnow()
        with self.engine.begin() as conn:
            count = conn.execute(
                deliveries.update()
                .where(deliveries.c.issue_key == key, deliveries.c.status == "failed")
                .values(status="pending", batch_id=None, updated_at=now)
            ).rowcount
            conn.execute(
                batches.update()
                .where(batches.c.issue_key == key, batches.c.status == "failed")
                .values(status="retried")
            )
        return count

    def delivery_counts(self, key: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(deliveries.c.status, sa.func.count())
                .where(deliveries.c.issue_key == key)
                .group_by(deliveries.c.status)
            )
            return {status: n for status, n in rows}

    def problems(self, key: str, limit: int | None = None) -> list[Problem]:
        """Failed and unknown recipients of an issue, for ``digest status``."""
        query = (
            sa.select(subscribers.c.email, deliveries.c.status, deliveries.c.error)
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(deliveries.c.issue_key == key, deliveries.c.status.in_(("failed", "unknown")))
            .order_by(deliveries.c.status, subscribers.c.email)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [Problem(r.email, r.status, r.error or "") for r in conn.execute(query)]

    def _close_batches(self, conn: Connection, ids: Sequence[int], status: str, error: str, now: datetime) -> None:
        conn.execute(batches.update().where(batches.c.id.in_(ids)).values(status=status, error=error, finished_at=now))
        conn.execute(
            deliveries.update()
            .where(deliveries.c.batch_id.in_(ids), deliveries.c.status == "submitting")
            .values(status=status, error=error, updated_at=now)
        )


def _maybe(moment: datetime | None) -> datetime | None:
    return _aware(moment) if moment else None


def _issue(row: Any) -> IssueRecord:
    return IssueRecord(
        key=row.key,
        status=row.status,
        subject=row.subject,
        window_start=_aware(row.window_start),
        window_end=_aware(row.window_end),
        article_count=row.article_count,
        send_at=_maybe(row.send_at),
        approved_at=_maybe(row.approved_at),
        sent_at=_maybe(row.sent_at),
        note=row.note or "",
    )


def _subscriber(row: Any) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        name=row.name,
        status=row.status,
        sections=tuple(row.sections or ()),
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
    )
