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
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    true,
)

from digest.models import BatchStatus, DeliveryStatus, IssueStatus, SubscriberStatus

# The states are declared (and explained) in digest.models; the CHECK constraints list their values.
SUBSCRIBER_STATUSES = tuple(s.value for s in SubscriberStatus)
DELIVERY_STATUSES = tuple(s.value for s in DeliveryStatus)
BATCH_STATUSES = tuple(s.value for s in BatchStatus)
ISSUE_STATUSES = tuple(s.value for s in IssueStatus)
EDIT_ACTIONS = ("pin", "exclude", "move")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    """A check that ``column`` holds one of ``values``: comparisons joined by OR, because SQLite
    builds a temporary table of an IN list in a constraint for every row written (migration
    0008, which is how SQLite databases get it; PostgreSQL's keep the IN list of 0001)."""
    return " OR ".join(f"{column} = {value!r}" for value in values)


subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False, server_default=""),
    Column("status", String(16), nullable=False, server_default=SubscriberStatus.ACTIVE.value),
    Column("sections", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The consent record of a reader who signed up on /subscribe (empty for an import): when
    # they asked, from where, when they confirmed, a keyed hash of their IP and their user agent.
    Column("signed_up_at", DateTime(timezone=True)),
    Column("signup_source", String(100)),
    Column("confirmed_at", DateTime(timezone=True)),
    Column("signup_ip_hash", String(64)),
    Column("signup_user_agent", String(200)),
    CheckConstraint(_one_of("status", SUBSCRIBER_STATUSES), name="status"),
    Index("ix_subscribers_status", "status"),
)

# Sign-ups waiting for their confirmation link to be used, one per address. Kept apart from
# ``subscribers`` so a pending address is on no list that picks recipients, and a suppressed one
# stays suppressed until it confirms. ``nonce`` is what the signed link names; ``mailed_at`` when
# the last confirmation mail went out (at most one per address in 10 minutes).
signups = Table(
    "signups",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False, unique=True),
    Column("nonce", String(32), nullable=False, unique=True),
    Column("name", String(200), nullable=False, server_default=""),
    Column("sections", JSON, nullable=False),
    Column("source", String(100), nullable=False, server_default=""),
    Column("ip_hash", String(64), nullable=False, server_default=""),
    Column("user_agent", String(200), nullable=False, server_default=""),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("mailed_at", DateTime(timezone=True)),
    Column("confirmed_at", DateTime(timezone=True)),
    Index("ix_signups_requested_at", "requested_at"),
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
    Column("status", String(16), nullable=False, server_default=IssueStatus.SENDING.value),
    Column("send_at", DateTime(timezone=True)),
    Column("approved_at", DateTime(timezone=True)),
    Column("sent_at", DateTime(timezone=True)),
    Column("note", Text),
    Column("approved_by", String(320)),  # the editor (or `digest approve`'s user) who approved it
    CheckConstraint(_one_of("status", ISSUE_STATUSES), name="status"),
)

# Editors' choices for one issue, kept apart from the snapshot so a rebuild applies them: a pin,
# an exclusion, or a move (the article's place, ``position``, among the moved ones of its section).
issue_edits = Table(
    "issue_edits",
    metadata,
    Column("issue_key", String(16), primary_key=True),
    Column("url", String(2000), primary_key=True),
    Column("action", String(8), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("position", Integer),
    CheckConstraint(_one_of("action", EDIT_ACTIONS), name="action"),
)

# What opens an issue, as its editors wrote it (``models.Front``); every (re)build applies it.
issue_fronts = Table(
    "issue_fronts",
    metadata,
    Column("issue_key", String(16), primary_key=True),
    Column("subject", Text, nullable=False, server_default=""),
    Column("preheader", Text, nullable=False, server_default=""),
    Column("note", Text, nullable=False, server_default=""),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The articles an issue carries, so a later issue never repeats one already sent.
issue_articles = Table(
    "issue_articles",
    metadata,
    Column("issue_key", String(16), ForeignKey("issues.key", ondelete="CASCADE"), primary_key=True),
    Column("canonical_url", String(2000), primary_key=True),
)

# One row per scheduled run (job and fire time): whoever inserts it runs it, so two schedulers
# on one database never both send, and a restart knows what already ran.
scheduler_runs = Table(
    "scheduler_runs",
    metadata,
    Column("run_key", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("outcome", Text),
)

# The scheduler's pulse, read by `digest health` (the container HEALTHCHECK).
heartbeats = Table(
    "heartbeats",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("beat_at", DateTime(timezone=True), nullable=False),
)

# APScheduler's own job store table, declared here (exactly as APScheduler 3 defines it) so the
# schema has one owner: the migrations.
apscheduler_jobs = Table(
    "apscheduler_jobs",
    metadata,
    Column("id", String(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
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
    # False while a batch is claimed ahead (built while the one before it is in flight) and not
    # yet handed to the transport: a crash then leaves it to go back to pending, not to unknown.
    Column("handed_over", Boolean, nullable=False, server_default=true()),
    Column("finished_at", DateTime(timezone=True)),
    Column("provider_id", String(200)),
    Column("error", Text),
    CheckConstraint(_one_of("status", BATCH_STATUSES), name="status"),
    Index("ix_batches_issue_status", "issue_key", "status"),
)

# No foreign keys (migration 0009): a send writes each row three times, a million a week, and a
# key's check is a query per row. What they guarded is done where the rows are written: queued
# only for a recorded issue, deleted with their subscriber (subscribers.forget), taken out of a
# batch that is deleted (ledger._put_back); one left by someone forgotten mid-queue is skipped.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue_key", String(16), nullable=False),
    Column("subscriber_id", Integer, nullable=False),
    Column("variant", String(64), nullable=False),
    Column("status", String(16), nullable=False, server_default=DeliveryStatus.PENDING.value),
    Column("batch_id", Integer),
    Column("error", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("issue_key", "subscriber_id", name="uq_deliveries_issue_subscriber"),
    CheckConstraint(_one_of("status", DELIVERY_STATUSES), name="status"),
    # The claim index: a claim walks it in (variant, id) order. It holds every delivery, and
    # neither ``status`` nor ``batch_id`` is in any index: claiming and finishing a batch change
    # no indexed column, so on PostgreSQL each row's update is a HOT update, written on the
    # row's own page without touching an index (the table keeps room on each page for it,
    # migration 0010). A batch's deliveries are found by this index too (``ledger._in_batch``).
    Index("ix_deliveries_queue", "issue_key", "variant", "id"),
)

# A delivery a claim may take: pending, so in no batch and with no error (every path that queues
# one again clears both).
CLAIMABLE = deliveries.c.batch_id.is_(None) & deliveries.c.error.is_(None)

# The editors who may sign in to the desk (`digest editors add`): an address and an argon2 hash.
editors = Table(
    "editors",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Signed-in editors. The cookie carries a random token; only its SHA-256 is kept, so a copy of
# the database signs nobody in. ``csrf`` is the session's token every desk form posts back.
desk_sessions = Table(
    "desk_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("editor_id", Integer, ForeignKey("editors.id", ondelete="CASCADE"), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_desk_sessions_expires_at", "expires_at"),
)

# Every action taken at the desk: who (the editor's address), what, when, and on which issue.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("editor", String(320), nullable=False),
    Column("action", String(40), nullable=False),
    Column("issue_key", String(16)),
    Column("detail", Text, nullable=False, server_default=""),
    Index("ix_audit_log_issue_key", "issue_key"),
)

# Each suppression as it took effect (a subscriber's status made stronger): when, how (``source``:
# webhook, one-click, web page) and, when it can be told, the issue it came from. The desk's
# report of an issue counts the bounces, complaints and unsubscribes that came from it.
suppressions = Table(
    "suppressions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("source", String(16), nullable=False),
    Column("issue_key", String(16)),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_suppressions_issue_key", "issue_key"),
)
