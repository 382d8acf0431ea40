"""Readers' own sign-ups: pending until the emailed link is used, then a subscriber with consent.

A pending sign-up lives in its own table, not among the subscribers, so no path that picks
recipients (queueing an issue, the counts, the export) can ever mail it, and a suppressed
subscriber who signs up again stays suppressed until the confirmation. Each decision that must
hold when requests race is taken in one transaction here: the at-most-one-mail-per-interval
rule, and the confirmation that makes (or makes again) an active subscriber.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from digest.models import SubscriberStatus
from digest.store.engine import Repository, aware, maybe_aware
from digest.store.schema import signups, subscribers
from digest.store.subscribers import email_key


@dataclass(frozen=True, slots=True)
class SignupRequest:
    """One sign-up as posted: the address, what the reader chose, and where it came from."""

    email: str
    name: str
    sections: tuple[str, ...]
    source: str
    ip_hash: str
    user_agent: str


@dataclass(frozen=True, slots=True)
class Pending:
    """A sign-up waiting for its link (or, with ``confirmed_at``, one already confirmed)."""

    id: int
    email: str
    nonce: str
    name: str
    sections: tuple[str, ...]
    source: str
    requested_at: datetime
    mailed_at: datetime | None
    confirmed_at: datetime | None


@dataclass(frozen=True, slots=True)
class Requested:
    """What recording a sign-up decided: the nonce its link names, and whether a confirmation
    mail is due now (the address's mail slot was free and is now taken)."""

    pending: Pending
    mail_now: bool
    previous_mail: datetime | None


@dataclass(frozen=True, slots=True)
class Confirmed:
    """A confirmation: the subscriber it made active, and whether the link had been used before
    (then nothing changed)."""

    subscriber_id: int
    email: str
    already: bool


class Signups(Repository):
    """Pending sign-ups: requested, mailed, confirmed into subscribers, pruned."""

    def request(self, req: SignupRequest, *, now: datetime, mail_every: timedelta) -> Requested:
        """Record a sign-up (or refresh the address's pending one with what was posted now).

        A confirmation mail is due when none went to this address within ``mail_every``; the slot
        is taken in the same transaction, so of any number of posts racing for one address at most
        one mails. A sign-up confirmed before starts again as pending, with a new link.
        """
        key = email_key(req.email)
        values = {
            "email": req.email.strip(),
            "name": req.name,
            "sections": list(req.sections),
            "source": req.source,
            "ip_hash": req.ip_hash,
            "user_agent": req.user_agent,
            "requested_at": now,
        }
        with self.engine.begin() as conn:
            conn.execute(
                self.insert(signups)
                .values(email_key=key, nonce=_nonce(), **values)
                .on_conflict_do_nothing(index_elements=["email_key"])
            )
            row = conn.execute(_by(signups.c.email_key == key, lock=self.dialect == "postgresql")).one()
            previous = maybe_aware(row.mailed_at)
            mail_now = previous is None or previous <= now - mail_every
            changes: dict[str, Any] = dict(values)
            if row.confirmed_at is not None:
                changes.update(nonce=_nonce(), confirmed_at=None)
            if mail_now:
                changes["mailed_at"] = now
            conn.execute(signups.update().where(signups.c.id == row.id).values(**changes))
            fresh = conn.execute(_by(signups.c.id == row.id)).one()
        return Requested(_pending(fresh), mail_now, previous)

    def unmail(self, signup_id: int, mailed_at: datetime, previous: datetime | None) -> None:
        """Give the mail slot back after a confirmation mail that did not go out, so the reader's
        next try is not refused for ten minutes for a mail they never got."""
        with self.engine.begin() as conn:
            conn.execute(
                signups.update()
                .where(signups.c.id == signup_id, signups.c.mailed_at == mailed_at)
                .values(mailed_at=previous)
            )

    def by_nonce(self, nonce: str) -> Pending | None:
        with self.engine.connect() as conn:
            row = conn.execute(_by(signups.c.nonce == nonce)).first()
        return _pending(row) if row else None

    def by_email(self, email: str) -> Pending | None:
        with self.engine.connect() as conn:
            row = conn.execute(_by(signups.c.email_key == email_key(email))).first()
        return _pending(row) if row else None

    def confirm(self, nonce: str, *, now: datetime, newer_than: datetime) -> Confirmed | None:
        """Make the sign-up whose link names ``nonce`` an active subscriber, with its consent
        record; None when there is no such sign-up (pruned, replaced) or it was asked for before
        ``newer_than``.

        Any earlier state gives way: a new, unsubscribed, bounced or complained address becomes
        active, because this link is new, explicit consent. Its name (when one was given) and its
        sections are the sign-up's. A link used twice changes nothing the second time.
        """
        with self.engine.begin() as conn:
            row = conn.execute(_by(signups.c.nonce == nonce, lock=self.dialect == "postgresql")).first()
            if row is None or aware(row.requested_at) < newer_than:
                return None
            key = row.email_key
            existing = conn.execute(sa.select(subscribers.c.id).where(subscribers.c.email_key == key)).scalar()
            if row.confirmed_at is not None:
                return None if existing is None else Confirmed(existing, row.email, already=True)
            subscriber_id = _make_active(conn, row, existing, now)
            conn.execute(signups.update().where(signups.c.id == row.id).values(confirmed_at=now))
        return Confirmed(subscriber_id, row.email, already=False)

    def prune(self, older_than: datetime) -> int:
        """Delete sign-ups whose every link has expired: never confirmed, last mailed (or asked
        for) before ``older_than``, and confirmed ones once their link could no longer be used."""
        last = sa.func.coalesce(signups.c.confirmed_at, signups.c.mailed_at, signups.c.requested_at)
        with self.engine.begin() as conn:
            return int(conn.execute(signups.delete().where(last < older_than)).rowcount or 0)

    def count_pending(self) -> int:
        with self.engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(signups).where(signups.c.confirmed_at.is_(None))
            return int(conn.execute(query).scalar_one())


def _nonce() -> str:
    return secrets.token_urlsafe(16)[:22]  # 128 bits: what a confirmation link names


def _by(condition: sa.ColumnElement[bool], *, lock: bool = False) -> Any:
    query = sa.select(signups).where(condition)
    return query.with_for_update() if lock else query


def _make_active(conn: Connection, row: Any, existing: int | None, now: datetime) -> int:
    """Insert or update the subscriber a confirmed sign-up names; returns its id."""
    values: dict[str, Any] = {
        "status": SubscriberStatus.ACTIVE,
        "sections": list(row.sections or ()),
        "updated_at": now,
        "signed_up_at": row.requested_at,
        "signup_source": row.source,
        "confirmed_at": now,
        "signup_ip_hash": row.ip_hash,
        "signup_user_agent": row.user_agent,
    }
    if row.name:
        values["name"] = row.name
    if existing is not None:
        conn.execute(subscribers.update().where(subscribers.c.id == existing).values(**values))
        return existing
    return int(
        conn.execute(
            subscribers.insert()
            .values(email=row.email, email_key=row.email_key, created_at=now, **{"name": "", **values})
            .returning(subscribers.c.id)
        ).scalar_one()
    )


def _pending(row: Any) -> Pending:
    return Pending(
        id=row.id,
        email=row.email,
        nonce=row.nonce,
        name=row.name,
        sections=tuple(row.sections or ()),
        source=row.source,
        requested_at=aware(row.requested_at),
        mailed_at=maybe_aware(row.mailed_at),
        confirmed_at=maybe_aware(row.confirmed_at),
    )
