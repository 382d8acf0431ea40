"""The connection to the database, and what every repository shares.

The ledger's guarantees need the database set up for them: on SQLite every transaction is
``BEGIN IMMEDIATE`` (so two claims are serialised by the database file, never interleaved) in WAL
mode with a generous busy timeout; on PostgreSQL row locks (``FOR UPDATE SKIP LOCKED``) do that
work. The schema is brought to the newest revision by Alembic, under an advisory lock on
PostgreSQL so two processes opening a new database at once do not both create the tables.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from digest.errors import StoreError

SQLITE_BUSY_MS = 30_000
MIGRATION_LOCK = 0x6469676573  # "diges": the PostgreSQL advisory lock held while migrating
_MIGRATING = threading.Lock()
CHUNK = 500  # rows per IN (...) list: well under SQLite's bound-parameter limit


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite gives them back naive)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def maybe_aware(moment: datetime | None) -> datetime | None:
    return aware(moment) if moment else None


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def claimer_id() -> str:
    """Who holds a claim: host and process, so a restart on the same host can tell it died."""
    return f"{socket.gethostname()}:{os.getpid()}"


def alive(claimer: str, lease: timedelta, claimed_at: datetime, now: datetime) -> bool:
    """Whether the process that took a claim may still be working on it: asked directly when it
    ran on this host, else assumed until its lease runs out."""
    host, _, pid = claimer.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return aware(claimed_at) + lease > now


def make_engine(url: str) -> Engine:
    """An engine with the settings each database needs for the ledger's guarantees."""
    try:
        if url.startswith("sqlite"):
            return _sqlite_engine(url)
        return sa.create_engine(url, pool_pre_ping=True)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise StoreError(f"database URL {redact(url)!r} cannot be used: {exc}") from exc


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


def redact(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (the newest by default), keeping the data (Alembic).

    A database already at the newest revision is left as it is without loading Alembic at all.
    """
    if revision == "head" and _at_head(engine):
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("digest.store") / "migrations"))
    with _MIGRATING, engine.begin() as conn:  # Alembic's API is not thread-safe
        if engine.dialect.name == "postgresql":
            # Two processes opening a new database at once must not both create the tables.
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def _at_head(engine: Engine) -> bool:
    """Whether the database says it is at the newest revision: one read of Alembic's own table.

    Any doubt (no table yet, no connection) says no, and Alembic then does what it always did,
    errors included.
    """
    from digest.store.migrations import HEAD

    try:
        with engine.connect() as conn:
            versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    except sa.exc.DBAPIError:
        return False
    return versions == [HEAD]


class Repository:
    """What every repository holds: the engine, and its database's INSERT (for ON CONFLICT)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def insert(self, table: sa.Table) -> Any:
        """``INSERT`` with this database's ``ON CONFLICT`` clauses (SQLite and PostgreSQL share them).

        Only the dialect in use is imported: the other one costs a SQLite build a tenth of its start.
        """
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)
