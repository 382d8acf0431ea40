"""The claim index holds only claimable deliveries, and no index holds ``status``.

A batch updates each of its delivery rows twice: claimed, then finished. With ``status`` in the
claim index (0003) both updates wrote a new entry in each of the table's four indexes. Now the
claim index, on (issue, variant, id), holds only rows in no batch and with no error (pending
ones: every path that queues a delivery again clears both), so finishing a batch changes no
indexed column. On PostgreSQL that makes the finish a HOT update, written on the row's own page
without touching an index, when the page has room: the table keeps 30% of each new page free.

Pending rows recorded before this revision may carry the error of an earlier attempt; it is
cleared here so that they stay claimable.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

CLAIMABLE = sa.text("batch_id IS NULL AND error IS NULL")
FILLFACTOR = 70  # percent of each new table page filled by inserts; the rest is for updates


def upgrade() -> None:
    op.execute("UPDATE deliveries SET error = NULL WHERE status = 'pending' AND error IS NOT NULL")
    op.drop_index("ix_deliveries_claim", table_name="deliveries")
    op.create_index(
        "ix_deliveries_pending",
        "deliveries",
        ["issue_key", "variant", "id"],
        postgresql_where=CLAIMABLE,
        sqlite_where=CLAIMABLE,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE deliveries SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries RESET (fillfactor)")
    op.drop_index("ix_deliveries_pending", table_name="deliveries")
    op.create_index("ix_deliveries_claim", "deliveries", ["issue_key", "status", "variant", "id"])
