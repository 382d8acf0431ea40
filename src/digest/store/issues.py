"""Issues: their snapshot (variants and articles), their state, and the editors' edits.

An issue is recorded once and then sent as recorded: every batch of it, in any process and after
any restart, sends the same stored rendering. Only a draft or a skipped issue is replaced by a
new build (editors rebuild drafts; a week skipped for a passing reason may be built again).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from digest.errors import StoreError
from digest.models import Front, IssueStatus
from digest.store.engine import Repository, aware, maybe_aware, utcnow
from digest.store.schema import deliveries, issue_articles, issue_edits, issue_fronts, issues, variants

# Issues readers have (or are getting): their articles are never sent again; the web archive.
WENT_OUT = tuple(s for s in IssueStatus if s.went_out)
# Issues a new build may replace.
REBUILDABLE = (IssueStatus.DRAFT, IssueStatus.SKIPPED)


@dataclass(frozen=True, slots=True)
class IssueRecord:
    key: str
    status: IssueStatus
    subject: str
    window_start: datetime
    window_end: datetime
    article_count: int
    send_at: datetime | None
    approved_at: datetime | None
    sent_at: datetime | None
    note: str
    approved_by: str = ""


class Issues(Repository):
    """Recorded issues, their stored variants and articles, and editors' pins and exclusions."""

    def record(
        self,
        key: str,
        *,
        subject: str,
        window: tuple[datetime, datetime],
        article_count: int,
        summary: Mapping[str, Any],
        rendered: Mapping[str, tuple[str, str, str]],
        articles: Sequence[str] = (),
        status: IssueStatus = IssueStatus.SENDING,
        send_at: datetime | None = None,
    ) -> bool:
        """Store an issue, its variants (subject, html, text) and its article URLs.

        Returns True if this call recorded it. An issue already recorded keeps its snapshot (every
        batch of one issue sends the same content, whichever process sends it), except a draft or
        a skipped issue, which a new build replaces: editors rebuild drafts, and a week skipped
        for a passing reason may be built again.
        """
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
                    self.insert(issues)
                    .values(key=key, created_at=utcnow(), **values)
                    .on_conflict_do_nothing()
                    .returning(issues.c.key)
                ).scalar()
                if inserted is None:  # another process recorded it a moment ago
                    return False
            elif current in REBUILDABLE:
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

    def skip(self, key: str, note: str, *, window: tuple[datetime, datetime], send_at: datetime | None = None) -> None:
        """Record that an issue was not sent, and why (a thin week, feeds down, no approval)."""
        with self.engine.begin() as conn:
            current = conn.execute(sa.select(issues.c.status).where(issues.c.key == key)).scalar()
            if current is None:
                conn.execute(
                    self.insert(issues)
                    .values(
                        key=key,
                        subject="",
                        window_start=window[0],
                        window_end=window[1],
                        article_count=0,
                        summary={},
                        created_at=utcnow(),
                        status=IssueStatus.SKIPPED,
                        send_at=send_at,
                        note=note,
                    )
                    .on_conflict_do_nothing()
                )
            elif current in (IssueStatus.DRAFT, IssueStatus.APPROVED, IssueStatus.SKIPPED):
                conn.execute(issues.update().where(issues.c.key == key).values(status=IssueStatus.SKIPPED, note=note))

    def get(self, key: str) -> IssueRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(issues).where(issues.c.key == key)).first()
        return _issue(row) if row else None

    def exists(self, key: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(issues.c.key).where(issues.c.key == key)).first() is not None

    def latest_key(self) -> str | None:
        """The key of the issue recorded last."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(issues.c.key).order_by(issues.c.created_at.desc()).limit(1)).scalar()

    def recent(self, limit: int = 52) -> list[tuple[IssueRecord, dict[str, int]]]:
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

    def went_out(self) -> list[IssueRecord]:
        """Issues that went out (sending or sent), newest first: the web archive."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(issues).where(issues.c.status.in_(WENT_OUT)).order_by(issues.c.window_end.desc())
            ).all()
        return [_issue(r) for r in rows]

    def set_status(
        self,
        key: str,
        status: IssueStatus,
        *,
        expect: Sequence[IssueStatus] = (),
        note: str | None = None,
        by: str = "",
    ) -> bool:
        """Move an issue to ``status`` (only from one of ``expect``, if given); False if it was not.
        Approving records when and ``by`` whom; going back to a draft forgets both."""
        now = utcnow()
        values: dict[str, Any] = {"status": status}
        if status == IssueStatus.APPROVED:
            values["approved_at"] = now
            values["approved_by"] = by or None
        if status == IssueStatus.DRAFT:
            values["approved_at"] = values["approved_by"] = None
        if status == IssueStatus.SENT:
            values["sent_at"] = now
        if note is not None:
            values["note"] = note
        query = issues.update().where(issues.c.key == key)
        if expect:
            query = query.where(issues.c.status.in_(expect))
        with self.engine.begin() as conn:
            return bool(conn.execute(query.values(**values)).rowcount)

    def summary(self, key: str) -> dict[str, Any]:
        """What was kept of the issue when it was recorded (``models.issue_record``): the issue
        itself and its build warnings; ``{}`` for none."""
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(issues.c.summary).where(issues.c.key == key)).scalar() or {})

    # --- editors' edits and the articles an issue carries ----------------------------------

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
                .order_by(issue_edits.c.created_at, issue_edits.c.position)
            ).all()
        return [r.url for r in rows if r.action == "pin"], [r.url for r in rows if r.action == "exclude"]

    def order(self, key: str) -> list[str]:
        """The articles editors moved in an issue, in the order they left them."""
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(issue_edits.c.url)
                    .where(issue_edits.c.issue_key == key, issue_edits.c.action == "move")
                    .order_by(issue_edits.c.position, issue_edits.c.created_at)
                ).scalars()
            )

    def arrange(self, key: str, pinned: Sequence[str], moved: Sequence[str]) -> None:
        """Set one section's order in one transaction: ``pinned`` first (pins, in this order),
        then ``moved`` (moves, in this order); whatever these URLs were pinned or moved as before
        is replaced."""
        now = utcnow()
        urls = [*pinned, *moved]
        with self.engine.begin() as conn:
            conn.execute(issue_edits.delete().where(issue_edits.c.issue_key == key, issue_edits.c.url.in_(urls)))
            rows = [
                {"issue_key": key, "url": url, "action": action, "created_at": now, "position": i}
                for action, group in (("pin", pinned), ("move", moved))
                for i, url in enumerate(group)
            ]
            if rows:
                conn.execute(issue_edits.insert(), rows)

    def forget_edit(self, key: str, url: str) -> bool:
        """Drop editors' word on one article of an issue (its pin, exclusion or move); False if none."""
        with self.engine.begin() as conn:
            query = issue_edits.delete().where(issue_edits.c.issue_key == key, issue_edits.c.url == url)
            return bool(conn.execute(query).rowcount)

    def front(self, key: str) -> Front:
        """What opens an issue as its editors wrote it (empty when they wrote nothing)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(issue_fronts).where(issue_fronts.c.issue_key == key)).first()
        return Front(row.subject, row.preheader, row.note) if row else Front()

    def set_front(self, key: str, front: Front) -> None:
        values = {"subject": front.subject, "preheader": front.preheader, "note": front.note, "updated_at": utcnow()}
        with self.engine.begin() as conn:
            conn.execute(
                self.insert(issue_fronts)
                .values(issue_key=key, **values)
                .on_conflict_do_update(index_elements=[issue_fronts.c.issue_key], set_=values)
            )

    def sent_articles(self, *, besides: str) -> set[str]:
        """Canonical URLs of articles in other issues already sending or sent: never sent again."""
        query = (
            sa.select(issue_articles.c.canonical_url)
            .join(issues, issues.c.key == issue_articles.c.issue_key)
            .where(issues.c.status.in_(WENT_OUT), issues.c.key != besides)
        )
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    # --- variants: one stored rendering per choice of sections -----------------------------

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

    def variant_names(self, key: str) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(variants.c.variant).where(variants.c.issue_key == key)).scalars())

    def add_variant(self, key: str, name: str, rendered: tuple[str, str, str]) -> None:
        """Store one more variant of a recorded issue (a choice of sections first met now)."""
        subject, html, text = rendered
        with self.engine.begin() as conn:
            conn.execute(
                self.insert(variants)
                .values(issue_key=key, variant=name, subject=subject, html=html, text=text)
                .on_conflict_do_nothing()
            )


def _issue(row: Any) -> IssueRecord:
    return IssueRecord(
        key=row.key,
        status=IssueStatus(row.status),
        subject=row.subject,
        window_start=aware(row.window_start),
        window_end=aware(row.window_end),
        article_count=row.article_count,
        send_at=maybe_aware(row.send_at),
        approved_at=maybe_aware(row.approved_at),
        sent_at=maybe_aware(row.sent_at),
        note=row.note or "",
        approved_by=row.approved_by or "",
    )
