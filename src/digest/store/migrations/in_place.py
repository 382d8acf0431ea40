"""A SQLite table's definition edited in place, for the changes SQLite cannot ALTER.

SQLite can neither alter nor drop a constraint, and copying a table to change one would copy
every delivery of every issue ever sent. For a change that every row already satisfies (a CHECK
written another way, a FOREIGN KEY or CHECK taken away), SQLite documents another way: edit the
table's definition in ``sqlite_master`` and raise the schema's version, so that every connection
reads the definitions again (https://www.sqlite.org/lang_altertable.html#otheralter). Here that
happens in the migration's own transaction.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Connection

__all__ = ["rewrite_tables"]


def rewrite_tables(bind: Connection, rewrite: Callable[[str, str], str]) -> None:
    """Each table's definition as ``rewrite(name, sql)`` gives it, on a SQLite connection.

    Each table changed is read once afterwards: a definition SQLite cannot parse fails the
    migration here, and its transaction is rolled back, rather than leave a database that
    cannot be opened.
    """
    tables = bind.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all()
    changed = {name: new for name, sql in tables if sql and (new := rewrite(name, sql)) != sql}
    if not changed:
        return
    version = int(bind.exec_driver_sql("PRAGMA schema_version").scalar_one())
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        for name, sql in changed.items():
            bind.exec_driver_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (sql, name))
        bind.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")
    for name in changed:
        bind.exec_driver_sql(f'SELECT * FROM "{name}" LIMIT 0')
