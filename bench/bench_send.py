"""Send benchmark: one issue to N generated subscribers through the SendGrid transport.

Run:  .venv/bin/python bench/bench_send.py [--subscribers 100000] [--database URL] [--variants N]
      [--connections N] [--latency SECONDS]

The SendGrid stand-in (tests/sendgrid_standin.py) runs as a separate process on 127.0.0.1 and
checks every request against the contract, as in the tests. The subscribers are inserted first
(not timed); then a fresh process builds the bundled sample issue, records it and sends it, and
reports wall time, recipients per second, its CPU time, the stand-in's and (PostgreSQL on this
machine) the database server's during the send (all share the machine's cores), its peak RSS,
SQL statements per batch, and how many times the CSS inliner ran (it must be once per variant,
never per recipient).
Goal (issue 3): 100,000 recipients in under 10 s on 2 cores, peak memory under 200 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOW = "2026-11-27T09:00"


def start_standin(*options: str) -> tuple[subprocess.Popen[str], str]:
    """The stand-in in a process of its own, with its command-line ``options``; and its URL."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "sendgrid_standin.py"), "--port", "0", *options],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    if not match:
        proc.kill()
        sys.exit(f"the stand-in did not start: {line!r}")
    return proc, match.group(0)


def cpu_seconds(pid: int) -> float:
    """A running process's CPU time so far (user and system), from /proc: the stand-in's share
    of a send, read before and after it."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_reader(database: str) -> Any:
    """For a PostgreSQL server on this machine, a function giving its CPU time so far: the
    postmaster's, its live processes' (backends, writers, autovacuum) and that of the children
    it has reaped, which a backend that served a connection becomes. None for SQLite (its work
    is the send's own) or a server whose processes cannot be read here."""
    if not database.startswith("postgresql"):
        return None
    import sqlalchemy as sa

    engine = sa.create_engine(database)
    try:
        with engine.connect() as conn:
            backend = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        status = Path(f"/proc/{backend}/status").read_text()
    except (sa.exc.SQLAlchemyError, OSError):
        return None
    finally:
        engine.dispose()
    postmaster = int(re.search(r"^PPid:\s*(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    tick = os.sysconf("SC_CLK_TCK")

    def fields(pid: str) -> list[str]:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()

    def read() -> float:
        own = fields(str(postmaster))
        total = sum(int(v) for v in own[11:15])  # its own time and its reaped children's
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError, IndexError):
                stat = fields(pid)
                if int(stat[1]) == postmaster:
                    total += int(stat[11]) + int(stat[12])
        return total / tick

    return read


def stop_standin(proc: subprocess.Popen[str]) -> dict[str, int]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    found = re.search(r"\{.*\}", out, re.S)
    return json.loads(found.group(0)) if found else {}


@contextlib.contextmanager
def own_schema(database: str, prefix: str) -> Iterator[str]:
    """On PostgreSQL, a schema of the benchmark's own, dropped afterwards, and the URL that works
    in it: a run never finds an earlier run's subscribers and deliveries (which would leave it
    nothing to send). Any other URL (SQLite: a new file each run) is given back as it is."""
    if not database.startswith("postgresql"):
        yield database
        return
    import sqlalchemy as sa

    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(database)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in database else "?"
    try:
        yield f"{database}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def choices(variants: int) -> list[tuple[str, ...]]:
    """``variants`` distinct choices of the sample's sections: nothing chosen (the whole issue),
    then proper subsets, smallest first."""
    from itertools import combinations

    names = ["Asia-Pacific", "Military Industrial Complex", "Middle East", "Europe", "Also this week"]
    subsets = [c for size in range(1, len(names)) for c in combinations(names, size)]
    if variants - 1 > len(subsets):
        sys.exit(f"at most {len(subsets) + 1} variants from the sample's sections")
    return [(), *subsets[: variants - 1]]


def setup(work: Path, url: str, count: int, database: str, variants: int = 1, connections: int = 0) -> Path:
    """The sample's config sending to the stand-in at ``url`` (with ``connections`` requests in
    flight, or the default), and ``count`` subscribers in the store."""
    shutil.copytree(ROOT / "examples", work / "examples")
    config = (ROOT / "config.toml").read_text(encoding="utf-8")
    config += f'\n[delivery]\ntransport = "sendgrid"\n[delivery.sendgrid]\napi_host = "{url}"\ntimeout = 30\n'
    if connections:
        config += f"connections = {connections}\n"
    path = work / "config.toml"
    path.write_text(config, encoding="utf-8")
    from digest.config import load
    from digest.store import NewSubscriber, Store

    if database:
        os.environ["DIGEST_DATABASE_URL"] = database
    store = Store.open(load(path).database_url)
    picks = choices(variants)
    store.subscribers.merge(
        NewSubscriber(f"reader{i}@example.org", f"Reader {i}", picks[i % len(picks)]) for i in range(count)
    )
    store.close()
    return path


def measured_send(config: str) -> None:
    """The timed part, run in its own process so its peak memory is its own, with the garbage
    collector set as the `digest` command sets it."""
    import gc

    import sqlalchemy as sa

    from digest.cli import GC_THRESHOLDS
    from digest.config import load
    from digest.delivery import runner as deliver
    from digest.delivery.tokens import Signer
    from digest.delivery.transports import open_transport
    from digest.delivery.variants import record
    from digest.issue import render
    from digest.issue.build import build
    from digest.store import Store

    inlined = 0
    real_inline = render.inline_css

    def counting(html: str) -> str:
        nonlocal inlined
        inlined += 1
        return real_inline(html)

    render.inline_css = counting
    gc.set_threshold(*GC_THRESHOLDS)
    started = time.perf_counter()
    settings = load(config)
    now = datetime.fromisoformat(NOW).replace(tzinfo=settings.newsletter.zone)
    store = Store.open(settings.database_url)
    statements = 0

    @sa.event.listens_for(store.engine, "before_cursor_execute")
    def count(*_: object) -> None:
        nonlocal statements
        statements += 1

    record(store, settings, build(settings, now))
    before_send = statements
    os.environ.setdefault("SENDGRID_API_KEY", "SG.bench")  # the stand-in accepts any SG. key
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    report = deliver.send_pending(
        store, settings, open_transport(settings), Signer("bench-secret-long-enough-to-sign-links"), "2026-W48"
    )
    if os.environ.get("BENCH_PROFILE"):
        profile.disable()
        profile.dump_stats(os.environ["BENCH_PROFILE"])
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "wall": wall,
                "sent": report.sent_now,
                "batches": report.batches,
                "statements_per_batch": (statements - before_send) / max(report.batches, 1),
                "inlined": inlined,
                "cpu": usage.ru_utime + usage.ru_stime,
                "peak_mb": usage.ru_maxrss / 1024,
                "counts": report.counts,
            }
        )
    )


def run(args: argparse.Namespace, database: str) -> tuple[dict[str, Any], dict[str, int]]:
    """Set up the subscribers and time the send, each in a process of its own; the measured
    process's figures and what the stand-in received."""
    if database:  # both children (setup and the measured send) use it
        os.environ["DIGEST_DATABASE_URL"] = database
    standin, url = start_standin(*(["--latency", str(args.latency)] if args.latency else []))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # Setup and measurement each run in a process of their own: on Linux a child starts
            # with its parent's peak RSS, so this process must stay small.
            prepared = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--setup",
                    f"{tmp}|{url}",
                    "--subscribers",
                    str(args.subscribers),
                    "--variants",
                    str(args.variants),
                    "--connections",
                    str(args.connections),
                    "--database",
                    database,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if prepared.returncode != 0:
                sys.exit(f"setting up the subscribers failed (exit status {prepared.returncode}): {prepared.stderr}")
            config = prepared.stdout.strip().splitlines()[-1]
            server_cpu = server_cpu_reader(database)
            server_before = server_cpu() if server_cpu else 0.0
            standin_before = cpu_seconds(standin.pid)
            child = subprocess.run(
                [sys.executable, __file__, "--measure", config], capture_output=True, text=True, check=False
            )
            standin_cpu = cpu_seconds(standin.pid) - standin_before
            server_after = server_cpu() if server_cpu else 0.0
            if child.returncode != 0:
                sys.exit(f"the measured send failed (exit status {child.returncode}): {child.stderr}")
            stats = json.loads(child.stdout.strip().splitlines()[-1])
            stats["standin_cpu"] = standin_cpu
            stats["server_cpu"] = f"{server_after - server_before:.1f}" if server_cpu else "-"
    finally:
        received = stop_standin(standin)
    return stats, received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--database", default="", help="SQLAlchemy URL (default: a SQLite file)")
    parser.add_argument("--variants", type=int, default=1, help="distinct choices of sections among subscribers")
    parser.add_argument(
        "--connections", type=int, default=0, help="[delivery.sendgrid] connections (default: the config's default)"
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds the stand-in waits before each answer, as across a network"
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measured_send(args.measure)
        return
    if args.setup:
        work, url = args.setup.split("|", 1)
        print(setup(Path(work), url, args.subscribers, args.database, args.variants, args.connections))
        return
    with own_schema(args.database, "bench_send") as database:
        stats, received = run(args, database)
    rate = stats["sent"] / stats["wall"]
    print(
        "| recipients | wall (s) | recipients/s | digest CPU (s) | stand-in CPU (s) | database server CPU (s) "
        "| peak RSS (MB) | SQL statements/batch | inliner runs | received |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {stats['sent']:,} | {stats['wall']:.2f} | {rate:,.0f} | {stats['cpu']:.1f} | {stats['standin_cpu']:.1f} "
        f"| {stats['server_cpu']} | {stats['peak_mb']:.0f} | "
        f"{stats['statements_per_batch']:.1f} | {stats['inlined']} | {received.get('recipients', '?'):,} |"
    )
    if not stats["sent"] == received.get("recipients") == args.subscribers:
        sys.exit(f"expected {args.subscribers:,} sent and received, once each: the figures above do not count")


if __name__ == "__main__":
    main()
