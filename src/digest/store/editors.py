"""Editors of the desk and their sessions.

An editor is an address and an argon2 hash (hashing is ``delivery.desk``'s; this repository only
keeps what it is given). A session is the SHA-256 of the random token in the editor's cookie,
the session's CSRF token and when it ends: ending it (signing out, removing the editor, a new
password) deletes the row, so a copied cookie stops working at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from digest.store.engine import Repository, aware, utcnow
from digest.store.schema import desk_sessions, editors
from digest.store.subscribers import email_key


@dataclass(frozen=True, slots=True)
class Editor:
    id: int
    email: str
    password_hash: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DeskSession:
    """A signed-in editor: who, the CSRF token their forms carry, and when it ends."""

    editor_id: int
    email: str
    csrf: str
    expires_at: datetime


class Editors(Repository):
    """The desk's editors and their sessions."""

    def save(self, email: str, password_hash: str) -> bool:
        """Add an editor, or give an existing one a new password hash (which ends their sessions).
        True if the editor is new."""
        key = email_key(email)
        with self.engine.begin() as conn:
            found = conn.execute(sa.select(editors.c.id).where(editors.c.email_key == key)).scalar()
            if found is None:
                conn.execute(
                    editors.insert().values(
                        email=email, email_key=key, password_hash=password_hash, created_at=utcnow()
                    )
                )
                return True
            conn.execute(editors.update().where(editors.c.id == found).values(password_hash=password_hash))
            conn.execute(desk_sessions.delete().where(desk_sessions.c.editor_id == found))
            return False

    def rehash(self, editor_id: int, password_hash: str) -> None:
        """Store a stronger hash of the same password (argon2's parameters were raised)."""
        with self.engine.begin() as conn:
            conn.execute(editors.update().where(editors.c.id == editor_id).values(password_hash=password_hash))

    def remove(self, email: str) -> bool:
        """Delete an editor and every session of theirs; False if there was none."""
        with self.engine.begin() as conn:
            return bool(conn.execute(editors.delete().where(editors.c.email_key == email_key(email))).rowcount)

    def by_email(self, email: str) -> Editor | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(editors).where(editors.c.email_key == email_key(email))).first()
        return _editor(row) if row else None

    def every(self) -> list[Editor]:
        with self.engine.connect() as conn:
            return [_editor(r) for r in conn.execute(sa.select(editors).order_by(editors.c.email_key))]

    # --- sessions ------------------------------------------------------------------------------

    def open_session(self, editor_id: int, token_hash: str, csrf: str, expires_at: datetime) -> None:
        """Record a new session, and sweep the ones that have ended (no job needed for that)."""
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(desk_sessions.delete().where(desk_sessions.c.expires_at <= now))
            conn.execute(
                desk_sessions.insert().values(
                    token_hash=token_hash, editor_id=editor_id, csrf=csrf, created_at=now, expires_at=expires_at
                )
            )

    def session(self, token_hash: str, now: datetime) -> DeskSession | None:
        """The session a cookie's token names, if it has not ended by ``now``."""
        query = (
            sa.select(desk_sessions.c.editor_id, editors.c.email, desk_sessions.c.csrf, desk_sessions.c.expires_at)
            .join(editors, editors.c.id == desk_sessions.c.editor_id)
            .where(desk_sessions.c.token_hash == token_hash)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None or aware(row.expires_at) <= now:
            return None
        return DeskSession(row.editor_id, row.email, row.csrf, aware(row.expires_at))

    def end_session(self, token_hash: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(desk_sessions.delete().where(desk_sessions.c.token_hash == token_hash))


def _editor(row: Any) -> Editor:
    return Editor(row.id, row.email, row.password_hash, aware(row.created_at))
