"""Per-batch costs of a send, part by part, on one thread: claim, build, request, finish.

Run:  .venv/bin/python bench/bench_batch_parts.py [--subscribers 300000] [--batches 80]
      [--before OLD/src] [--rounds 3]

A send's two threads share one GIL, so what a batch costs in Python is what limits it; this
times each part of a batch alone, without the stand-in and without the other thread: the claim
(``Ledger.claim``), the recipients' values and tokens (``runner._batch``), the SendGrid request
(``prepare``: personalizations and JSON) and the finish (``Ledger.finish``), as medians over
``--batches`` batches of 1,000 on a SQLite store with ``--subscribers`` queued. The machine's
speed moves from minute to minute, so ``--before`` runs another version's code (``git archive
COMMIT src templates | tar -x -C OLD``) in turns with this one, each on a fresh copy of a store
made by its own code (an older version cannot open a database a newer one has migrated), and
each run also prints its claim as a share of its build and request: parts both versions may
share, as the yardstick of the machine's speed at that moment.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
KEY = "2026-W48"


def prepare_store(work: Path, count: int) -> Path:
    """A store with the sample issue recorded and ``count`` subscribers queued; its config."""
    sys.path.insert(0, str(BENCH))
    import bench_send

    from digest.config import load
    from digest.delivery.queueing import enqueue
    from digest.delivery.variants import record
    from digest.issue.build import build
    from digest.store import Store

    config = bench_send.setup(work, "http://127.0.0.1:9", count, "")
    settings = load(config)
    store = Store.open(settings.database_url)
    now = datetime.fromisoformat(bench_send.NOW).replace(tzinfo=settings.newsletter.zone)
    record(store, settings, build(settings, now))
    enqueue(store, settings, KEY)
    store.close()
    return config


def measure(config: str, batches: int) -> dict[str, float]:
    """Median milliseconds of each part over ``batches`` batches (run in a process of its own)."""
    from digest.config import load
    from digest.delivery import runner
    from digest.delivery.tokens import Signer
    from digest.delivery.transports.sendgrid import SendGridTransport
    from digest.delivery.variants import stored_variant
    from digest.store import Store

    settings = load(Path(config))
    store = Store.open(settings.database_url)
    signer = Signer("bench-secret-long-enough-to-sign-links")
    transport = SendGridTransport(settings, "SG.bench")
    times: dict[str, list[float]] = {"claim": [], "build": [], "request": [], "finish": []}
    variants = {}
    # Each claim walks on from the last, as a send's do; code from before migration 0010 (run
    # with --before) searches from the start, as it did.
    import digest.store as store_package

    walks_on = hasattr(store_package, "ClaimCursor")
    how = {"cursor": store_package.ClaimCursor()} if walks_on else {}
    for _ in range(batches):
        start = time.perf_counter()
        claimed = store.ledger.claim(KEY, 1000, "sendgrid", **how)
        if claimed is None:
            break
        claimed_at = time.perf_counter()
        if claimed.variant not in variants:
            variants[claimed.variant] = stored_variant(store, KEY, claimed.variant)
        batch = runner._batch(settings, signer, claimed, variants[claimed.variant])
        built = time.perf_counter()
        transport.prepare(batch)
        requested = time.perf_counter()
        store.ledger.finish(claimed, {r.delivery_id: ("submitted", "") for r in batch.recipients}, "bench")
        finished = time.perf_counter()
        spans = (claimed_at - start, built - claimed_at, requested - built, finished - requested)
        for part, spent in zip(times, spans, strict=True):
            times[part].append(spent * 1000)
    store.close()
    return {part: statistics.median(spent) for part, spent in times.items()}


def in_process(src: str, *options: str) -> str:
    """This script run with ``options`` in a process of its own, with the code in ``src``; the
    last line it printed."""
    out = subprocess.run(
        [sys.executable, __file__, *options],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": src},
        check=False,
    )
    if out.returncode != 0:
        sys.exit(out.stderr)
    return out.stdout.strip().splitlines()[-1]


def run(work: Path, config: Path, src: str, batches: int) -> dict[str, float]:
    """One measurement on a fresh copy of the queued store, with the code in ``src``."""
    copy = work / "run"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(config.parent, copy)
    return dict(json.loads(in_process(src, "--measure", str(copy / config.name), "--batches", str(batches))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=300_000)
    parser.add_argument("--batches", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, help="another version's src/, run in turns with this one")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.batches)))
        return
    if args.prepare:
        print(prepare_store(args.prepare, args.subscribers))
        return
    if args.batches * 1000 > args.subscribers:
        sys.exit("--batches of 1,000 must fit in --subscribers")
    versions = {"this code": str(BENCH.parent / "src")}
    if args.before is not None:
        versions[f"{args.before}"] = str(args.before.resolve())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # A store for each version, made by its own code: an older one cannot open a database
        # that a newer one has migrated further.
        configs = {
            label: Path(in_process(src, "--prepare", str(work / f"queued{i}"), "--subscribers", str(args.subscribers)))
            for i, (label, src) in enumerate(versions.items())
        }
        print(f"{args.subscribers:,} queued, medians over {args.batches} batches of 1,000; load {os.getloadavg()}")
        print("| round | code | claim (ms) | build (ms) | request (ms) | finish (ms) | claim / (build + request) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for round_ in range(1, args.rounds + 1):
            for label, src in versions.items():
                ms = run(work, configs[label], src, args.batches)
                share = ms["claim"] / (ms["build"] + ms["request"])
                print(
                    f"| {round_} | {label} | {ms['claim']:.2f} | {ms['build']:.2f} | {ms['request']:.2f} | "
                    f"{ms['finish']:.2f} | {share:.2f} |"
                )


if __name__ == "__main__":
    main()
