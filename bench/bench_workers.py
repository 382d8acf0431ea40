"""Workers benchmark: 1, 2 and 4 `send` worker processes sharing one issue on PostgreSQL.

Run:  .venv/bin/python bench/bench_workers.py [--subscribers 60000] [--latency 0.05]
          [--batch-size 1000] [--connections 1] [--database postgresql+psycopg://postgres@127.0.0.1:5432/test]

Each worker has ``--connections`` requests in flight (1 by default, so that the ratio to one
worker measures the workers alone; a send's default is 2, ``[delivery.sendgrid] connections``).

As several hosts would, each worker opens the same database and runs the one send path
(``runner.send_pending``: queue, reap, claim batches with SKIP LOCKED, hand over, finish) on the
same issue at the same moment. The SendGrid stand-in (tests/sendgrid_standin.py) runs as a
separate process on 127.0.0.1, checks every request against the contract, and answers each one
``--latency`` seconds late, handling requests concurrently, as the real service's round trip
would. The subscribers and the recorded issue are set up once in a schema of their own (not
timed); before each round the issue's deliveries are deleted, so every round queues everyone
anew, all workers at once. Workers import and open everything first, then start together.

It prints each round's rate, batches (claims) per second and its ratio to one worker, and
fails unless every subscriber got exactly one copy in every round.
Goal (issue 13): at least 3x the rate of one worker with four.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench_send import NOW, own_schema, setup, start_standin, stop_standin

SECRET = "bench-secret-long-enough-to-sign-links"
KEY = "2026-W48"
ROUNDS = (1, 2, 4)


def worker(config: str) -> None:
    """One worker: get everything ready, say so, wait for the word, send, report."""
    from digest.config import load
    from digest.delivery import runner
    from digest.delivery.tokens import Signer
    from digest.delivery.transports import open_transport
    from digest.store import Store

    settings = load(config)
    store = Store.open(settings.database_url)
    transport = open_transport(settings)
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.time()
    report = runner.send_pending(store, settings, transport, Signer(SECRET), KEY)
    finished = time.time()
    print(json.dumps({"started": started, "finished": finished, "sent": report.sent_now, "batches": report.batches}))


def record_issue(config: str) -> None:
    """Build the bundled sample once and record it as the issue every round sends."""
    from digest.config import load
    from digest.delivery.variants import record
    from digest.issue.build import build
    from digest.store import Store

    settings = load(config)
    store = Store.open(settings.database_url)
    record(store, settings, build(settings, datetime.fromisoformat(NOW).replace(tzinfo=settings.newsletter.zone)))
    store.close()


def reset(database: str) -> None:
    """Forget every delivery and batch of the issue, as if it had just been recorded."""
    import sqlalchemy as sa

    engine = sa.create_engine(database)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM deliveries")
        conn.exec_driver_sql("DELETE FROM batches")
        conn.exec_driver_sql("UPDATE issues SET status = 'sending'")
    engine.dispose()


def one_round(count: int, config: str, database: str, latency: float) -> dict[str, float]:
    """``count`` workers on the issue at once; what they sent, how fast, what the stand-in got."""
    reset(database)
    standin, url = start_standin("--latency", str(latency))
    env = {**os.environ, "DIGEST_DATABASE_URL": database, "SENDGRID_API_KEY": "SG.bench"}
    try:
        _point_at(config, url)
        workers = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", config],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(count)
        ]
        for w in workers:
            assert w.stdout is not None
            if w.stdout.readline().strip() != "ready":
                sys.exit(f"a worker did not start: {w.communicate()}")
        for w in workers:
            assert w.stdin is not None
            w.stdin.write("go\n")
            w.stdin.flush()
        reports = []
        for w in workers:
            out, _ = w.communicate(timeout=600)
            if w.returncode != 0:
                sys.exit(f"a worker failed (exit {w.returncode})")
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        received = stop_standin(standin)
    wall = max(r["finished"] for r in reports) - min(r["started"] for r in reports)
    return {
        "workers": count,
        "wall": wall,
        "sent": sum(r["sent"] for r in reports),
        "batches": sum(r["batches"] for r in reports),
        "per_worker": [r["sent"] for r in reports],
        "received": received.get("all_recipients", -1),
        "distinct": received.get("distinct_recipients", -1),
    }


def _point_at(config: str, url: str) -> None:
    """The config's stand-in address, changed to this round's."""
    path = Path(config)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines = [f'api_host = "{url}"' if line.startswith("api_host = ") else line for line in lines]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=60_000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the stand-in takes per request")
    parser.add_argument("--batch-size", type=int, default=1000, help="[delivery] batch_size")
    parser.add_argument(
        "--connections",
        type=int,
        default=1,
        help="[delivery.sendgrid] connections of each worker (1: the ratio measures the workers alone)",
    )
    parser.add_argument(
        "--database",
        default=os.environ.get("DIGEST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL URL; the benchmark works in a schema of its own there and drops it after",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    if args.record:
        record_issue(args.record)
        return
    if not args.database.startswith("postgresql"):
        sys.exit("several workers on one issue need PostgreSQL (SQLite is for one host)")
    rounds = []
    with own_schema(args.database, "bench_workers") as database, tempfile.TemporaryDirectory() as tmp:
        config = str(setup(Path(tmp), "http://127.0.0.1:1", args.subscribers, database, 1, args.connections))
        _set_batch_size(config, args.batch_size)
        subprocess.run(
            [sys.executable, __file__, "--record", config],
            check=True,
            env={**os.environ, "DIGEST_DATABASE_URL": database},
        )
        for count in ROUNDS:
            rounds.append(one_round(count, config, database, args.latency))
    _print(rounds, args)
    wrong = [r for r in rounds if not (r["sent"] == r["received"] == r["distinct"] == args.subscribers)]
    if wrong:
        sys.exit(f"not everyone got exactly one copy: {wrong}")


def _set_batch_size(config: str, size: int) -> None:
    path = Path(config)
    text = path.read_text(encoding="utf-8").replace("[delivery]\n", f"[delivery]\nbatch_size = {size}\n", 1)
    path.write_text(text, encoding="utf-8")


def _print(rounds: list[dict[str, float]], args: argparse.Namespace) -> None:
    base = rounds[0]["sent"] / rounds[0]["wall"]
    print(
        f"{args.subscribers:,} subscribers, batches of {args.batch_size}, {args.connections} request(s) in flight "
        f"per worker, the stand-in taking {args.latency * 1000:.0f} ms per request"
    )
    print("| workers | wall (s) | recipients/s | claims/s | ratio to one worker | sent by each | received (distinct) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rounds:
        rate = r["sent"] / r["wall"]
        print(
            f"| {r['workers']} | {r['wall']:.2f} | {rate:,.0f} | {r['batches'] / r['wall']:.1f} | "
            f"{rate / base:.2f}x | {', '.join(f'{n:,}' for n in r['per_worker'])} | "
            f"{r['received']:,} ({r['distinct']:,}) |"
        )


if __name__ == "__main__":
    main()
