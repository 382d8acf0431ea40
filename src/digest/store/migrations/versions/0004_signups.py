"""Readers' own sign-ups: pending sign-ups awaiting confirmation, and each subscriber's consent record.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CONSENT = ("signed_up_at", "signup_source", "confirmed_at", "signup_ip_hash", "signup_user_agent")


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("signed_up_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("signup_source", sa.String(100)))
        batch.add_column(sa.Column("confirmed_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("signup_ip_hash", sa.String(64)))
        batch.add_column(sa.Column("signup_user_agent", sa.String(200)))
    op.create_table(
        "signups",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("nonce", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("sections", sa.JSON, nullable=False),
        sa.Column("source", sa.String(100), nullable=False, server_default=""),
        sa.Column("ip_hash", sa.String(64), nullable=False, server_default=""),
        sa.Column("user_agent", sa.String(200), nullable=False, server_default=""),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mailed_at", sa.DateTime(timezone=True)),
        sa.Column("confirmed_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_signups"),
        sa.UniqueConstraint("email_key", name="uq_signups_email_key"),
        sa.UniqueConstraint("nonce", name="uq_signups_nonce"),
    )
    op.create_index("ix_signups_requested_at", "signups", ["requested_at"])


def downgrade() -> None:
    op.drop_index("ix_signups_requested_at", table_name="signups")
    op.drop_table("signups")
    with op.batch_alter_table("subscribers") as batch:
        for column in reversed(CONSENT):
            batch.drop_column(column)
