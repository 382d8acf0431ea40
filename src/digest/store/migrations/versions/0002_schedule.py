"""Issue states and editors' edits, sent articles, scheduler runs, heartbeats, APScheduler jobs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ISSUE = "status IN ('draft', 'approved', 'sending', 'sent', 'skipped')"


def upgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        # Issues recorded before this revision were recorded by `digest send`: they are sending.
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="sending"))
        batch.add_column(sa.Column("send_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("approved_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("sent_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("note", sa.Text))
        batch.create_check_constraint("ck_issues_status", ISSUE)
    op.create_table(
        "issue_edits",
        sa.Column("issue_key", sa.String(16), primary_key=True),
        sa.Column("url", sa.String(2000), primary_key=True),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("action IN ('pin', 'exclude')", name="ck_issue_edits_action"),
    )
    op.create_table(
        "issue_articles",
        sa.Column("issue_key", sa.String(16), sa.ForeignKey("issues.key", ondelete="CASCADE"), primary_key=True),
        sa.Column("canonical_url", sa.String(2000), primary_key=True),
    )
    op.create_table(
        "scheduler_runs",
        sa.Column("run_key", sa.String(100), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("outcome", sa.Text),
    )
    op.create_table(
        "heartbeats",
        sa.Column("name", sa.String(50), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "apscheduler_jobs",
        sa.Column("id", sa.String(191), primary_key=True),
        sa.Column("next_run_time", sa.Float(25)),
        sa.Column("job_state", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_apscheduler_jobs_next_run_time", "apscheduler_jobs", ["next_run_time"])


def downgrade() -> None:
    for table in ("apscheduler_jobs", "heartbeats", "scheduler_runs", "issue_articles", "issue_edits"):
        op.drop_table(table)
    with op.batch_alter_table("issues") as batch:
        batch.drop_constraint("ck_issues_status", type_="check")
        for column in ("note", "sent_at", "approved_at", "send_at", "status"):
            batch.drop_column(column)
