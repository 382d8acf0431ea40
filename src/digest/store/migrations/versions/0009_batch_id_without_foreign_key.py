"""A delivery's ``batch_id`` no longer has a foreign key to ``batches``.

The key's only action was to clear a delivery's batch when the batch row is deleted, and the
one place that deletes batches (``ledger._put_back``) clears them itself. Its check cost every
claim dearly: marking 1,000 deliveries as claimed ran the key's trigger once per row, each a
query locking the batch's row, and on PostgreSQL that was about 40% of the server's work for a
claim (a send of 200,000 on this machine, one process: the claims' server CPU 5.58 s with the
key, 3.29 s without; 33.7 ms a claim against 22.3 ms). A send of a million makes 1,000 claims.

On SQLite the key is taken out of the table's definition in place (``in_place``), as SQLite
documents for removing a FOREIGN KEY constraint: no row needs to change, and copying the table
would copy every delivery ever recorded.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import re

from alembic import op

from digest.store.migrations.in_place import rewrite_tables

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

NAME = "fk_deliveries_batch_id_batches"
# As SQLAlchemy wrote it into the definition of a SQLite database's deliveries table (0001).
CLAUSE = f"CONSTRAINT {NAME} FOREIGN KEY(batch_id) REFERENCES batches (id) ON DELETE SET NULL"
IN_DEFINITION = re.compile(rf",\s*{re.escape(CLAUSE)}")
LAST_LINE = re.compile(r"\n\)\s*$")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        rewrite_tables(bind, lambda name, sql: IN_DEFINITION.sub("", sql) if name == "deliveries" else sql)
    else:
        op.drop_constraint(NAME, "deliveries", type_="foreignkey")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        rewrite_tables(bind, lambda name, sql: _with_key(sql) if name == "deliveries" else sql)
    else:
        op.create_foreign_key(NAME, "deliveries", "batches", ["batch_id"], ["id"], ondelete="SET NULL")


def _with_key(sql: str) -> str:
    """The deliveries table's definition with the key as its last constraint, as 0001 made it."""
    return sql if CLAUSE in sql else LAST_LINE.sub(f", \n\t{CLAUSE}\n)", sql)
