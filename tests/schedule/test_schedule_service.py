"""Real `digest schedule` processes against the SendGrid stand-in, on SQLite and PostgreSQL:
two started together on one database send once; SIGTERM in the middle of a slow send finishes the
batch in flight and exits 0, and the next start completes the issue with nobody mailed twice.

The stored weekly job is made due by moving its ``next_run_time`` into the past (see
test_schedule.py), so a process sends as soon as it starts. What the stand-in received and the
delivery ledger are the judges.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_schedule import (
    EDITORS,
    NY,
    Project,
    fire_ago,
    recent_items,
    rss,
    runs,
    set_next_run,
    store_job,
    wait_for,
    write_project,
)

from digest.cli import cli
from digest.models import IssueKey
from digest.schedule import jobs
from digest.schedule.jobs import SEND_JOB
from digest.schedule.triggers import run_key
from factories import SECRET

DIGEST = str(Path(sys.executable).with_name("digest"))


@pytest.fixture
def due(tmp_path, sg, database_url, monkeypatch):
    """A newsletter sending through the stand-in whose stored weekly job fired 10 minutes ago
    (inside the 2-hour grace) while no scheduler was running. Returns a factory taking the number
    of subscribers and the batch size."""

    def make(subscribers: int, batch_size: int) -> tuple[Project, dict[str, str], Any]:
        env = {
            "DIGEST_SECRET": SECRET,
            "SENDGRID_API_KEY": "SG.test",
            "DIGEST_DATABASE_URL": database_url,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        fire = fire_ago(timedelta(minutes=10))
        project = write_project(
            tmp_path,
            cron=f"{fire.minute} {fire.hour} * * {fire.isoweekday() % 7}",
            url=database_url,
            items=recent_items(4, fire),
            subscribers=subscribers,
            delivery={
                "transport": "sendgrid",
                "batch_size": batch_size,
                "retries": 1,
                "backoff": 0.01,
                "sendgrid": {"api_host": sg.url, "timeout": 10},
            },
        )
        store_job(project)
        set_next_run(database_url, SEND_JOB, fire)
        return project, {**os.environ, **env}, fire

    return make


class Scheduler:
    """One `digest schedule` process, its stderr in a file (read while it runs)."""

    def __init__(self, project: Project, env: dict[str, str], name: str) -> None:
        self.log = project.dir / f"{name}.log"
        with self.log.open("w") as err:
            self.proc = subprocess.Popen(
                [DIGEST, "schedule", "--config", str(project.config)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                text=True,
            )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def ready(self) -> bool:
        """Its signal handlers are installed and its jobs loaded (the last thing start-up logs)."""
        if self.proc.poll() is not None:
            raise AssertionError(f"digest schedule exited {self.proc.returncode}:\n{self.output()}")
        return "weekly-send: next run" in self.output()

    def terminate(self, timeout: float = 10.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def schedulers():
    started: list[Scheduler] = []
    yield started
    for one in started:
        one.kill()


def counts(project: Project, key: str) -> dict[str, int]:
    store = project.store()
    try:
        return store.ledger.counts(key)
    finally:
        store.close()


def test_two_schedulers_on_one_database_send_once(due, sg, schedulers):
    project, env, fire = due(subscribers=40, batch_size=10)
    key = str(IssueKey.at(fire, NY))
    pair = [Scheduler(project, env, "first"), Scheduler(project, env, "second")]
    schedulers.extend(pair)
    wait_for(lambda: all(s.ready() for s in pair), what="both schedulers to start")
    wait_for(lambda: runs(project.url).get(run_key(SEND_JOB, fire), (None, False))[1], what="the run to finish")

    health = CliRunner().invoke(cli, ["health", "--config", str(project.config)])
    assert health.exit_code == 0, health.output

    for one in pair:
        assert one.terminate() == 0, one.output()
    received = Counter(sg.recipients())
    assert len(received) == 40 and set(received.values()) == {1}
    assert counts(project, key) == {"submitted": 40}
    assert runs(project.url) == {run_key(SEND_JOB, fire): (f"sent {key}: 40 submitted", True)}
    assert project.status(key) == "sent"
    logs = "".join(one.output() for one in pair)
    assert logs.count("received SIGTERM") == 2


def test_sigterm_mid_send_finishes_the_batch_in_flight_and_the_next_start_completes_the_issue(due, sg, schedulers):
    project, env, fire = due(subscribers=100, batch_size=10)
    key = str(IssueKey.at(fire, NY))
    sg.stall_next(0.3, times=10)  # every request answered after 0.3 s (the client waits 10)
    first = Scheduler(project, env, "first")
    schedulers.append(first)
    wait_for(first.ready, what="the scheduler to start")
    wait_for(lambda: sg.requests >= 2, what="two requests at the stand-in")
    assert first.terminate() == 0, first.output()

    stopped = counts(project, key)
    assert "submitting" not in stopped and "unknown" not in stopped, stopped
    assert stopped["submitted"] >= 20 and stopped["pending"] > 0
    assert stopped["submitted"] + stopped["pending"] == 100
    assert stopped["submitted"] == len(sg.recipients())  # what went out is exactly what is recorded
    assert runs(project.url) == {run_key(SEND_JOB, fire): (None, False)}  # left for the next start
    assert project.status(key) == "sending"
    assert "stopped between batches" in first.output()

    sg.clear_scripted()
    second = Scheduler(project, env, "second")
    schedulers.append(second)
    wait_for(lambda: runs(project.url)[run_key(SEND_JOB, fire)][1], what="the interrupted run to complete")
    assert second.terminate() == 0, second.output()

    assert "was interrupted; completing it" in second.output()
    assert counts(project, key) == {"submitted": 100}
    received = Counter(sg.recipients())
    assert len(received) == 100 and set(received.values()) == {1}
    assert project.status(key) == "sent"
    assert runs(project.url)[run_key(SEND_JOB, fire)] == (f"sent {key}: 100 submitted", True)


def test_health_is_0_while_a_scheduler_process_runs_and_sigint_stops_it_with_0(
    tmp_path, database_url, monkeypatch, schedulers
):
    monkeypatch.setenv("DIGEST_DATABASE_URL", database_url)
    project = write_project(tmp_path, cron="0 9 * * FRI", url=database_url)
    args = ["health", "--config", str(project.config)]
    assert CliRunner().invoke(cli, args).exit_code == 1  # no scheduler has ever beaten
    env = {**os.environ, "DIGEST_SECRET": SECRET, "DIGEST_DATABASE_URL": database_url}
    one = Scheduler(project, env, "idle")
    schedulers.append(one)
    wait_for(one.ready, what="the scheduler to start")
    wait_for(lambda: CliRunner().invoke(cli, args).exit_code == 0, what="digest health to be 0")
    one.proc.send_signal(signal.SIGINT)
    assert one.proc.wait(10) == 0, one.output()
    assert "received SIGINT" in one.output()


def test_editors_are_told_through_the_newsletters_own_transport(due, sg):
    """A notice goes out the way the issue would have (here SendGrid), and into the log."""
    project, _env, fire = due(subscribers=3, batch_size=10)
    project.feed.write_text(rss(recent_items(2, fire)), encoding="utf-8")  # a thin week
    settings = project.settings()
    store = project.store()
    try:
        outcome = jobs.send(settings, store, fire)
    finally:
        store.close()
    assert outcome.startswith("skipped: thin week")
    assert sorted(sg.recipients()) == sorted(EDITORS)
    [request] = sg.accepted
    assert request.body["subject"] == f"[digest] {IssueKey.at(fire, NY)!s} was not sent"
