"""The database: subscribers, readers' pending sign-ups, issues, the delivery ledger and the
scheduler's runs, on SQLite or PostgreSQL.

``Store.open(url)`` connects and migrates; the work is done by one small repository per
aggregate, each on the same engine: ``store.subscribers``, ``store.signups``, ``store.issues``,
``store.ledger``, ``store.runs``, ``store.editors`` (the desk's editors and their sessions) and
``store.audit`` (what editors did at the desk).
The row types are re-exported here so callers need one import.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from digest.errors import StoreError
from digest.store.audit import Audit, Entry
from digest.store.editors import DeskSession, Editor, Editors
from digest.store.engine import make_engine, redact, upgrade, utcnow
from digest.store.issues import IssueRecord, Issues
from digest.store.ledger import ClaimCursor, Claimed, Ledger, Problem
from digest.store.runs import Runs
from digest.store.signups import Confirmed, Pending, Requested, SignupRequest, Signups
from digest.store.subscribers import Consent, MergeReport, NewSubscriber, Subscriber, Subscribers, email_key

__all__ = [
    "ClaimCursor",
    "Claimed",
    "Confirmed",
    "Consent",
    "DeskSession",
    "Editor",
    "Entry",
    "IssueRecord",
    "MergeReport",
    "NewSubscriber",
    "Pending",
    "Problem",
    "Requested",
    "SignupRequest",
    "Store",
    "Subscriber",
    "email_key",
    "make_engine",
    "utcnow",
]


class Store:
    """The database opened: its engine and a repository per aggregate. Open with
    ``Store.open(url)``, which migrates the schema first."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.subscribers = Subscribers(engine)
        self.signups = Signups(engine)
        self.issues = Issues(engine)
        self.ledger = Ledger(engine)
        self.runs = Runs(engine)
        self.editors = Editors(engine)
        self.audit = Audit(engine)

    @classmethod
    def open(cls, url: str) -> Store:
        store = cls(make_engine(url))
        try:
            store.upgrade()
        except sa.exc.OperationalError as exc:
            raise StoreError(
                f"cannot open the database {redact(url)}: {exc.orig}",
                hint="check [store] url or $DIGEST_DATABASE_URL, and that the server is running",
            ) from exc
        return store

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (the newest by default), keeping the data."""
        upgrade(self.engine, revision)

    def close(self) -> None:
        self.engine.dispose()
