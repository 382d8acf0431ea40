"""The deliveries table has no foreign keys: its rows are checked where they are written.

A send writes every delivery row three times (queued, claimed, finished), a million rows for a
million readers every week, and each foreign key is a trigger that runs a query for every row
it checks, locking the row referred to. Measured on PostgreSQL (one process, 200,000
recipients; ``EXPLAIN ANALYZE`` of a queueing statement of 50,000): queueing spent 273 ms in
the issue key's trigger and 341 ms in the subscriber key's, against 566 ms for the inserts
themselves, and a claim of 1,000 spent about 40% of the server's work in the batch key's
(claims' server CPU 5.58 s with it, 3.29 s without). What each key guarded is done where the
rows are written instead:

- ``issue_key``: deliveries are queued by one INSERT .. SELECT that selects nothing unless the
  issue is recorded (``ledger._queue_by_choice``), a reader's welcome copy only for a recorded
  issue (``ledger.claim_one``). digest never deletes an issue, so the cascade never ran.
- ``subscriber_id``: forgetting a subscriber deletes their deliveries in the same transaction
  (``subscribers.forget``), as the cascade did. A delivery queued for someone forgotten while
  the queueing statement ran (which the key turned into an error that stopped the send) is
  marked skipped by the claim, like anyone who left before their batch.
- ``batch_id``: its action cleared a delivery's batch when the batch row was deleted, and the
  one place that deletes batches (``ledger._put_back``) does that itself.

On SQLite the keys are taken out of the table's definition in place (``in_place``), as SQLite
documents for removing a FOREIGN KEY constraint: no row changes, and copying the table would
copy every delivery ever recorded.

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

# (name, column, table referred to, its column as SQLAlchemy wrote it into the definition of a
# SQLite database's deliveries table (quoted when a keyword), on delete), in 0001's order.
KEYS = (
    ("fk_deliveries_issue_key_issues", "issue_key", "issues", '"key"', "CASCADE"),
    ("fk_deliveries_subscriber_id_subscribers", "subscriber_id", "subscribers", "id", "CASCADE"),
    ("fk_deliveries_batch_id_batches", "batch_id", "batches", "id", "SET NULL"),
)
CLAUSES = tuple(
    f"CONSTRAINT {name} FOREIGN KEY({column}) REFERENCES {table} ({to}) ON DELETE {action}"
    for name, column, table, to, action in KEYS
)
IN_DEFINITION = re.compile("|".join(rf",\s*{re.escape(clause)}" for clause in CLAUSES))
LAST_LINE = re.compile(r"\n\)\s*$")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        rewrite_tables(bind, lambda name, sql: IN_DEFINITION.sub("", sql) if name == "deliveries" else sql)
        return
    for name, *_ in KEYS:
        op.drop_constraint(name, "deliveries", type_="foreignkey")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        rewrite_tables(bind, lambda name, sql: _with_keys(sql) if name == "deliveries" else sql)
        return
    for name, column, table, to, action in KEYS:
        op.create_foreign_key(name, "deliveries", table, [column], [to.strip('"')], ondelete=action)


def _with_keys(sql: str) -> str:
    """The deliveries table's definition with its keys as its last constraints, as 0001 made it."""
    missing = "".join(f", \n\t{clause}" for clause in CLAUSES if clause not in sql)
    return LAST_LINE.sub(f"{missing}\n)", sql) if missing else sql
