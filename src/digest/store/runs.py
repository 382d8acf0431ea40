"""The scheduler's runs and heartbeat.

One row per scheduled run (job and fire time): whoever inserts it runs it, so two schedulers on
one database never both send, and a restart knows what already ran and what a stopped process
left unfinished. The heartbeat is what ``digest health`` reads.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from digest.store.engine import Repository, alive, aware, claimer_id, utcnow
from digest.store.schema import heartbeats, scheduler_runs


class Runs(Repository):
    """Scheduled runs claimed, adopted after a crash and finished; the scheduler's pulse."""

    def claim(self, run_key: str) -> bool:
        """Take a scheduled run (job and fire time); False if another process already has it."""
        with self.engine.begin() as conn:
            got = conn.execute(
                self.insert(scheduler_runs)
                .values(run_key=run_key, holder=claimer_id(), started_at=utcnow())
                .on_conflict_do_nothing()
                .returning(scheduler_runs.c.run_key)
            ).scalar()
        return got is not None

    def adopt(self, run_key: str, *, lease: timedelta) -> bool:
        """Take over an unfinished run whose process is gone (a restart after SIGTERM or a crash)."""
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(scheduler_runs).where(scheduler_runs.c.run_key == run_key)).first()
            if row is None or row.finished_at is not None or alive(row.holder, lease, row.started_at, now):
                return False
            taken = conn.execute(
                scheduler_runs.update()
                .where(
                    scheduler_runs.c.run_key == run_key,
                    scheduler_runs.c.holder == row.holder,
                    scheduler_runs.c.finished_at.is_(None),
                )
                .values(holder=claimer_id())
            ).rowcount
        return bool(taken)  # another restarting process may have adopted it a moment ago

    def unfinished(self) -> list[str]:
        """Runs started and never finished (their process stopped, or is still at work)."""
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(scheduler_runs.c.run_key).where(scheduler_runs.c.finished_at.is_(None))
                ).scalars()
            )

    def finish(self, run_key: str, outcome: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                scheduler_runs.update()
                .where(scheduler_runs.c.run_key == run_key)
                .values(finished_at=utcnow(), outcome=outcome[:2000])
            )

    def outcome(self, run_key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(scheduler_runs.c.outcome).where(scheduler_runs.c.run_key == run_key)).scalar()

    def beat(self, name: str = "scheduler") -> None:
        """Record that the scheduler is alive (read by `digest health`)."""
        values = {"holder": claimer_id(), "beat_at": utcnow()}
        stmt = self.insert(heartbeats).values(name=name, **values)
        stmt = stmt.on_conflict_do_update(index_elements=[heartbeats.c.name], set_=values)
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def last_beat(self, name: str = "scheduler") -> tuple[str, datetime] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(heartbeats).where(heartbeats.c.name == name)).first()
        return (row.holder, aware(row.beat_at)) if row else None
