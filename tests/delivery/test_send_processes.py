"""Real `digest send` processes against the SendGrid stand-in, the outbox and an SMTP server:
killed and resumed, and run twice at once. What the service received (the stand-in's requests,
the outbox's files, the SMTP server's messages) is the judge: nobody twice, nobody silently left
out, and nobody left unknown whose fate the transport can tell."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from test_transport_smtp import Recorder, _Controller

from digest.cli import cli
from digest.store import Store
from digest.store.schema import batches, deliveries, subscribers
from factories import KEY, SECRET, copy_sample

NOW = "2026-11-27T09:00"
DIGEST = str(Path(sys.executable).with_name("digest"))


def sendgrid_job(tmp_path: Path, sg, database_url: str, connections: int) -> tuple[Path, dict[str, str], str]:
    """The bundled sample set up to send through the stand-in, with 3,500 subscribers, with up
    to ``connections`` requests in flight."""
    delivery = (
        f'[delivery]\ntransport = "sendgrid"\nbatch_size = 1000\nretries = 1\nbackoff = 0.01\n'
        f'[delivery.sendgrid]\napi_host = "{sg.url}"\ntimeout = 10\nconnections = {connections}\n'
    )
    return prepare(tmp_path, database_url, delivery, 3500)


@pytest.fixture
def job(tmp_path, sg, database_url):
    """One request in flight at a time: each state of the pipeline is exact."""
    return sendgrid_job(tmp_path, sg, database_url, 1)


def prepare(tmp_path: Path, database_url: str, delivery: str, readers: int) -> tuple[Path, dict[str, str], str]:
    """The bundled sample with ``delivery`` (a TOML [delivery] table) and ``readers`` subscribers."""
    config = copy_sample(tmp_path, append=delivery)
    rows = "\n".join(f"reader{i}@example.org,Reader {i}" for i in range(readers))
    (tmp_path / "subs.csv").write_text(f"email,name\n{rows}\n", encoding="utf-8")
    env = {
        **os.environ,
        "DIGEST_SECRET": SECRET,
        "SENDGRID_API_KEY": "SG.test",
        "DIGEST_DATABASE_URL": database_url,
    }
    result = CliRunner(env=env).invoke(
        cli, ["subscribers", "import", "--config", str(config), str(tmp_path / "subs.csv")]
    )
    assert result.exit_code == 0, result.output
    return config, env, database_url


def start_send(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [DIGEST, "send", "--config", str(config), "--now", NOW],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def killed_once_claimed(config: Path, env: dict[str, str], url: str, sg, *, submitting: int) -> None:
    """Start a send and SIGKILL it once two requests reached the stand-in and ``submitting``
    deliveries are claimed (in flight, or ahead)."""
    proc = start_send(config, env)
    wait_for(lambda: sg.requests >= 2)
    wait_for(lambda: counts(url).get("submitting") == submitting)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def settled_on_the_next_run(config: Path, env: dict[str, str], url: str, sg, *, unknown: int) -> None:
    """Run the send of the 3,500 again after a kill: ``unknown`` recipients (the batches that were
    in flight) are reported and not re-sent, everyone else is sent, and nobody twice."""
    again = subprocess.run(
        [DIGEST, "send", "--config", str(config), "--now", NOW], env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 1
    assert f"{unknown} recipient(s) failed or unknown" in again.stderr
    assert counts(url) == {"submitted": 3500 - unknown, "unknown": unknown}
    received = Counter(sg.recipients())
    assert len(received) == 3500 and max(received.values()) == 1


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def handed_over(url: str) -> dict[bool, int]:
    """How many of the issue's batches were handed to the transport, and how many only claimed."""
    store = Store.open(url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(batches.c.handed_over, sa.func.count()).group_by(batches.c.handed_over))
            return {bool(flag): n for flag, n in rows}
    finally:
        store.close()


def counts(url: str) -> dict[str, int]:
    store = Store.open(url)
    try:
        return store.ledger.counts(KEY)
    finally:
        store.close()


def test_killed_mid_send_then_run_again_completes_without_duplicates(job, sg):
    config, env, url = job
    sg.pass_next(times=1)
    sg.stall_next(30)  # the second request hangs: the process is killed while it waits
    # The send claims and builds the next two batches while one is in flight: killed once both
    # (the rest of the 3,500) are claimed ahead.
    killed_once_claimed(config, env, url, sg, submitting=2500)
    assert counts(url) == {"submitted": 1000, "submitting": 2500}
    assert handed_over(url) == {True: 2, False: 2}

    # The batch in flight at the kill is unknown (it did reach the service): reported, not re-sent.
    # The two claimed ahead never reached it: they went back to pending and out in this run.
    settled_on_the_next_run(config, env, url, sg, unknown=1000)


def test_killed_with_two_requests_in_flight_then_run_again_sends_the_rest_once(tmp_path, sg, database_url):
    config, env, url = sendgrid_job(tmp_path, sg, database_url, 2)
    sg.stall_next(30, times=2)  # both lanes' requests hang: the process is killed while they wait
    killed_once_claimed(config, env, url, sg, submitting=3500)  # and the other two claimed ahead
    assert counts(url) == {"submitting": 3500}
    assert handed_over(url) == {True: 2, False: 2}

    # Both batches in flight did reach the service: unknown, reported, not re-sent. The two
    # claimed ahead went back to pending and out in this run.
    settled_on_the_next_run(config, env, url, sg, unknown=2000)


def test_two_senders_at_once_submit_each_recipient_once(job, sg):
    config, env, url = job
    procs = [start_send(config, env) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    assert counts(url) == {"submitted": 3500}
    received = Counter(sg.recipients())
    assert len(received) == 3500 and max(received.values()) == 1
    per_process = [int(out.rsplit("this run: ", 1)[1].split()[0]) for out, _ in outputs]
    assert sum(per_process) == 3500


def test_four_workers_started_at_once_share_the_issue_and_mail_each_reader_once(tmp_path, sg, database_url):
    """Several `digest send` workers (on several hosts, on PostgreSQL) on one issue nobody has
    recorded or queued yet: each records and queues it at once, they claim disjoint batches, and
    the issue is sent once nothing is pending or in flight."""
    delivery = (
        f'[delivery]\ntransport = "sendgrid"\nbatch_size = 250\nretries = 1\nbackoff = 0.01\n'
        f'[delivery.sendgrid]\napi_host = "{sg.url}"\ntimeout = 10\n'
    )
    config, env, url = prepare(tmp_path, database_url, delivery, 4000)
    # Every request takes a while (16 batches: about 5 s for one worker alone), so the others
    # are up and claiming long before the first could finish, however slowly they start.
    sg.latency = 0.3
    procs = [start_send(config, env) for _ in range(4)]
    outputs = [p.communicate(timeout=180) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    assert counts(url) == {"submitted": 4000}
    received = Counter(sg.recipients())
    assert len(received) == 4000 and max(received.values()) == 1
    per_process = [int(out.rsplit("this run: ", 1)[1].split()[0]) for out, _ in outputs]
    assert sum(per_process) == 4000
    assert sum(1 for n in per_process if n) >= 2, per_process  # the work was shared
    store = Store.open(url)
    try:
        assert store.issues.get(KEY).status == "sent"
        assert [record.key for record, _ in store.issues.recent()] == [KEY]
    finally:
        store.close()


def digest(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DIGEST, *args, "--config", str(config)], env=env, capture_output=True, text=True, timeout=180
    )


# --- the outbox -------------------------------------------------------------------------------------


def test_killed_mid_outbox_send_then_run_again_settles_everyone_into_one_file(tmp_path, database_url):
    config, env, url = prepare(tmp_path, database_url, '[delivery]\ntransport = "outbox"\nbatch_size = 200\n', 600)
    folder = tmp_path / ".digest" / "outbox" / KEY
    proc = start_send(config, env)
    wait_for(lambda: folder.is_dir() and len(os.listdir(folder)) >= 260, timeout=120)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert counts(url) == {"submitted": 200, "submitting": 200, "pending": 200}
    # A kill mid-write leaves a half-written file beside the one it was writing (it may have
    # landed between two files this time: make sure one is there, as a kill leaves it).
    unwritten = [name for name in in_flight(url) if not (folder / name).exists()]
    assert unwritten, "the kill came after the whole batch was written"
    (folder / f".{unwritten[0]}.x7q2k9zp.tmp").write_bytes(b"From: half of a messa")

    again = digest(config, env, "send", "--now", NOW)

    assert again.returncode == 0, again.stderr
    assert counts(url) == {"submitted": 600}  # none left unknown: the folder told each one's fate
    names = os.listdir(folder)
    assert [n for n in names if n.endswith(".tmp")] == []
    parser = BytesHeaderParser()
    to = Counter(parser.parsebytes((folder / name).read_bytes())["To"] for name in names)
    assert to == Counter({f"Reader {i} <reader{i}@example.org>": 1 for i in range(600)})


def in_flight(url: str) -> list[str]:
    """The outbox file names of the deliveries left ``submitting``."""
    from digest.delivery.transports.outbox import delivery_file_name

    store = Store.open(url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(deliveries.c.id, deliveries.c.subscriber_id).where(deliveries.c.status == "submitting")
            ).all()
    finally:
        store.close()
    return [delivery_file_name(r.id, r.subscriber_id) for r in rows]


# --- SMTP ---------------------------------------------------------------------------------------------


class KillsTheSender(Recorder):
    """An SMTP server during whose conversation about ``victim``'s message, at ``step`` (RCPT or
    DATA), the `digest send` process talking to it is killed; then the connection drops."""

    def __init__(self, victim: str, step: str) -> None:
        super().__init__()
        self.victim, self.step = victim, step
        self.pid = 0

    def _kill(self, step: str, address: str) -> bool:
        if step != self.step or address != self.victim or not self.pid:
            return False
        os.kill(self.pid, signal.SIGKILL)
        self.pid = 0  # once
        return True

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if self._kill("RCPT", address):
            server.transport.abort()
            return "421 4.3.0 closing"  # never read: nothing of this message was taken
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)  # the data is in: it may be delivered
        if self._kill("DATA", envelope.rcpt_tos[0]):
            server.transport.abort()
        return reply


@pytest.fixture
def smtp_job(tmp_path, database_url):
    """30 subscribers sending through an SMTP server on 127.0.0.1 in batches of 10; yields a
    function that starts the server with a handler and returns (config, env, url)."""
    started: list[_Controller] = []

    def start(handler: Recorder, connections: int = 1) -> tuple[Path, dict[str, str], str]:
        server = _Controller(handler, hostname="127.0.0.1", port=0)
        server.start()
        started.append(server)
        delivery = (
            '[delivery]\ntransport = "smtp"\nbatch_size = 10\n'
            f'[delivery.smtp]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "none"\ntimeout = 10\n'
            f"connections = {connections}\n"
        )
        return prepare(tmp_path, database_url, delivery, 30)

    yield start
    for server in started:
        server.stop()


def killed_at(handler: KillsTheSender, config: Path, env: dict[str, str]) -> None:
    proc = start_send(config, env)
    handler.pid = proc.pid
    assert proc.wait(120) == -signal.SIGKILL


def test_smtp_send_killed_before_the_data_resends_the_rest_once_on_the_next_run(smtp_job, tmp_path):
    handler = KillsTheSender("reader14@example.org", "RCPT")  # the 5th of the second batch
    config, env, url = smtp_job(handler)
    killed_at(handler, config, env)
    assert counts(url) == {"submitted": 10, "submitting": 10, "pending": 10}

    again = digest(config, env, "send", "--now", NOW)

    assert again.returncode == 0, again.stderr
    assert counts(url) == {"submitted": 30}
    assert Counter(handler.to()) == Counter({f"reader{i}@example.org": 1 for i in range(30)})
    assert os.listdir(tmp_path / ".digest" / "smtp-journal") == []


def test_smtp_message_lost_after_its_data_stays_unknown_until_resend_unknown(smtp_job):
    victim = "reader14@example.org"
    handler = KillsTheSender(victim, "DATA")
    config, env, url = smtp_job(handler)
    killed_at(handler, config, env)

    again = digest(config, env, "send", "--now", NOW)

    assert again.returncode == 1
    assert "--resend-unknown" in again.stderr
    assert counts(url) == {"submitted": 29, "unknown": 1}  # only the one whose data was out
    status = digest(config, env, "status")
    assert "1 unknown: they may have received it" in status.stdout and "--resend-unknown" in status.stdout
    assert f"unknown  {victim}" in status.stdout
    assert Counter(handler.to()) == Counter({f"reader{i}@example.org": 1 for i in range(30)})

    resend = digest(config, env, "send", "--now", NOW, "--resend-unknown")

    assert resend.returncode == 0, resend.stderr
    assert "Warning: 1 recipient(s) whose outcome was unknown were queued again" in resend.stdout
    assert "1 unknown recipient(s) queued again (--resend-unknown)" in resend.stderr  # and logged
    assert counts(url) == {"submitted": 30}
    assert Counter(handler.to()) == Counter({f"reader{i}@example.org": 2 if i == 14 else 1 for i in range(30)})


def statuses(url: str) -> dict[str, str]:
    """Each subscriber's delivery status for issue KEY, by address."""
    store = Store.open(url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(subscribers.c.email, deliveries.c.status)
                .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                .where(deliveries.c.issue_key == KEY)
            ).all()
    finally:
        store.close()
    return {r.email: r.status for r in rows}


@pytest.mark.parametrize("step", ["RCPT", "DATA"])
def test_smtp_send_on_three_connections_killed_mid_batch_settles_on_the_next_run(smtp_job, tmp_path, step):
    """Killed while three connections are busy with the second batch: the journal they share
    tells the next run, message by message, who has it (submitted), who cannot have it (sent
    now) and whose data was out when the process died (unknown, never sent again on its own)."""
    victim = "reader14@example.org"
    handler = KillsTheSender(victim, step)
    config, env, url = smtp_job(handler, connections=3)
    killed_at(handler, config, env)
    assert counts(url) == {"submitted": 10, "submitting": 10, "pending": 10}

    again = digest(config, env, "send", "--now", NOW)

    received = Counter(handler.to())
    after = statuses(url)
    unknown = sorted(who for who, status in after.items() if status == "unknown")
    assert set(after.values()) <= {"submitted", "unknown"} and len(after) == 30
    assert set(received.values()) == {1}  # nobody twice
    assert all(received[who] == 1 for who, status in after.items() if status == "submitted")
    assert all(received[who] <= 1 for who in unknown)  # its data may or may not have arrived
    assert (victim in unknown) == (step == "DATA")  # at RCPT its data never left: sent on the rerun
    assert again.returncode == (1 if unknown else 0), again.stderr
    assert os.listdir(tmp_path / ".digest" / "smtp-journal") == []
