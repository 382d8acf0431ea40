"""Alembic migrations for digest's database; ``store.upgrade`` runs them on every open."""
