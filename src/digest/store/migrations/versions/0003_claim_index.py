"""An index that serves the batch claim in order: (issue, status, variant, id).

The claim takes the next pending deliveries of one variant in id order; without this index the
database sorted every pending row of the issue on each claim, which grew with the list.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_deliveries_issue_status", table_name="deliveries")
    op.create_index("ix_deliveries_claim", "deliveries", ["issue_key", "status", "variant", "id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_claim", table_name="deliveries")
    op.create_index("ix_deliveries_issue_status", "deliveries", ["issue_key", "status"])
