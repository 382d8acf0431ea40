"""The scheduler: crontab lines and time zones, the review trigger, `--print-next`, config errors;
then the service in process (a real APScheduler on the project's database) restarted after a
missed run, and the weekly job's skips (thin week, empty week, feeds down) and feed retries.

Nothing waits for a real week: crons are built from the current time, the stored job's
``next_run_time`` is moved into the past (as if the process had been down at its fire time),
and the jobs' functions are called with explicit fire times. Waits are bounded polls.
"""

from __future__ import annotations

import logging
import pickle
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from digest.cli import cli
from digest.cli import schedule as schedule_cli
from digest.config import Settings, load
from digest.cron import cron_trigger, next_sends
from digest.errors import ConfigError
from digest.models import IssueKey
from digest.schedule import health, jobs
from digest.schedule.jobs import REVIEW_JOB, SEND_JOB
from digest.schedule.service import Service
from digest.schedule.triggers import EarlierTrigger, last_fire, run_key
from digest.store import Store, make_engine
from factories import NEWSLETTER, SECRET, read_eml, readers, text_of, write_config

NY = ZoneInfo("America/New_York")
EDITORS = ["ed@example.org", "chief@example.org"]
SUBSCRIBERS = 5


# --- helpers shared with test_schedule_service.py ------------------------------------------------


def wait_for(condition: Callable[[], Any], timeout: float = 15.0, what: str = "the condition") -> Any:
    """Poll ``condition`` every 50 ms until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def fire_ago(delta: timedelta, zone: ZoneInfo = NY) -> datetime:
    """A cron fire time about ``delta`` ago (whole minutes, as cron fires), in ``zone``."""
    return (datetime.now(UTC) - delta).astimezone(zone).replace(second=0, microsecond=0)


def cron_at(fire: datetime) -> str:
    """A weekly crontab line (numeric weekday, Sunday = 0) that fires at ``fire``'s local time."""
    return f"{fire.minute} {fire.hour} * * {fire.isoweekday() % 7}"


def rss(items: list[tuple[str, datetime]]) -> str:
    entries = "".join(
        f"""
    <item>
      <title>Story {slug}</title>
      <link>https://news.example.org/{slug}/</link>
      <guid isPermaLink="false">{slug}</guid>
      <pubDate>{format_datetime(when.astimezone(UTC))}</pubDate>
      <category>world</category>
      <description>What happened in story {slug}, told briefly for the digest.</description>
    </item>"""
        for slug, when in items
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Test feed</title><link>https://news.example.org/</link>
<description>Stories</description>{entries}
</channel></rss>
"""


def recent_items(count: int, before: datetime, prefix: str = "story") -> list[tuple[str, datetime]]:
    """``count`` items published in the days before ``before`` (inside a 7-day window)."""
    return [(f"{prefix}-{i}", before - timedelta(hours=6 + 12 * i)) for i in range(count)]


@dataclass
class Project:
    dir: Path
    config: Path
    feed: Path
    url: str

    def settings(self) -> Settings:
        return load(self.config)

    def store(self) -> Store:
        # Without Store.open's migration: Alembic's command API is not thread-safe, and the test
        # polls while a service's job thread may be opening its own store.
        return Store(make_engine(self.url))

    def outbox(self, folder: str) -> list[Path]:
        return sorted((self.dir / "state" / "outbox" / folder).glob("*.eml"))

    def status(self, key: str) -> str | None:
        store = self.store()
        try:
            record = store.issues.get(key)
        finally:
            store.close()
        return record.status if record else None


def write_project(
    root: Path,
    *,
    cron: str,
    url: str = "",
    items: list[tuple[str, datetime]] | None = None,
    subscribers: int = SUBSCRIBERS,
    schedule: dict[str, Any] | None = None,
    delivery: dict[str, Any] | None = None,
    feed_name: str = "feed.rss",
) -> Project:
    """A small newsletter in ``root``: one local feed, one section, editors, 5 subscribers, sending
    to the outbox unless ``delivery`` says otherwise; ``schedule`` adds [schedule] keys to ``cron``.

    ``url`` is the database when ``DIGEST_DATABASE_URL`` names one (the caller sets it, for this
    process and the ones it starts); empty means the default, the SQLite file in ``root/state``.
    """
    root.mkdir(parents=True, exist_ok=True)
    feed = root / feed_name
    if items is not None:
        feed.write_text(rss(items), encoding="utf-8")
    config = write_config(
        root,
        newsletter={**NEWSLETTER, "editors": EDITORS},
        feeds=[{"url": feed_name, "name": "Test feed"}],
        sections=[{"name": "World", "categories": ["world"], "limit": 10}],
        issue={"window_days": 7, "min_items": 3},
        delivery=delivery or {"transport": "outbox"},
        schedule={"cron": cron, **(schedule or {})},
    )
    project = Project(root, config, feed, url or f"sqlite:///{root / 'state' / 'digest.sqlite3'}")
    (root / "state").mkdir(exist_ok=True)
    store = Store.open(project.url)  # creates and migrates the database
    try:
        store.subscribers.merge(readers(subscribers))
    finally:
        store.close()
    return project


def store_job(project: Project) -> None:
    """Start the service once and stop it: its jobs are now stored in the project's database."""
    service = Service(project.config)
    service.start()
    service.stop()
    jobs.STOP.clear()


def set_next_run(url: str, job_id: str, when: datetime) -> None:
    """Move a stored job's next run to ``when``, as if the process had been down at that time."""
    edit_stored_job(url, job_id, next_run_time=when)


def edit_stored_job(url: str, job_id: str, **changes: Any) -> None:
    """Change a job as APScheduler stored it (its pickled state: ``func``, ``next_run_time``...).

    APScheduler keeps the next run time twice, in the indexed column and inside the pickled
    state; both are changed.
    """
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            blob = conn.execute(
                sa.text("SELECT job_state FROM apscheduler_jobs WHERE id = :id"), {"id": job_id}
            ).scalar_one()
            state = pickle.loads(blob)
            state.update(changes)
            conn.execute(
                sa.text("UPDATE apscheduler_jobs SET next_run_time = :t, job_state = :s WHERE id = :id"),
                {
                    "t": state["next_run_time"].timestamp(),
                    "s": pickle.dumps(state, pickle.HIGHEST_PROTOCOL),
                    "id": job_id,
                },
            )
    finally:
        engine.dispose()


def stored_next_run(url: str, job_id: str) -> float | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT next_run_time FROM apscheduler_jobs WHERE id = :id"), {"id": job_id}
            ).scalar()
    finally:
        engine.dispose()


def runs(url: str) -> dict[str, tuple[str | None, bool]]:
    """``scheduler_runs`` as {run key: (outcome, finished)}."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT run_key, outcome, finished_at FROM scheduler_runs")).all()
    finally:
        engine.dispose()
    return {r[0]: (r[1], r[2] is not None) for r in rows}


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    monkeypatch.delenv("DIGEST_DATABASE_URL", raising=False)


@pytest.fixture
def services() -> Iterator[list[Service]]:
    """Services started by a test; stopped at the end whatever happened."""
    started: list[Service] = []
    yield started
    for service in started:
        service.stop()


# --- crontab lines, time zones, the review trigger ------------------------------------------------

FRIDAY = datetime(2026, 11, 25, 12, 0, tzinfo=NY)  # a Wednesday; the next Friday is 27 November


@pytest.mark.parametrize(
    ("line", "weekday"),
    [("0 9 * * 5", "Fri"), ("0 9 * * FRI", "Fri"), ("0 9 * * 0", "Sun"), ("0 9 * * 7", "Sun"), ("0 9 * * 1", "Mon")],
)
def test_numeric_weekdays_are_crontab_weekdays(line, weekday):
    fire = cron_trigger(line, NY).get_next_fire_time(None, FRIDAY)
    assert f"{fire:%a %H:%M}" == f"{weekday} 09:00"


@pytest.mark.parametrize(
    ("line", "days"),
    [
        ("0 9 * * 1-5", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
        ("0 9 * * 0-6", ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]),  # crontab's "every day"
        ("0 9 * * 5-7", ["Fri", "Sat", "Sun"]),
        ("0 9 * * 0,3", ["Sun", "Wed"]),
        ("0 9 * * */2", ["Sun", "Tue", "Thu", "Sat"]),
        ("0 9 * * mon-wed", ["Mon", "Tue", "Wed"]),
    ],
)
def test_weekday_lists_ranges_and_steps_read_as_in_crontab(line, days):
    sends = next_sends(line, NY, 14, datetime(2026, 11, 22, 0, 0, tzinfo=NY))  # from a Sunday
    assert sorted({f"{s:%a}" for s in sends}, key=days.index) == days


@pytest.mark.parametrize("line", ["0 9 * * 8", "0 9 * * 5-3", "0 9 * *", "0 25 * * FRI", "0 9 * * FRX"])
def test_a_bad_crontab_line_is_a_value_error(line):
    with pytest.raises(ValueError):
        cron_trigger(line, NY)


def test_friday_sends_across_the_end_of_daylight_saving_time_keep_local_time():
    sends = next_sends("0 9 * * FRI", NY, 3, datetime(2026, 10, 28, tzinfo=UTC))
    assert [s.astimezone(UTC) for s in sends] == [
        datetime(2026, 10, 30, 13, 0, tzinfo=UTC),  # 09:00 EDT
        datetime(2026, 11, 6, 14, 0, tzinfo=UTC),  # 09:00 EST: clocks went back on Sunday 1 November
        datetime(2026, 11, 13, 14, 0, tzinfo=UTC),
    ]
    assert [f"{s:%H:%M %Z}" for s in sends] == ["09:00 EDT", "09:00 EST", "09:00 EST"]


def test_friday_sends_across_the_start_of_daylight_saving_time_keep_local_time():
    sends = next_sends("0 9 * * 5", NY, 2, datetime(2027, 3, 10, tzinfo=UTC))
    assert [s.astimezone(UTC) for s in sends] == [
        datetime(2027, 3, 12, 14, 0, tzinfo=UTC),  # 09:00 EST
        datetime(2027, 3, 19, 13, 0, tzinfo=UTC),  # 09:00 EDT: clocks went forward on Sunday 14 March
    ]


def test_daily_sends_fire_once_a_day_through_both_changes():
    for start in (datetime(2026, 10, 30, tzinfo=UTC), datetime(2027, 3, 12, tzinfo=UTC)):
        sends = next_sends("0 9 * * *", NY, 4, start)
        assert [f"{s:%H:%M}" for s in sends] == ["09:00"] * 4
        assert len({s.date() for s in sends}) == 4


def test_next_sends_are_strictly_after_start():
    at_nine = datetime(2026, 11, 27, 9, 0, tzinfo=NY)
    assert next_sends("0 9 * * FRI", NY, 1, at_nine)[0] == at_nine  # a fire at start counts
    assert next_sends("0 9 * * FRI", NY, 1, at_nine + timedelta(seconds=1))[0] == at_nine + timedelta(days=7)


def test_the_review_trigger_fires_24_hours_before_each_send():
    send = cron_trigger("0 9 * * FRI", NY)
    review = EarlierTrigger(send, 24)
    first = review.get_next_fire_time(None, FRIDAY)
    assert first == datetime(2026, 11, 26, 9, 0, tzinfo=NY)  # Thursday 09:00
    second = review.get_next_fire_time(first, first + timedelta(seconds=1))
    assert second == datetime(2026, 12, 3, 9, 0, tzinfo=NY)
    # Thursday 10:00 is past this week's review: the next one is a week later
    assert review.get_next_fire_time(None, first + timedelta(hours=1)) == second
    assert str(review).startswith("24h before cron[")
    assert "America/New_York" in repr(review)  # compared with the stored job's trigger


def test_the_review_trigger_across_daylight_saving_time_is_the_day_before_at_the_same_local_time():
    review = EarlierTrigger(cron_trigger("0 9 * * SUN", NY), 24)
    fire = review.get_next_fire_time(None, datetime(2026, 10, 29, tzinfo=NY))
    assert fire == datetime(2026, 10, 31, 9, 0, tzinfo=NY)  # Saturday 09:00 EDT, for Sunday 09:00 EST
    assert fire.astimezone(UTC) == datetime(2026, 10, 31, 13, 0, tzinfo=UTC)


def test_last_fire_is_the_latest_fire_at_or_before_now():
    trigger = cron_trigger("0 9 * * FRI", NY)
    friday = datetime(2026, 11, 27, 9, 0, tzinfo=NY)
    assert last_fire(trigger, friday) == friday
    assert last_fire(trigger, friday + timedelta(minutes=10)) == friday
    assert last_fire(trigger, friday - timedelta(minutes=1)) == friday - timedelta(days=7)
    review = EarlierTrigger(trigger, 24)
    assert last_fire(review, friday) == friday - timedelta(days=1)
    assert last_fire(cron_trigger("0 9 1 1 *", NY), friday) is None  # nothing in the lookback


def test_run_keys_name_the_job_and_the_fire_time_in_utc():
    fire = datetime(2026, 11, 27, 9, 0, tzinfo=NY)
    assert run_key(SEND_JOB, fire) == "weekly-send@2026-11-27T14:00:00Z"
    assert run_key(REVIEW_JOB, fire) == "weekly-review@2026-11-27T14:00:00Z"


# --- digest schedule --print-next and config errors ------------------------------------------------


class _FrozenDatetime(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
        return datetime(2026, 10, 28, 12, 0, tzinfo=UTC).astimezone(tz)


def test_print_next_shows_local_and_utc_times_across_the_dst_change(tmp_path, monkeypatch, env):
    project = write_project(tmp_path, cron="0 9 * * 5")
    monkeypatch.setattr(schedule_cli, "datetime", _FrozenDatetime)
    result = CliRunner().invoke(cli, ["schedule", "--config", str(project.config), "--print-next", "3"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "Fri 2026-10-30 09:00 EDT  (2026-10-30 13:00 UTC)",
        "Fri 2026-11-06 09:00 EST  (2026-11-06 14:00 UTC)",
        "Fri 2026-11-13 09:00 EST  (2026-11-13 14:00 UTC)",
    ]


def test_print_next_shows_the_draft_time_with_a_review(tmp_path, monkeypatch, env):
    project = write_project(tmp_path, cron="0 9 * * FRI", schedule={"review_hours": 24})
    monkeypatch.setattr(schedule_cli, "datetime", _FrozenDatetime)
    result = CliRunner().invoke(cli, ["schedule", "--config", str(project.config), "--print-next", "2"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "Fri 2026-10-30 09:00 EDT  (2026-10-30 13:00 UTC)  draft Thu 2026-10-29 09:00 EDT",
        "Fri 2026-11-06 09:00 EST  (2026-11-06 14:00 UTC)  draft Thu 2026-11-05 09:00 EST",
    ]


def test_print_next_counts_from_the_real_clock(tmp_path, env):
    project = write_project(tmp_path, cron="30 7 * * 1")
    result = CliRunner().invoke(cli, ["schedule", "--config", str(project.config), "--print-next", "3"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    now = datetime.now(UTC)
    previous = now
    for line in lines:
        local_text, utc_text = line.split("  (")
        local = datetime.strptime(local_text[4:20], "%Y-%m-%d %H:%M").replace(tzinfo=NY)
        utc = datetime.strptime(utc_text.removesuffix(" UTC)"), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        assert re.fullmatch(r"Mon \d{4}-\d\d-\d\d 07:30 E[SD]T", local_text), line
        assert local == utc and previous < utc <= previous + timedelta(days=7)
        previous = utc


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('cron = "0 9 * *"', "[schedule] cron"),
        ('cron = "0 9 * * FRX"', "[schedule] cron"),
        ('cron = "0 9 * * 8"', "[schedule] cron"),
        ('grace = "2 hours"', "[schedule] grace"),
        ('feed_retry = "soon"', "[schedule] feed_retry"),
    ],
)
def test_a_bad_schedule_in_the_config_is_exit_2_with_one_line_naming_the_key(tmp_path, env, extra, key):
    project = write_project(tmp_path, cron="0 9 * * FRI")
    text = project.config.read_text(encoding="utf-8")
    if extra.startswith("cron"):
        text = text.replace('cron = "0 9 * * FRI"', extra)
    else:
        text += extra + "\n"
    project.config.write_text(text, encoding="utf-8")
    for args in (["--print-next", "1"], []):
        result = CliRunner().invoke(cli, ["schedule", "--config", str(project.config), *args])
        assert result.exit_code == 2, result.output
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("digest: error: ") and key in lines[0], lines


# --- the service in process: restarts and missed runs -----------------------------------------------


def test_a_run_missed_within_the_grace_is_sent_once_at_start_up(tmp_path, env, monkeypatch, database_url, services):
    monkeypatch.setenv("DIGEST_DATABASE_URL", database_url)
    fire = fire_ago(timedelta(minutes=10))
    key = str(IssueKey.at(fire, NY))
    project = write_project(tmp_path, cron=cron_at(fire), url=database_url, items=recent_items(4, fire))
    store_job(project)
    assert stored_next_run(database_url, SEND_JOB) > time.time()  # stored for next week
    set_next_run(database_url, SEND_JOB, fire)  # the process was down when it fired

    service = Service(project.config)
    services.append(service)
    service.start()
    wait_for(lambda: project.status(key) == "sent", what=f"{key} to be sent")
    service.stop()

    assert len(project.outbox(key)) == SUBSCRIBERS
    assert runs(database_url) == {run_key(SEND_JOB, fire): (f"sent {key}: {SUBSCRIBERS} submitted", True)}
    assert stored_next_run(database_url, SEND_JOB) == pytest.approx((fire + timedelta(days=7)).timestamp())
    assert not project.outbox(f"notices-{key}")

    again = Service(project.config)  # a further restart has nothing to do
    services.append(again)
    again.start()
    again.stop()
    assert len(project.outbox(key)) == SUBSCRIBERS
    assert len(runs(database_url)) == 1


def test_a_job_stored_by_the_first_release_keeps_its_missed_run_after_an_upgrade(tmp_path, env, services, caplog):
    """The job store names the weekly job's function; the first release stored
    ``digest.schedule:send_job``. A scheduler upgraded while a send was due must still find it,
    not drop the job (and the send) at start-up."""
    caplog.set_level(logging.INFO, logger="apscheduler")
    fire = fire_ago(timedelta(minutes=10))
    key = str(IssueKey.at(fire, NY))
    project = write_project(tmp_path, cron=cron_at(fire), items=recent_items(4, fire))
    store_job(project)
    edit_stored_job(project.url, SEND_JOB, func="digest.schedule:send_job", next_run_time=fire)

    service = Service(project.config)
    services.append(service)
    service.start()
    wait_for(lambda: project.status(key) == "sent", what=f"{key} to be sent")
    service.stop()

    assert len(project.outbox(key)) == SUBSCRIBERS
    assert not [r for r in caplog.records if "Unable to restore job" in r.getMessage()]


def test_reading_the_config_does_not_load_the_scheduler(tmp_path):
    """``[schedule] cron`` is checked when the config is read, by the bottom-level cron module:
    the scheduler sits above the config and must not be imported by it (no import cycle)."""
    project = write_project(tmp_path, cron="0 9 * * 5")
    code = (
        "import sys; from digest.config import load; "
        f"load({str(project.config)!r}); "
        "print(sorted(m for m in sys.modules if m.startswith('digest.schedule')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_a_run_missed_by_more_than_the_grace_is_skipped_and_the_editors_told(
    tmp_path, env, monkeypatch, database_url, services, caplog
):
    caplog.set_level(logging.INFO, logger="digest")
    monkeypatch.setenv("DIGEST_DATABASE_URL", database_url)
    fire = fire_ago(timedelta(hours=3))
    key = str(IssueKey.at(fire, NY))
    project = write_project(
        tmp_path, cron=cron_at(fire), url=database_url, items=recent_items(4, fire), schedule={"grace": "2h"}
    )
    store_job(project)
    set_next_run(database_url, SEND_JOB, fire)

    service = Service(project.config)
    services.append(service)
    service.start()
    notices = wait_for(lambda: len(project.outbox(f"notices-{key}")) == 2 and project.outbox(f"notices-{key}"))
    service.stop()

    store = project.store()
    try:
        record = store.issues.get(key)
        assert record is not None and record.status == "skipped"
        assert "missed by more than the grace" in record.note
        assert store.ledger.counts(key) == {}
    finally:
        store.close()
    assert not project.outbox(key)
    assert sorted(str(read_eml(p)["To"]) for p in notices) == sorted(EDITORS)
    notice = read_eml(notices[0])
    assert notice["Subject"] == f"[digest] {key} was not sent"
    assert "missed by more than the grace (2h)" in text_of(notice) and "not sent late" in text_of(notice)
    assert any("missed by more than the grace" in r.getMessage() for r in caplog.records)
    assert runs(database_url) == {run_key(SEND_JOB, fire): ("skipped: missed by more than the grace", True)}
    assert stored_next_run(database_url, SEND_JOB) > time.time()


def test_two_services_that_both_see_a_missed_run_tell_the_editors_once(tmp_path, env, services, caplog):
    caplog.set_level(logging.INFO, logger="digest")
    fire = fire_ago(timedelta(hours=3))
    key = str(IssueKey.at(fire, NY))
    project = write_project(tmp_path, cron=cron_at(fire), items=recent_items(4, fire))
    store_job(project)
    set_next_run(project.url, SEND_JOB, fire)
    pair = [Service(project.config), Service(project.config)]
    services.extend(pair)
    for service in pair:
        service.start()
    wait_for(lambda: project.status(key) == "skipped", what=f"{key} to be skipped")
    for service in pair:
        service.stop()
    told = [r for r in caplog.records if r.name == "digest.notify" and "while the scheduler was down" in r.getMessage()]
    assert len(told) == 1
    assert len(runs(project.url)) == 1


def test_the_heartbeat_keeps_beating_while_a_long_run_holds_the_job_thread(tmp_path, env, monkeypatch, services):
    """A send can take long (feeds retried for up to the grace, a big list): `digest health` must
    not call the process dead meanwhile, or an orchestrator restarts it mid-send."""
    monkeypatch.setattr(health, "HEARTBEAT_SECONDS", 0.2)
    fire = fire_ago(timedelta(minutes=1))
    project = write_project(
        tmp_path, cron=cron_at(fire), items=None, schedule={"grace": "1h", "feed_retry": "10m"}
    )  # no feed file: the send job waits to retry the feeds
    store_job(project)
    set_next_run(project.url, SEND_JOB, fire)
    service = Service(project.config)
    services.append(service)
    service.start()
    wait_for(lambda: run_key(SEND_JOB, fire) in runs(project.url), what="the send run to start")
    store = project.store()
    try:
        first = wait_for(store.runs.last_beat, what="a heartbeat")[1]
        wait_for(lambda: store.runs.last_beat()[1] > first, what="the heartbeat to beat again")
        assert health.health(project.settings(), max_age=2)[0]
    finally:
        store.close()
    started = time.monotonic()
    service.stop()  # SIGTERM while the feeds wait to be retried: the run is interrupted, not skipped
    assert time.monotonic() - started < 3
    assert runs(project.url) == {run_key(SEND_JOB, fire): (None, False)}
    assert project.status(str(IssueKey.at(fire, NY))) is None
    assert not project.outbox(f"notices-{IssueKey.at(fire, NY)!s}")


def test_stored_jobs_coalesce_never_overlap_and_follow_a_changed_schedule(tmp_path, env, services):
    project = write_project(tmp_path, cron="0 9 * * FRI", schedule={"review_hours": 24, "grace": "90m"})
    first = Service(project.config)
    services.append(first)
    first.start()
    jobs = {job.id: job for job in first.scheduler.get_jobs(jobstore="default")}
    assert sorted(jobs) == [REVIEW_JOB, SEND_JOB]
    for job in jobs.values():
        assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, 5400)
    assert f"{jobs[SEND_JOB].next_run_time:%a %H:%M}" == "Fri 09:00"
    assert f"{jobs[REVIEW_JOB].next_run_time:%a %H:%M}" == "Thu 09:00"
    first.stop()

    # A new time zone (or cron) replaces the stored trigger; dropping the review removes its job.
    text = project.config.read_text(encoding="utf-8")
    text = text.replace('timezone = "America/New_York"', 'timezone = "Europe/London"').replace("review_hours = 24", "")
    project.config.write_text(text, encoding="utf-8")
    second = Service(project.config)
    services.append(second)
    second.start()
    jobs = {job.id: job for job in second.scheduler.get_jobs(jobstore="default")}
    assert sorted(jobs) == [SEND_JOB]
    assert "Europe/London" in repr(jobs[SEND_JOB].trigger)
    london = jobs[SEND_JOB].next_run_time.astimezone(ZoneInfo("Europe/London"))
    assert f"{london:%a %H:%M}" == "Fri 09:00"
    second.stop()


def test_a_run_already_done_is_not_run_again(tmp_path, env, caplog):
    caplog.set_level(logging.INFO, logger="digest")
    fire = fire_ago(timedelta(minutes=1))
    key = str(IssueKey.at(fire, NY))
    project = write_project(tmp_path, cron=cron_at(fire), items=recent_items(4, fire))
    jobs.send_job(str(project.config))
    jobs.send_job(str(project.config))  # a second scheduler (or a second fire) for the same time
    assert len(project.outbox(key)) == SUBSCRIBERS
    assert runs(project.url) == {run_key(SEND_JOB, fire): (f"sent {key}: {SUBSCRIBERS} submitted", True)}
    assert any("is run by another scheduler" in r.getMessage() for r in caplog.records)


def test_health_is_1_without_a_heartbeat_and_0_while_a_scheduler_runs(tmp_path, env, services):
    project = write_project(tmp_path, cron="0 9 * * FRI")
    args = ["health", "--config", str(project.config)]
    never = CliRunner().invoke(cli, args)
    assert never.exit_code == 1 and "no scheduler has ever run" in never.stdout
    service = Service(project.config)
    services.append(service)
    service.start()
    wait_for(lambda: CliRunner().invoke(cli, args).exit_code == 0, what="digest health to be 0")
    service.stop()
    ok, message = health.health(project.settings(), max_age=0)
    assert not ok and "last beat" in message


# --- the weekly job: thin and empty weeks, feeds down ------------------------------------------------


def test_a_thin_week_through_the_send_job_is_skipped_and_the_editors_told(tmp_path, env):
    fire = fire_ago(timedelta(minutes=1))
    key = str(IssueKey.at(fire, NY))
    project = write_project(tmp_path, cron=cron_at(fire), items=recent_items(2, fire))  # min_items = 3
    jobs.send_job(str(project.config))
    assert project.status(key) == "skipped"
    outcome, finished = runs(project.url)[run_key(SEND_JOB, fire)]
    assert finished and outcome is not None and outcome.startswith("skipped: thin week: 2 new article(s)")
    assert not project.outbox(key)
    notices = project.outbox(f"notices-{key}")
    assert len(notices) == 2 and "thin week" in text_of(read_eml(notices[0]))


def test_a_week_without_any_article_is_skipped_and_the_editors_told(tmp_path, env):
    fire = fire_ago(timedelta(minutes=1))
    key = str(IssueKey.at(fire, NY))
    project = write_project(tmp_path, cron=cron_at(fire), items=recent_items(3, fire - timedelta(days=10)))
    jobs.send_job(str(project.config))
    store = project.store()
    try:
        record = store.issues.get(key)
        assert record is not None and record.status == "skipped" and "no articles published" in record.note
    finally:
        store.close()
    outcome, finished = runs(project.url)[run_key(SEND_JOB, fire)]
    assert finished and outcome is not None and outcome.startswith("skipped: no articles published")
    notices = project.outbox(f"notices-{key}")
    assert len(notices) == 2 and "no articles published" in text_of(read_eml(notices[0]))


def _send_now(project: Project) -> tuple[str, datetime]:
    """The send job's work for a fire time of right now (so the grace starts now)."""
    settings = project.settings()
    fire = datetime.now(UTC)
    jobs.run_once(settings, SEND_JOB, fire, lambda store: jobs.send(settings, store, fire))
    store = project.store()
    try:
        outcome = store.runs.outcome(run_key(SEND_JOB, fire))
    finally:
        store.close()
    return outcome or "", fire


def test_a_feed_that_comes_back_within_the_grace_is_retried_and_the_issue_sent(tmp_path, env, caplog):
    caplog.set_level(logging.INFO, logger="digest")
    now = datetime.now(UTC)
    key = str(IssueKey.at(now, NY))
    project = write_project(tmp_path, cron="0 9 * * FRI", items=None, schedule={"grace": "3s", "feed_retry": "1s"})
    later = threading.Timer(0.5, lambda: project.feed.write_text(rss(recent_items(4, now)), encoding="utf-8"))
    later.start()
    try:
        outcome, _ = _send_now(project)
    finally:
        later.cancel()
    assert outcome == f"sent {key}: {SUBSCRIBERS} submitted"
    assert len(project.outbox(key)) == SUBSCRIBERS
    assert any("trying again in 1 s" in r.getMessage() for r in caplog.records)
    assert not project.outbox(f"notices-{key}")


def test_a_feed_down_for_the_whole_grace_means_nothing_is_sent_and_the_editors_told_why(tmp_path, env, caplog):
    caplog.set_level(logging.INFO, logger="digest")
    key = str(IssueKey.at(datetime.now(UTC), NY))
    project = write_project(tmp_path, cron="0 9 * * FRI", items=None, schedule={"grace": "3s", "feed_retry": "1s"})
    started = time.monotonic()
    outcome, _ = _send_now(project)
    elapsed = time.monotonic() - started
    assert 1.5 < elapsed < 3.5  # tried three times, a second apart, then gave up within the grace
    assert sum("trying again" in r.getMessage() for r in caplog.records) == 2
    reason = "feeds could not be fetched within the grace"
    assert outcome.startswith(f'skipped: {reason}: feed "Test feed": no such file')
    store = project.store()
    try:
        record = store.issues.get(key)
        assert record is not None and record.status == "skipped" and record.note.startswith(reason)
        assert store.ledger.counts(key) == {}
    finally:
        store.close()
    assert not project.outbox(key)
    notices = project.outbox(f"notices-{key}")
    assert len(notices) == 2
    notice = read_eml(notices[0])
    assert notice["Subject"] == f"[digest] {key} was not sent" and reason in text_of(notice)


def test_a_scheduled_send_without_the_secret_records_nothing(tmp_path, env, monkeypatch):
    """As with `digest send`: no signing secret, no issue recorded as sending and no run left
    half done; the run fails with the reason, to be sent once the secret is there."""
    fire = fire_ago(timedelta(minutes=1))
    key = str(IssueKey.at(fire, NY))
    project = write_project(tmp_path, cron=cron_at(fire), items=recent_items(4, fire))
    monkeypatch.delenv("DIGEST_SECRET")
    with pytest.raises(ConfigError, match="DIGEST_SECRET"):
        jobs.send_job(str(project.config))
    assert project.status(key) is None
    assert not project.outbox(key)
    outcome, finished = runs(project.url)[run_key(SEND_JOB, fire)]
    assert finished and outcome is not None and outcome.startswith("failed: ") and "DIGEST_SECRET" in outcome


def test_a_stop_while_the_feeds_wait_to_be_retried_interrupts_the_run_for_the_next_start(tmp_path, env):
    project = write_project(tmp_path, cron="0 9 * * FRI", items=None, schedule={"grace": "1h", "feed_retry": "10m"})
    key = str(IssueKey.at(datetime.now(UTC), NY))
    stop = threading.Timer(0.3, jobs.STOP.set)
    stop.start()
    started = time.monotonic()
    outcome, fire = _send_now(project)
    assert time.monotonic() - started < 3
    assert outcome == ""  # not finished: adopted by the next start within the grace
    assert runs(project.url) == {run_key(SEND_JOB, fire): (None, False)}
    assert project.status(key) is None  # not skipped
    assert not project.outbox(f"notices-{key}")  # and nobody told it was not sent
