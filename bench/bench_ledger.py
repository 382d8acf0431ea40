"""Ledger benchmark: the database's work for each phase of a send, without a transport.

Run:  .venv/bin/python bench/bench_ledger.py [--subscribers 200000]
          [--database postgresql+psycopg://postgres@127.0.0.1:5432/test]

One process queues N generated subscribers in ranges of 50,000 ids (as a send's queueing
thread does), then claims them all in batches of 1,000 (each claim walking on from the last,
as a send's do), then finishes every batch as submitted. For each phase it prints the wall
time, this process's CPU and, for a PostgreSQL server on this machine, the server's CPU (its
processes', from /proc). Then the deliveries table's size and its indexes', and on PostgreSQL
how many of its row updates were HOT (rewritten on their own page, no index touched).
The subscribers and the issue are set up first (not timed), in a schema of the benchmark's own.

What it isolates: ``bench_send.py`` runs the same ledger beside the stand-in and digest's own
building, all sharing the cores, so the database's share there moves with everything else.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from bench_send import NOW, own_schema, server_cpu_reader, setup

KEY = "2026-W48"
BATCH = 1000
SPAN = 50_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=200_000)
    parser.add_argument("--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    with own_schema(args.database, "bench_ledger") as url, tempfile.TemporaryDirectory() as tmp:
        if not url:
            url = f"sqlite:///{tmp}/digest.sqlite3"
        os.environ["DIGEST_DATABASE_URL"] = url
        config = setup(Path(tmp), "http://127.0.0.1:9", args.subscribers, url)
        run(config, url)


def run(config: Path, url: str) -> None:
    """Record the sample issue, then time queueing, claiming and finishing everyone."""
    from digest.config import load
    from digest.delivery.variants import record
    from digest.issue.build import build
    from digest.store import Claimed, Store

    settings = load(config)
    store = Store.open(settings.database_url)
    record(store, settings, build(settings, datetime.fromisoformat(NOW).replace(tzinfo=settings.newsletter.zone)))
    ledger = store.ledger
    server = server_cpu_reader(url)
    waiting = ledger.waiting(KEY)
    variants = {choice: "all" for choice in ledger.choices_to_queue(KEY)}
    claimed: list[Claimed] = []

    def queue() -> None:
        for ids in ledger.id_ranges(SPAN):
            ledger.enqueue(KEY, variants, ids=ids, waiting=waiting)

    def claim() -> None:
        # Code from before migration 0010 (PYTHONPATH, to compare) searches from the start.
        import digest.store as store_package

        walks_on = hasattr(store_package, "ClaimCursor")
        how = {"cursor": store_package.ClaimCursor()} if walks_on else {}
        while (batch := ledger.claim(KEY, BATCH, "sendgrid", **how)) is not None:
            claimed.append(batch)

    def finish() -> None:
        for batch in claimed:
            ledger.finish(batch, {r[0]: ("submitted", "") for r in batch.recipients}, "bench")

    print("| phase | wall (s) | digest CPU (s) | database server CPU (s) |")
    print("| --- | --- | --- | --- |")
    for name, phase in (("queue", queue), ("claim", claim), ("finish", finish)):
        timed(name, phase, server)
    counts = ledger.counts(KEY)
    store.close()  # each backend reports its statistics as it ends
    if counts != {"submitted": sum(len(b.recipients) for b in claimed)}:
        raise SystemExit(f"not everyone was claimed and finished once: {counts}")
    sizes(url)


def timed(name: str, phase: Callable[[], None], server: Callable[[], float] | None) -> None:
    """Run one phase and print its row of the table."""
    server_before = server() if server else 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    phase()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    used = f"{server() - server_before:.2f}" if server else "-"
    print(f"| {name} | {wall:.2f} | {cpu:.2f} | {used} |", flush=True)


def sizes(url: str) -> None:
    """The table's size and its indexes', and its updates in place: PostgreSQL's figures (a
    SQLite file's size says little about one table)."""
    import sqlalchemy as sa

    if not url.startswith("postgresql"):
        return
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        table, indexes = conn.exec_driver_sql(
            "SELECT pg_relation_size('deliveries'), pg_indexes_size('deliveries')"
        ).one()
        deadline = time.monotonic() + 10
        while True:  # the ended backends' statistics arrive within moments
            updated, hot = conn.exec_driver_sql(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'deliveries'::regclass"
            ).one()
            conn.rollback()
            if updated or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    engine.dispose()
    print(f"deliveries: {table / 2**20:.0f} MB, its indexes {indexes / 2**20:.0f} MB; updates {updated:,}, HOT {hot:,}")


if __name__ == "__main__":
    main()
