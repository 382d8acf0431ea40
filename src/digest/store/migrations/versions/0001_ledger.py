"""Subscribers, issues, variants, batches and per-recipient deliveries.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SUBSCRIBER = "status IN ('active', 'unsubscribed', 'bounced', 'complained')"
DELIVERY = "status IN ('pending', 'submitting', 'submitted', 'failed', 'unknown', 'skipped')"
BATCH = "status IN ('submitting', 'submitted', 'failed', 'unknown', 'retried')"


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("sections", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(SUBSCRIBER, name="ck_subscribers_status"),
        sa.UniqueConstraint("email_key", name="uq_subscribers_email_key"),
    )
    op.create_index("ix_subscribers_status", "subscribers", ["status"])
    op.create_table(
        "issues",
        sa.Column("key", sa.String(16), primary_key=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("article_count", sa.Integer, nullable=False),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "variants",
        sa.Column("issue_key", sa.String(16), sa.ForeignKey("issues.key", ondelete="CASCADE"), primary_key=True),
        sa.Column("variant", sa.String(64), primary_key=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("issue_key", sa.String(16), sa.ForeignKey("issues.key", ondelete="CASCADE"), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("transport", sa.String(16), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("claimed_by", sa.String(200), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("provider_id", sa.String(200)),
        sa.Column("error", sa.Text),
        sa.CheckConstraint(BATCH, name="ck_batches_status"),
    )
    op.create_index("ix_batches_issue_status", "batches", ["issue_key", "status"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("issue_key", sa.String(16), sa.ForeignKey("issues.key", ondelete="CASCADE"), nullable=False),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("batch_id", sa.Integer, sa.ForeignKey("batches.id", ondelete="SET NULL")),
        sa.Column("error", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("issue_key", "subscriber_id", name="uq_deliveries_issue_subscriber"),
        sa.CheckConstraint(DELIVERY, name="ck_deliveries_status"),
    )
    op.create_index("ix_deliveries_issue_status", "deliveries", ["issue_key", "status"])
    op.create_index("ix_deliveries_batch", "deliveries", ["batch_id"])


def downgrade() -> None:
    for table in ("deliveries", "batches", "variants", "issues", "subscribers"):
        op.drop_table(table)
