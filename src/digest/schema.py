"""The database tables, declared once with SQLAlchemy Core.

The Alembic migrations in ``digest/migrations`` create exactly these tables; a test checks that
the migrated schema and this declaration agree, so neither can drift from the other.

The ledger's guarantees live in constraints, not in code paths: one delivery row per
(issue, subscriber) is what makes running ``send`` twice harmless, and a case-folded email key
is what makes ``Ann@X.org`` and ``ann@x.org`` one subscriber.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

SUBSCRIBER_STATUSES = ("active", "unsubscribed", "bounced", "complained")
# pending: recorded, not yet claimed; submitting: claimed and handed to a transport;
# submitted: the transport accepted it; failed: refused, may be retried with --retry-failed;
# unknown: the outcome is unknown (crash or timeout mid-request), never re-sent on its own;
# skipped: not sent on purpose (suppressed after it was recorded).
DELIVERY_STATUSES = ("pending", "submitting", "submitted", "failed", "unknown", "skipped")
BATCH_STATUSES = ("submitting", "submitted", "failed", "unknown", "retried")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False, server_default=""),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("sections", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint(_in("status", SUBSCRIBER_STATUSES), name="status"),
    Index("ix_subscribers_status", "status"),
)

issues = Table(
    "issues",
    metadata,
    Column("key", String(16), primary_key=True),
    Column("subject", Text, nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("window_end", DateTime(timezone=True), nullable=False),
    Column("article_count", Integer, nullable=False),
    Column("summary", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# One rendering of an issue per distinct choice of sections, stored so every batch of an issue,
# in any process and after any restart, sends the same content.
variants = Table(
    "variants",
    metadata,
    Column("issue_key", String(16), ForeignKey("issues.key", ondelete="CASCADE"), primary_key=True),
    Column("variant", String(64), primary_key=True),
    Column("subject", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=False),
)

batches = Table(
    "batches",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue_key", String(16), ForeignKey("issues.key", ondelete="CASCADE"), nullable=False),
    Column("variant", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("transport", String(16), nullable=False),
    Column("size", Integer, nullable=False),
    Column("claimed_by", String(200), nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("provider_id", String(200)),
    Column("error", Text),
    CheckConstraint(_in("status", BATCH_STATUSES), name="status"),
    Index("ix_batches_issue_status", "issue_key", "status"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue_key", String(16), ForeignKey("issues.key", ondelete="CASCADE"), nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    Column("variant", String(64), nullable=False),
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("batch_id", Integer, ForeignKey("batches.id", ondelete="SET NULL")),
    Column("error", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("issue_key", "subscriber_id", name="uq_deliveries_issue_subscriber"),
    CheckConstraint(_in("status", DELIVERY_STATUSES), name="status"),
    Index("ix_deliveries_issue_status", "issue_key", "status"),
    Index("ix_deliveries_batch", "batch_id"),
)
