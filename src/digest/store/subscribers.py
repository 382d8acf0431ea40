"""The subscriber list: who is mailed, with which sections, and who must never be mailed again.

An address is one subscriber whatever its case (``email_key``), and a suppression (unsubscribe,
bounce, complaint) only ever gets stronger: neither a re-imported old list nor a late event can
undo one, short of an explicit ``resubscribe``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from digest.models import SubscriberStatus
from digest.store.engine import Repository, aware, chunks, utcnow
from digest.store.schema import deliveries, subscribers, suppressions

ACTIVE = SubscriberStatus.ACTIVE


def email_key(email: str) -> str:
    """The identity of an address: case-folded whole (providers treat local parts case-blind)."""
    return email.strip().casefold()


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str
    name: str
    status: SubscriberStatus
    sections: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    consent: Consent | None = None  # None: added by an import or `subscribers add`, not by signing up


@dataclass(frozen=True, slots=True)
class Consent:
    """Proof that a reader asked for the newsletter: when they signed up and from where, and when
    they confirmed through the emailed link. The IP address is kept only as a keyed hash."""

    signed_up_at: datetime
    source: str
    confirmed_at: datetime
    ip_hash: str
    user_agent: str


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


class Subscribers(Repository):
    """Subscribers: merged in from lists, suppressed, choosing sections, forgotten."""

    def merge(self, rows: Iterable[NewSubscriber], *, resubscribe: bool = False) -> MergeReport:
        """Add new addresses and update names and sections of known ones, in one transaction.

        A suppressed address (unsubscribed, bounced, complained) stays suppressed unless
        ``resubscribe`` says otherwise: an old list re-imported must never undo an unsubscribe.
        """
        incoming = {email_key(r.email): r for r in rows}
        now = utcnow()
        updated = unchanged = resubscribed = 0
        kept: list[str] = []
        with self.engine.begin() as conn:
            existing: dict[str, Any] = {}
            for chunk in chunks(list(incoming)):
                for row in conn.execute(sa.select(subscribers).where(subscribers.c.email_key.in_(chunk))):
                    existing[row.email_key] = row
            new_rows = [_new_row(key, r, now) for key, r in incoming.items() if key not in existing]
            for key, r in incoming.items():
                old = existing.get(key)
                if old is None:
                    continue
                changes: dict[str, Any] = {}
                if old.status != ACTIVE:
                    if resubscribe:
                        changes["status"] = ACTIVE
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
        return MergeReport(len(new_rows), updated, unchanged, tuple(kept), resubscribed)

    def set_status(self, email: str, status: SubscriberStatus) -> bool:
        """Change one subscriber's status (e.g. unsubscribe); False if the address is unknown."""
        with self.engine.begin() as conn:
            result = conn.execute(
                subscribers.update()
                .where(subscribers.c.email_key == email_key(email))
                .values(status=status, updated_at=utcnow())
            )
        return bool(result.rowcount)

    def suppress(
        self, subscriber_id: int, status: SubscriberStatus, *, source: str = "", issue_key: str | None = None
    ) -> bool:
        """Stop all mail to a subscriber at once (one-click unsubscribe, bounce, complaint).

        Idempotent, and it never turns a stronger suppression into a weaker one: a complaint
        stays a complaint if an unsubscribe arrives after it. False if the id is unknown.
        A suppression that takes effect is recorded with its ``source`` and the issue it came
        from: ``issue_key`` when that issue was sent to this subscriber, else none (a key from
        elsewhere, or made up, attributes nothing).
        """
        now = utcnow()
        with self.engine.begin() as conn:
            current = conn.execute(sa.select(subscribers.c.status).where(subscribers.c.id == subscriber_id)).scalar()
            if current is None:
                return False
            if SubscriberStatus(status).strength > SubscriberStatus(current).strength:
                conn.execute(
                    subscribers.update().where(subscribers.c.id == subscriber_id).values(status=status, updated_at=now)
                )
                sent = (
                    issue_key is not None
                    and conn.execute(
                        sa.select(deliveries.c.id).where(
                            deliveries.c.issue_key == issue_key, deliveries.c.subscriber_id == subscriber_id
                        )
                    ).first()
                )
                conn.execute(
                    suppressions.insert().values(
                        subscriber_id=subscriber_id,
                        status=status,
                        source=source or "unknown",
                        issue_key=issue_key if sent else None,
                        at=now,
                    )
                )
        return True

    def suppressions_per_issue(self) -> dict[str, dict[str, int]]:
        """Every issue's suppressions that came from it, per status (no variant)."""
        found: dict[str, dict[str, int]] = {}
        query = (
            sa.select(suppressions.c.issue_key, suppressions.c.status, sa.func.count())
            .where(suppressions.c.issue_key.is_not(None))
            .group_by(suppressions.c.issue_key, suppressions.c.status)
        )
        with self.engine.connect() as conn:
            for key, status, n in conn.execute(query):
                found.setdefault(key, {})[status] = n
        return found

    def lifetimes(self) -> list[tuple[datetime, datetime | None]]:
        """Each subscriber's (joined, suppressed): when they were added and, for one not active,
        when that took effect (the last recorded suppression, else the last change of the row).
        An address made active again counts as active since it joined."""
        last = (
            sa.select(sa.func.max(suppressions.c.at))
            .where(suppressions.c.subscriber_id == subscribers.c.id)
            .scalar_subquery()
        )
        query = sa.select(subscribers.c.created_at, subscribers.c.status, last, subscribers.c.updated_at)
        with self.engine.connect() as conn:
            return [
                (aware(created), None if status == SubscriberStatus.ACTIVE else aware(stopped or changed))
                for created, status, stopped, changed in conn.execute(query)
            ]

    def suppressed_by(self, issue_key: str) -> dict[str, dict[str, int]]:
        """The suppressions that came from one issue, per variant the subscriber was sent and
        per status: ``{"all": {"unsubscribed": 2, "bounced": 1}}``."""
        query = (
            sa.select(deliveries.c.variant, suppressions.c.status, sa.func.count())
            .join(
                deliveries,
                sa.and_(
                    deliveries.c.issue_key == suppressions.c.issue_key,
                    deliveries.c.subscriber_id == suppressions.c.subscriber_id,
                ),
            )
            .where(suppressions.c.issue_key == issue_key)
            .group_by(deliveries.c.variant, suppressions.c.status)
        )
        found: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for variant, status, n in conn.execute(query):
                found.setdefault(variant, {})[status] = n
        return found

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
        """Delete a subscriber and their delivery history (a request to be forgotten).

        The deliveries go first, in the same transaction: they have no foreign key to cascade
        (migration 0009)."""
        with self.engine.begin() as conn:
            found = conn.execute(
                sa.select(subscribers.c.id).where(subscribers.c.email_key == email_key(email))
            ).scalar()
            if found is None:
                return False
            conn.execute(deliveries.delete().where(deliveries.c.subscriber_id == found))
            conn.execute(subscribers.delete().where(subscribers.c.id == found))
        return True

    def every(self, status: SubscriberStatus | None = None) -> Iterator[Subscriber]:
        """Every subscriber (optionally of one status), oldest first, streamed."""
        query = sa.select(subscribers).order_by(subscribers.c.id)
        if status:
            query = query.where(subscribers.c.status == status)
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=1000).execute(query):
                yield _subscriber(row)

    def by_email(self, email: str) -> Subscriber | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(subscribers).where(subscribers.c.email_key == email_key(email))).first()
        return _subscriber(row) if row else None

    def by_id(self, subscriber_id: int) -> Subscriber | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)).first()
        return _subscriber(row) if row else None

    def counts(self) -> dict[str, int]:
        """How many subscribers have each status."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(subscribers.c.status, sa.func.count()).group_by(subscribers.c.status))
            return {status: n for status, n in rows}

    def section_choices(self) -> set[tuple[str, ...]]:
        """The distinct non-empty choices of sections among active subscribers."""
        text = sa.cast(subscribers.c.sections, sa.Text)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(text).where(subscribers.c.status == ACTIVE, text != "[]").distinct()
            ).scalars()
            return {tuple(json.loads(r)) for r in rows}


def _new_row(key: str, r: NewSubscriber, now: datetime) -> dict[str, Any]:
    return {
        "email": r.email.strip(),
        "email_key": key,
        "name": r.name,
        "status": ACTIVE,
        "sections": list(r.sections),
        "created_at": now,
        "updated_at": now,
    }


def _subscriber(row: Any) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        name=row.name,
        status=SubscriberStatus(row.status),
        sections=tuple(row.sections or ()),
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
        consent=Consent(
            signed_up_at=aware(row.signed_up_at),
            source=row.signup_source or "",
            confirmed_at=aware(row.confirmed_at),
            ip_hash=row.signup_ip_hash or "",
            user_agent=row.signup_user_agent or "",
        )
        if row.confirmed_at is not None and row.signed_up_at is not None
        else None,
    )
