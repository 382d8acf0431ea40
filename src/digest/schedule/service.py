"""The scheduler service (`digest schedule`): APScheduler wiring around the jobs, and nothing else.

- The send job fires on ``[schedule] cron`` in the newsletter's zone (APScheduler's cron
  trigger keeps local wall-clock time across daylight-saving changes). With ``review_hours`` a
  review job fires that many hours earlier and builds the draft (jobs.py).
- Jobs live in the project's database (APScheduler's SQLAlchemy job store): after a restart a
  run missed within ``grace`` fires once (``coalesce``); one missed by more is skipped and the
  editors are told. Issues are never sent late.
- A heartbeat, on a thread of its own, tells `digest health` the process is alive (health.py).
- SIGTERM/SIGINT set ``jobs.STOP``: the send finishes the batch in flight, takes no new one, and
  the process exits 0. The run stays unfinished; the next start adopts it and completes the
  issue if still within the grace.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.triggers.base import BaseTrigger

from digest.config import load
from digest.cron import cron_trigger
from digest.delivery import notify
from digest.issue import rank
from digest.models import IssueKey
from digest.schedule import health
from digest.schedule.jobs import REVIEW_JOB, SEND_JOB, STOP, open_store, resume_job
from digest.schedule.triggers import EarlierTrigger, fire_of, run_key
from digest.store import Store

log = logging.getLogger("digest.schedule")

# The names the job store keeps for the weekly jobs. They are what the first release stored, and a
# job whose function cannot be found by its stored name is dropped at start-up with its missed
# run, so they stay these names wherever the functions live (digest/schedule/__init__.py).
JOB_FUNCTIONS = {SEND_JOB: "digest.schedule:send_job", REVIEW_JOB: "digest.schedule:review_job"}


class Service:
    """The long-running scheduler process (`digest schedule`)."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = str(Path(config_path).resolve())
        self.settings = load(self.config_path)
        self.scheduler: Any = None
        self.store: Store | None = None

    def triggers(self) -> dict[str, BaseTrigger]:
        cfg = self.settings.schedule
        send = cron_trigger(cfg.cron, self.settings.newsletter.zone)
        found: dict[str, BaseTrigger] = {SEND_JOB: send}
        if cfg.review_hours:
            found[REVIEW_JOB] = EarlierTrigger(send, cfg.review_hours)
        return found

    def start(self) -> None:
        """Start the scheduler in the background (jobs from the database, missed runs handled)."""
        from apscheduler.events import EVENT_JOB_MISSED
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        STOP.clear()  # a Service started again in the same process (after stop()) must send
        store = open_store(self.settings)  # migrates the schema, the job table included
        grace = int(self.settings.schedule.grace_seconds)
        self.scheduler = BackgroundScheduler(
            jobstores={
                "default": SQLAlchemyJobStore(engine=store.engine, tablename="apscheduler_jobs"),
                "memory": MemoryJobStore(),
            },
            # the heartbeat has a thread of its own: a long send must not make the process look dead
            executors={"default": ThreadPoolExecutor(1), "heartbeat": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": grace},
            timezone=self.settings.newsletter.zone,
        )
        self.scheduler.add_listener(self._missed, EVENT_JOB_MISSED)
        self.scheduler.start(paused=True)
        self._install_jobs()
        self.store = store  # kept for the heartbeat, which must stay cheap
        self.scheduler.add_job(
            store.runs.beat,
            "interval",
            seconds=health.HEARTBEAT_SECONDS,
            id="heartbeat",
            jobstore="memory",
            executor="heartbeat",
            next_run_time=datetime.now(UTC),
        )
        self._resume_interrupted(store)
        self.scheduler.resume()
        for job in self.scheduler.get_jobs(jobstore="default"):
            log.info("%s: next run %s", job.id, job.next_run_time)

    def _install_jobs(self) -> None:
        """Add the jobs, keeping a stored job (and its missed run) when its trigger is unchanged."""
        wanted = self.triggers()
        for job in self.scheduler.get_jobs(jobstore="default"):
            if job.id not in wanted:
                job.remove()
        for job_id, trigger in wanted.items():
            current = self.scheduler.get_job(job_id, jobstore="default")
            if current is not None and self._unchanged(current, trigger):
                continue
            self.scheduler.add_job(
                JOB_FUNCTIONS[job_id],
                trigger,
                args=[self.config_path],
                id=job_id,
                jobstore="default",
                replace_existing=True,
            )

    def _unchanged(self, job: Any, trigger: BaseTrigger) -> bool:
        """A stored job is kept (with its missed run) only if it would be added the same way."""
        # repr, not str: a CronTrigger's str leaves out its time zone
        return (
            repr(job.trigger) == repr(trigger)
            and job.args == (self.config_path,)
            and job.func_ref == JOB_FUNCTIONS[job.id]
        )

    def _resume_interrupted(self, store: Store) -> None:
        """An unfinished send run within the grace (stopped by SIGTERM or a crash) is completed."""
        grace = timedelta(seconds=self.settings.schedule.grace_seconds)
        now = datetime.now(UTC)
        for key in store.runs.unfinished():
            job, _, stamp = key.partition("@")
            if job != SEND_JOB:
                continue
            if now - fire_of(stamp) <= grace:
                log.info("%s was interrupted; completing it", key)
                self.scheduler.add_job(
                    resume_job, args=[self.config_path, stamp], id=f"resume-{stamp}", jobstore="memory"
                )

    def _missed(self, event: Any) -> None:
        """A send missed by more than the grace: recorded as skipped (once, whichever scheduler
        sees it) and the editors told; it is never sent late."""
        assert self.store is not None  # set by start() before the scheduler runs a job
        if event.job_id != SEND_JOB:
            log.warning("%s missed its run at %s (past the grace); skipped", event.job_id, event.scheduled_run_time)
            return
        fire = event.scheduled_run_time
        run = run_key(SEND_JOB, fire)
        if not self.store.runs.claim(run):  # a second scheduler on this database saw it too
            return
        key = str(IssueKey.at(fire, self.settings.newsletter.zone))
        window = rank.issue_window(fire, self.settings.issue.window_days)
        self.store.issues.skip(key, "missed by more than the grace; not sent late", window=(window.start, window.end))
        self.store.runs.finish(run, "skipped: missed by more than the grace")
        notify.tell_editors(
            self.settings,
            key,
            f"{key} was not sent",
            f"the send due at {event.scheduled_run_time:%Y-%m-%d %H:%M %Z} was missed by more than the grace "
            f"({self.settings.schedule.grace}) while the scheduler was down; it is skipped, not sent late",
        )

    def stop(self) -> None:
        """Take no new batch, let the batch in flight finish and be recorded, then stop."""
        STOP.set()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=True)
            if self.store is not None:
                self.store.close()

    def run_forever(self) -> None:
        """Start, then wait for SIGTERM or SIGINT; return (exit 0) once stopped cleanly."""
        stopping = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("received %s; finishing the batch in flight", signal.Signals(signum).name)
            stopping.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        while not stopping.wait(1.0):
            pass
        self.stop()
