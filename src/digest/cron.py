"""Crontab lines read as crontab(5) reads them, in the newsletter's time zone.

It sits at the bottom of the package, beside the config it validates: ``[schedule] cron`` is
checked when the config is read, and ``digest schedule --print-next`` lists send times, neither
of which should have to load the scheduler. APScheduler's cron trigger does the arithmetic (it
keeps local wall-clock time across daylight-saving changes); this module only makes it read
weekdays the way a crontab does.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

_DOW = {"0": "sun", "1": "mon", "2": "tue", "3": "wed", "4": "thu", "5": "fri", "6": "sat", "7": "sun"}


def cron_trigger(expr: str, zone: ZoneInfo) -> CronTrigger:
    """A trigger from a standard 5-field crontab line; ValueError says what is wrong with it.

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


def next_sends(cron: str, zone: ZoneInfo, count: int, start: datetime) -> list[datetime]:
    """The next ``count`` fire times of ``cron`` at or after ``start``, aware in ``zone``."""
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
