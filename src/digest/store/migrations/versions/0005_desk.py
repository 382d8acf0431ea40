"""The editors' desk: editors and their sessions; moved articles and each issue's own front
(subject, preheader, editor's note); who approved an issue; the desk's audit log; each
suppression with the issue it came from.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "editors",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_editors"),
        sa.UniqueConstraint("email_key", name="uq_editors_email_key"),
    )
    op.create_table(
        "desk_sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("editor_id", sa.Integer, nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_desk_sessions"),
        sa.ForeignKeyConstraint(
            ["editor_id"], ["editors.id"], name="fk_desk_sessions_editor_id_editors", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_desk_sessions_expires_at", "desk_sessions", ["expires_at"])
    with op.batch_alter_table("issue_edits") as batch:
        batch.add_column(sa.Column("position", sa.Integer))
        batch.drop_constraint("ck_issue_edits_action", type_="check")
        batch.create_check_constraint("ck_issue_edits_action", "action IN ('pin', 'exclude', 'move')")
    op.create_table(
        "issue_fronts",
        sa.Column("issue_key", sa.String(16), nullable=False),
        sa.Column("subject", sa.Text, nullable=False, server_default=""),
        sa.Column("preheader", sa.Text, nullable=False, server_default=""),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("issue_key", name="pk_issue_fronts"),
    )
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("approved_by", sa.String(320)))
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("editor", sa.String(320), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("issue_key", sa.String(16)),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_issue_key", "audit_log", ["issue_key"])
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("issue_key", sa.String(16)),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_suppressions"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"], ["subscribers.id"], name="fk_suppressions_subscriber_id_subscribers", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_suppressions_issue_key", "suppressions", ["issue_key"])


def downgrade() -> None:
    op.drop_index("ix_suppressions_issue_key", table_name="suppressions")
    op.drop_table("suppressions")
    op.drop_index("ix_audit_log_issue_key", table_name="audit_log")
    op.drop_table("audit_log")
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("approved_by")
    op.drop_table("issue_fronts")
    op.execute("DELETE FROM issue_edits WHERE action = 'move'")
    with op.batch_alter_table("issue_edits") as batch:
        batch.drop_constraint("ck_issue_edits_action", type_="check")
        batch.create_check_constraint("ck_issue_edits_action", "action IN ('pin', 'exclude')")
        batch.drop_column("position")
    op.drop_index("ix_desk_sessions_expires_at", table_name="desk_sessions")
    op.drop_table("desk_sessions")
    op.drop_table("editors")
