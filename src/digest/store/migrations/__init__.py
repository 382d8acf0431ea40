"""Alembic migrations for digest's database; ``store.upgrade`` runs them on every open."""

# The newest revision in versions/: with it, opening a database already there costs one query
# instead of importing and running Alembic (about a third of a second on every `digest build`).
# Bump it with every new migration; tests/store/test_store.py checks it against Alembic's head.
HEAD = "0010"
