"""On SQLite, each status check compares with its allowed words one by one, not with an IN list.

SQLite evaluates ``CHECK (status IN ('pending', 'submitting', ...))`` by building a temporary
b-tree of the list's words for every row it inserts or updates: a query builds such a table
once, but the code of a constraint runs once per row and may not. A page of memory zeroed and
six inserts per row made the status check the largest part of claiming and finishing a batch:
with ``status = 'pending' OR status = 'submitting' OR ...`` instead, claiming and finishing
1,000 deliveries in plain SQLite took 38.7 M instructions against 64.5 M (callgrind), and in a
send's code, in turns with the code before (``bench/bench_batch_parts.py --before``), the claim
8.9 ms against 10.8 and the finish 2.35 ms against 4.0. Queueing a delivery and adding a
subscriber paid it too.

SQLite cannot alter a constraint, and copying the tables would copy every delivery of every
issue ever sent. The words allowed do not change, so every row already satisfies the new
checks, and SQLite documents this case: its table definitions are edited in place
(``in_place.rewrite_tables``).

PostgreSQL plans ``IN`` as one comparison with an array: nothing changes there.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import re
from collections.abc import Callable

from alembic import op

from digest.store.migrations.in_place import rewrite_tables

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

WORD = r"'[a-z_]+'"
IN_LIST = re.compile(rf"CHECK \((\w+) IN \(({WORD}(?:, {WORD})*)\)\)")
ONE_OF = re.compile(rf"CHECK \(((\w+) = {WORD}(?: OR \2 = {WORD})*)\)")


def _one_by_one(match: re.Match[str]) -> str:
    column, words = match.group(1), re.findall(WORD, match.group(2))
    return "CHECK (" + " OR ".join(f"{column} = {word}" for word in words) + ")"


def _as_list(match: re.Match[str]) -> str:
    column, words = match.group(2), re.findall(WORD, match.group(1))
    return f"CHECK ({column} IN ({', '.join(words)}))"


def upgrade() -> None:
    _rewrite_checks(IN_LIST, _one_by_one)


def downgrade() -> None:
    _rewrite_checks(ONE_OF, _as_list)


def _rewrite_checks(pattern: re.Pattern[str], rewrite: Callable[[re.Match[str]], str]) -> None:
    """Rewrite the checks ``pattern`` finds in SQLite's table definitions in place."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        rewrite_tables(bind, lambda _, sql: pattern.sub(rewrite, sql))
