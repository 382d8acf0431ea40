"""The scheduler's triggers beyond a crontab line: the review before each send, and the fire
time a job is running (or missed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger


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


def last_fire(trigger: BaseTrigger, now: datetime, lookback: timedelta = timedelta(days=8)) -> datetime | None:
    """The latest fire time at or before ``now`` (the run a job is doing, or missed)."""
    found = None
    moment = trigger.get_next_fire_time(None, now - lookback)
    while moment is not None and moment <= now:
        found = moment
        moment = trigger.get_next_fire_time(moment, moment + timedelta(seconds=1))
    return found


def run_key(job: str, fire: datetime) -> str:
    """The name a run is claimed under in ``scheduler_runs``: the job and its fire time in UTC."""
    return f"{job}@{fire.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def fire_of(stamp: str) -> datetime:
    """The fire time in a run key's stamp (the part after ``@``)."""
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
