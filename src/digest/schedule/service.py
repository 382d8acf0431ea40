"""The scheduler service: APScheduler wiring around the weekly run, and nothing else.

- The send job fires on ``[schedule] cron`` in the newsletter's zone (APScheduler's cron
  trigger keeps local wall-clock time across daylight-saving changes). With ``review_hours`` a
  review job fires that many hours earlier and builds the draft.
- Jobs live in the project's database (APScheduler's SQLAlchemy job store): after a restart a
  run missed within ``grace`` fires once (``coalesce``); one missed by more is skipped and the
  editors are told. Issues are never sent late.
- Each fire is claimed as a row in ``scheduler_runs`` before anything happens, so two schedulers
  on one database (two containers, two hosts) never both run it; the ledger below makes each
  recipient's delivery unique anyway.
- SIGTERM/SIGINT set ``STOP``: the send finishes the batch in flight, takes no new one, and the
  process exits 0. The run stays unfinished; the next start adopts it and completes the issue if
  still within the grace.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

log = logging.getLogger("digest.schedule")

SEND_JOB = "weekly-send"
REVIEW_JOB = "weekly-review"
HEARTBEAT_SECONDS = 30
STOP = threading.Event()  # set on SIGTERM/SIGINT; checked between batches and between retries

_DOW = {"0": "sun", "1": "mon", "2": "tue", "3": "wed", "4": "thu", "5": "fri", "6": "sat", "7": "sun"}


def cron_trigger(expr: str, zone: ZoneInfo) -> CronTrigger:
    """A trigger from a standard 5-field crontab line.

    APScheduler 3 numbers weekdays from Monday = 0, unlike cron (Sunday = 0 or 7), so numeric
    weekdays are turned into names first: ``0 9 * * 5`` means Friday, as in crontab(5).
    """
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    fields[4] = ",".join(_weekday_names(part) for part in fields[4].split(","))
    return CronTrigger.from_crontab(" ".join(fields), timezone=zone)


def _weekday_names(part: str) -> str:
    """One comma-separated item of a crontab weekday field with its numbers as day names.

    Ranges and steps are expanded into a list (``0-6`` -> ``sun,mon,...,sat``, ``*/2`` ->
    ``sun,tue,thu,sat``): APScheduler's names run from Monday, so ``sun-sat`` would be backwards.
    """
    found = re.fullmatch(r"(\*|\d)(?:-(\d))?(?:/(\d+))?", part)
    if found is None or part == "*":
        return part  # names, or something APScheduler will judge
    first, last, step = found.groups()
    low = 0 if first == "*" else int(first)
    high = 6 if first == "*" else int(last) if last else 7 if step else low
    if high < low or high > 7 or (step is not None and int(step) < 1):
        raise ValueError(f"weekday {part!r} is not 0-7 (0 and 7 = Sunday), a range or a step of them")
    return ",".join(dict.fromkeys(_DOW[str(day)] for day in range(low, high + 1, int(step or 1))))


class EarlierTrigger(BaseTrigger):
    """Fires ``hours`` before each fire of ``base``: the review job, N hours before the send."""

    def __init__(self, base: CronTrigger, hours: int) -> None:
        self.base = base
        self.hours = hours

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        shift = timedelta(hours=self.hours)
        prev = previous_fire_time + shift if previous_fire_time else None
        nxt = self.base.get_next_fire_time(prev, now + shift)
        return nxt - shift if nxt else None

    def __str__(self) -> str:
        return f"{self.hours}h before {self.base}"

    def __repr__(self) -> str:
        return f"<EarlierTrigger ({self.hours}h before {self.base!r})>"


def next_sends(cron: str, zone: ZoneInfo, count: int, start: datetime) -> list[datetime]:
    """The next ``count`` send times after ``start``, aware in the newsletter's zone."""
    trigger = cron_trigger(cron, zone)
    times: list[datetime] = []
    prev: datetime | None = None
    now = start
    while len(times) < count:
        nxt = trigger.get_next_fire_time(prev, now)
        if nxt is None:
            break
        times.append(nxt)
        prev, now = nxt, nxt + timedelta(seconds=1)
    return times


def last_fire(trigger: BaseTrigger, now: datetime, lookback: timedelta = timedelta(days=8)) -> datetime | None:
    """The latest fire time at or before ``now`` (the run a job is doing, or missed)."""
    found = None
    moment = trigger.get_next_fire_time(None, now - lookback)
    while moment is not None and moment <= now:
        found = moment
        moment = trigger.get_next_fire_time(moment, moment + timedelta(seconds=1))
    return found


def run_key(job: str, fire: datetime) -> str:
    return f"{job}@{fire.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


# --- the jobs (module-level, so the job store can name them) ---------------------------------


def send_job(config_path: str) -> None:
    """The scheduled send: the same code as `digest send`, for the fire time being run."""
    from digest.config import load

    settings = load(config_path)
    trigger = cron_trigger(settings.schedule.cron, settings.newsletter.zone)
    fire = last_fire(trigger, datetime.now(UTC))
    if fire is None:
        return
    _run_once(settings, SEND_JOB, fire, lambda store: _send(settings, store, fire))


def review_job(config_path: str) -> None:
    """The scheduled review: build the draft for the coming send and send editors a copy."""
    from digest.config import load

    settings = load(config_path)
    cfg = settings.schedule
    trigger = EarlierTrigger(cron_trigger(cfg.cron, settings.newsletter.zone), cfg.review_hours)
    fire = last_fire(trigger, datetime.now(UTC))
    if fire is None:
        return
    send_at = fire + timedelta(hours=cfg.review_hours)
    _run_once(settings, REVIEW_JOB, fire, lambda store: _review(settings, store, send_at))


def _store(settings: Any) -> Any:
    from digest.store import Store

    return Store.open(settings.database_url)


def _run_once(settings: Any, job: str, fire: datetime, work: Callable[[Any], str]) -> None:
    """Claim the run for this fire time, do it, record the outcome; skip it if claimed elsewhere."""
    key = run_key(job, fire)
    store = _store(settings)
    try:
        if not store.claim_run(key) and not store.adopt_run(
            key, lease=timedelta(minutes=settings.delivery.lease_minutes)
        ):
            log.info("%s is run by another scheduler; not running it here", key)
            return
        try:
            outcome = work(store)
        except Exception as exc:
            store.finish_run(key, f"failed: {exc}")
            log.error("%s failed: %s", key, exc)
            raise
        if STOP.is_set() and outcome == "interrupted":
            log.warning("%s stopped between batches; the next start completes it", key)
            return  # left unfinished on purpose: adopted by the next start within the grace
        store.finish_run(key, outcome)
    finally:
        store.close()


def _review(settings: Any, store: Any, send_at: datetime) -> str:
    from digest.delivery import notify, weekly
    from digest.delivery import runner as deliver
    from digest.delivery.transports import open_transport
    from digest.errors import EmptyIssueError
    from digest.models import IssueKey

    try:
        result = _with_feed_retries(
            settings,
            send_at - timedelta(hours=settings.schedule.review_hours),
            lambda: weekly.draft(settings, store, send_at),
        )
    except _Stopped:
        return "interrupted"
    except (weekly.NotSent, EmptyIssueError) as exc:
        key = str(IssueKey.at(send_at, settings.newsletter.zone))
        reason = exc.reason if isinstance(exc, weekly.NotSent) else f"{exc.message}; not sent"
        notify.tell_editors(settings, key, f"{key} will not be sent", reason)
        return f"skipped: {reason}"
    key = result.issue.key
    if settings.newsletter.editors:
        transport = open_transport(settings)
        try:
            deliver.send_test(settings, transport, result.rendered, key, settings.newsletter.editors)
        finally:
            transport.close()
    how = "it goes out automatically" if settings.schedule.auto_approve else f"approve it with `digest approve {key}`"
    log.info("draft %s sent to the editors for review; %s", key, how, extra={"issue": key})
    return f"draft {key}"


def _send(settings: Any, store: Any, fire: datetime) -> str:
    from digest.delivery import notify, weekly
    from digest.delivery import runner as deliver
    from digest.delivery.progress import LogProgress
    from digest.delivery.tokens import Signer
    from digest.delivery.transports import open_transport
    from digest.errors import EmptyIssueError
    from digest.issue import rank
    from digest.models import IssueKey

    try:
        ready = _with_feed_retries(settings, fire, lambda: weekly.ready_to_send(settings, store, fire, scheduled=True))
    except _Stopped:
        return "interrupted"
    except (weekly.NotSent, EmptyIssueError) as exc:
        # Past its send time and not going out from the scheduler: recorded as skipped, never sent late.
        key = str(IssueKey.at(fire, settings.newsletter.zone))
        reason = exc.reason if isinstance(exc, weekly.NotSent) else f"{exc.message}; not sent"
        window = rank.issue_window(fire, settings.issue.window_days)
        store.skip_issue(key, reason, window=(window.start, window.end), send_at=fire)
        notify.tell_editors(settings, key, f"{key} was not sent", reason)
        return f"skipped: {reason}"
    transport = open_transport(settings)
    try:
        report = deliver.send_pending(
            store, settings, transport, Signer.from_env(), ready.key, progress=LogProgress(ready.key), stop=STOP
        )
    finally:
        transport.close()
    if report.counts.get("pending"):
        return "interrupted"
    return f"sent {ready.key}: " + ", ".join(f"{n} {s}" for s, n in sorted(report.counts.items()))


class _Stopped(Exception):
    """SIGTERM/SIGINT came while the feeds were being retried: the run is interrupted, not skipped."""


def _with_feed_retries(settings: Any, fire: datetime, attempt: Callable[[], Any]) -> Any:
    """Retry a build whose feeds cannot be fetched until the grace runs out; then it is skipped.

    A build fails on feeds only when no full issue can be made without them (every feed down,
    the rest only a thin week, or ``[fetch] require_all``); a full issue missing a feed goes
    out on time and the editors are told (weekly.py).
    """
    from digest.delivery import weekly
    from digest.errors import FeedError
    from digest.models import IssueKey

    deadline = fire + timedelta(seconds=settings.schedule.grace_seconds)
    while True:
        try:
            return attempt()
        except FeedError as exc:
            if STOP.is_set():
                raise _Stopped from exc
            wait = settings.schedule.feed_retry_seconds
            if datetime.now(UTC) + timedelta(seconds=wait) > deadline:
                key = str(IssueKey.at(fire, settings.newsletter.zone))
                raise weekly.NotSent(key, f"feeds could not be fetched within the grace: {exc}") from exc
            log.warning("feeds failed (%s); trying again in %.0f s", exc, wait)
            if STOP.wait(wait):
                raise _Stopped from exc


# --- the service -------------------------------------------------------------------------------


class Service:
    """The long-running scheduler process (`digest schedule`)."""

    def __init__(self, config_path: Path) -> None:
        from digest.config import load

        self.config_path = str(Path(config_path).resolve())
        self.settings = load(self.config_path)
        self.scheduler: Any = None
        self.store: Any = None

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
        store = _store(self.settings)  # migrates the schema, the job table included
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
            store.beat,
            "interval",
            seconds=HEARTBEAT_SECONDS,
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
        funcs = {SEND_JOB: send_job, REVIEW_JOB: review_job}
        wanted = self.triggers()
        for job in self.scheduler.get_jobs(jobstore="default"):
            if job.id not in wanted:
                job.remove()
        for job_id, trigger in wanted.items():
            current = self.scheduler.get_job(job_id, jobstore="default")
            # repr, not str: a CronTrigger's str leaves out its time zone
            if current is not None and repr(current.trigger) == repr(trigger) and current.args == (self.config_path,):
                continue
            self.scheduler.add_job(
                funcs[job_id], trigger, args=[self.config_path], id=job_id, jobstore="default", replace_existing=True
            )

    def _resume_interrupted(self, store: Any) -> None:
        """An unfinished send run within the grace (stopped by SIGTERM or a crash) is completed."""
        grace = timedelta(seconds=self.settings.schedule.grace_seconds)
        now = datetime.now(UTC)
        for key in store.unfinished_runs():
            job, _, stamp = key.partition("@")
            if job != SEND_JOB:
                continue
            fire = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            if now - fire <= grace:
                log.info("%s was interrupted; completing it", key)
                self.scheduler.add_job(
                    resume_job, args=[self.config_path, stamp], id=f"resume-{stamp}", jobstore="memory"
                )

    def _missed(self, event: Any) -> None:
        from digest.delivery import notify
        from digest.issue import rank
        from digest.models import IssueKey

        if event.job_id != SEND_JOB:
            log.warning("%s missed its run at %s (past the grace); skipped", event.job_id, event.scheduled_run_time)
            return
        fire = event.scheduled_run_time
        run = run_key(SEND_JOB, fire)
        if not self.store.claim_run(run):  # a second scheduler on this database saw it too
            return
        key = str(IssueKey.at(fire, self.settings.newsletter.zone))
        window = rank.issue_window(fire, self.settings.issue.window_days)
        self.store.skip_issue(key, "missed by more than the grace; not sent late", window=(window.start, window.end))
        self.store.finish_run(run, "skipped: missed by more than the grace")
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


def resume_job(config_path: str, stamp: str) -> None:
    """Complete an interrupted send run (same fire time, same issue, pending recipients only)."""
    from digest.config import load

    settings = load(config_path)
    fire = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    _run_once(settings, SEND_JOB, fire, lambda store: _send(settings, store, fire))


def health(settings: Any, *, max_age: float = 4 * HEARTBEAT_SECONDS) -> tuple[bool, str]:
    """Whether a scheduler has beaten recently (for the container HEALTHCHECK).

    It only reads: no migration, nothing written, so it is cheap to run every minute beside a
    busy scheduler.
    """
    from digest.store import Store, make_engine

    store = Store(make_engine(settings.database_url))
    try:
        beat = store.last_beat()
    except Exception as exc:  # no database yet, or not migrated: not healthy, and say why
        return False, f"cannot read the scheduler's heartbeat: {type(exc).__name__}"
    finally:
        store.close()
    if beat is None:
        return False, "no scheduler has ever run against this database"
    holder, at = beat
    age = time.time() - at.timestamp()
    if age > max_age:
        return False, f"the scheduler ({holder}) last beat {age:.0f} s ago"
    return True, f"the scheduler ({holder}) beat {age:.0f} s ago"
