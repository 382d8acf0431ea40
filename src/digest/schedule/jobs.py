"""The scheduler's jobs: the weekly send and the review before it, each run once per fire time.

- Each fire is claimed as a row in ``scheduler_runs`` before anything happens, so two schedulers
  on one database (two containers, two hosts) never both run it; the ledger makes each
  recipient's delivery unique anyway.
- The send is the one `digest send` makes (``delivery.send.send_issue``); what is the
  scheduler's own is its policy: feeds retried within the grace when no full issue can be built,
  and an issue that does not go out at its time recorded as skipped (never sent late) with the
  editors told why.
- ``STOP`` (set on SIGTERM/SIGINT) is checked between batches and between feed retries: the run
  is left unfinished and the next start adopts it within the grace.

The job functions live at module level and take only the config's path, because APScheduler
stores jobs in the database by the function's module and name (service.JOB_FUNCTIONS) and arguments.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from digest.config import Settings, load
from digest.cron import cron_trigger
from digest.delivery import notify, weekly
from digest.delivery.progress import LogProgress
from digest.delivery.send import send_issue, send_proofs
from digest.errors import EmptyIssueError, FeedError
from digest.issue import rank
from digest.models import IssueKey
from digest.schedule.triggers import EarlierTrigger, fire_of, last_fire, run_key
from digest.store import Store

log = logging.getLogger("digest.schedule")

SEND_JOB = "weekly-send"
REVIEW_JOB = "weekly-review"
STOP = threading.Event()  # set on SIGTERM/SIGINT; checked between batches and between retries

T = TypeVar("T")


def send_job(config_path: str) -> None:
    """The scheduled send: the same code as `digest send`, for the fire time being run."""
    settings = load(config_path)
    fire = last_fire(cron_trigger(settings.schedule.cron, settings.newsletter.zone), datetime.now(UTC))
    if fire is None:
        return
    run_once(settings, SEND_JOB, fire, lambda store: send(settings, store, fire))


def review_job(config_path: str) -> None:
    """The scheduled review: build the draft for the coming send and send editors a copy."""
    settings = load(config_path)
    cfg = settings.schedule
    trigger = EarlierTrigger(cron_trigger(cfg.cron, settings.newsletter.zone), cfg.review_hours)
    fire = last_fire(trigger, datetime.now(UTC))
    if fire is None:
        return
    send_at = fire + timedelta(hours=cfg.review_hours)
    run_once(settings, REVIEW_JOB, fire, lambda store: review(settings, store, send_at))


def resume_job(config_path: str, stamp: str) -> None:
    """Complete an interrupted send run (same fire time, same issue, pending recipients only)."""
    settings = load(config_path)
    fire = fire_of(stamp)
    run_once(settings, SEND_JOB, fire, lambda store: send(settings, store, fire))


def open_store(settings: Settings) -> Store:
    return Store.open(settings.database_url)


def run_once(settings: Settings, job: str, fire: datetime, work: Callable[[Store], str]) -> None:
    """Claim the run for this fire time, do it, record the outcome; skip it if claimed elsewhere."""
    key = run_key(job, fire)
    store = open_store(settings)
    try:
        if not store.runs.claim(key) and not store.runs.adopt(
            key, lease=timedelta(minutes=settings.delivery.lease_minutes)
        ):
            log.info("%s is run by another scheduler; not running it here", key)
            return
        try:
            outcome = work(store)
        except Exception as exc:
            store.runs.finish(key, f"failed: {exc}")
            log.error("%s failed: %s", key, exc)
            raise
        if STOP.is_set() and outcome == "interrupted":
            log.warning("%s stopped between batches; the next start completes it", key)
            return  # left unfinished on purpose: adopted by the next start within the grace
        store.runs.finish(key, outcome)
    finally:
        store.close()


def review(settings: Settings, store: Store, send_at: datetime) -> str:
    """Build the draft that goes out at ``send_at`` and send the editors a test copy of it;
    returns the run's outcome as recorded in ``scheduler_runs``."""
    drafted_at = send_at - timedelta(hours=settings.schedule.review_hours)
    try:
        result = _with_feed_retries(settings, drafted_at, lambda: weekly.draft(settings, store, send_at))
    except _Stopped:
        return "interrupted"
    except (weekly.NotSent, EmptyIssueError) as exc:
        key = str(IssueKey.at(send_at, settings.newsletter.zone))
        reason = _reason(exc)
        notify.tell_editors(settings, key, f"{key} will not be sent", reason)
        return f"skipped: {reason}"
    key = result.issue.key
    if settings.newsletter.editors:
        send_proofs(settings, result.rendered, key, settings.newsletter.editors)
    how = "it goes out automatically" if settings.schedule.auto_approve else f"approve it with `digest approve {key}`"
    log.info("draft %s sent to the editors for review; %s", key, how, extra={"issue": key})
    return f"draft {key}"


def send(settings: Settings, store: Store, fire: datetime) -> str:
    """Send the issue for ``fire`` as `digest send` does, or record it as skipped and tell the
    editors why; returns the run's outcome (``interrupted`` when stopped between batches)."""
    key = str(IssueKey.at(fire, settings.newsletter.zone))
    try:
        sent = _with_feed_retries(
            settings,
            fire,
            lambda: send_issue(settings, store, fire, scheduled=True, progress=LogProgress(key), stop=STOP),
        )
    except _Stopped:
        return "interrupted"
    except (weekly.NotSent, EmptyIssueError) as exc:
        # Past its send time and not going out from the scheduler: recorded as skipped, never sent late.
        reason = _reason(exc)
        window = rank.issue_window(fire, settings.issue.window_days)
        store.issues.skip(key, reason, window=(window.start, window.end), send_at=fire)
        notify.tell_editors(settings, key, f"{key} was not sent", reason)
        return f"skipped: {reason}"
    if sent.interrupted:
        return "interrupted"
    return f"sent {sent.key}: " + ", ".join(f"{n} {s}" for s, n in sorted(sent.report.counts.items()))


def _reason(exc: weekly.NotSent | EmptyIssueError) -> str:
    """What the editors are told, and the run records, when an issue does not go out."""
    return exc.reason if isinstance(exc, weekly.NotSent) else f"{exc.message}; not sent"


class _Stopped(Exception):
    """SIGTERM/SIGINT came while the feeds were being retried: the run is interrupted, not skipped."""


def _with_feed_retries(settings: Settings, fire: datetime, attempt: Callable[[], T]) -> T:
    """Retry a build whose feeds cannot be fetched until the grace runs out; then it is skipped.

    A build fails on feeds only when no full issue can be made without them (every feed down,
    the rest only a thin week, or ``[fetch] require_all``); a full issue missing a feed goes
    out on time and the editors are told (weekly.py). A send fails on feeds only while it
    builds, before anything is recorded or sent, so trying it again from the start is safe.
    """
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
