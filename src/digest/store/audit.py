"""The desk's audit log: every action an editor takes there, who, what, when, on which issue.

Rows are only ever added; the editor is kept as their address (not a reference), so the log
still says who did what after an editor is removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from digest.store.engine import Repository, aware, utcnow
from digest.store.schema import audit_log


@dataclass(frozen=True, slots=True)
class Entry:
    at: datetime
    editor: str
    action: str
    issue_key: str | None
    detail: str


class Audit(Repository):
    def record(self, editor: str, action: str, issue_key: str | None = None, detail: str = "") -> None:
        with self.engine.begin() as conn:
            conn.execute(
                audit_log.insert().values(at=utcnow(), editor=editor, action=action, issue_key=issue_key, detail=detail)
            )

    def recent(self, *, issue_key: str | None = None, limit: int = 200) -> list[Entry]:
        """The newest entries first (of one issue, if given)."""
        query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if issue_key is not None:
            query = query.where(audit_log.c.issue_key == issue_key)
        with self.engine.connect() as conn:
            return [Entry(aware(r.at), r.editor, r.action, r.issue_key, r.detail) for r in conn.execute(query)]
