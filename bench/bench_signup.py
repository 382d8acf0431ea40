"""Sign-up benchmark: N sign-ups posted at once to a real `digest serve` (uvicorn) on 127.0.0.1.

Run:  .venv/bin/python bench/bench_signup.py [--signups 1000] [--concurrency 1000] [--database URL]

`digest serve` runs as a separate process on the bundled sample's config with the outbox
transport and a per-IP limit high enough for one client to post everything. Every sign-up is a
new address, posted as JSON, all at once. It checks that every post was answered 202 and that
every address got exactly one confirmation mail (one .eml per address in the outbox) and one
pending sign-up, nothing lost and nothing twice, and reports sign-ups per second and the
server's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from email import message_from_binary_file, policy
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-signup-secret-long-enough-to-sign-links"


def prepare(folder: Path, database: str | None) -> Path:
    shutil.copy(ROOT / "config.toml", folder / "config.toml")
    shutil.copytree(ROOT / "examples", folder / "examples")
    config = folder / "config.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace('per_ip = "20/hour"', 'per_ip = "1000000/hour"')  # one client posts everything
    if database:
        text = text.replace('data_dir = ".digest"', f'data_dir = ".digest"\nurl = "{database}"')
    config.write_text(text, encoding="utf-8")
    return config


def start_server(config: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "DIGEST_SECRET": SECRET}
    env.pop("DIGEST_DATABASE_URL", None)
    digest = Path(sys.executable).with_name("digest")
    proc = subprocess.Popen(
        [str(digest), "serve", "--config", str(config), "--port", "0"], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    if not match:
        proc.kill()
        sys.exit(f"digest serve did not start: {line!r}")
    return proc, match.group(0)


async def post_all(base: str, count: int, concurrency: int) -> tuple[float, Counter[int | str]]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base) as warm:  # its own connection: idle ones time out (5 s)
        await warm.get("/subscribe")  # the first request pays for imports, not the timing
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:

        async def one(i: int) -> int | str:
            body = {"email": f"reader{i:05d}@example.org", "name": f"Reader {i}", "source": "bench"}
            try:
                answer = await client.post("/subscribe", json=body)
            except httpx.TransportError as exc:  # counted and reported: a lost sign-up fails the run
                return f"{type(exc).__name__}: {exc}"
            return answer.status_code

        started = time.perf_counter()
        codes = await asyncio.gather(*(one(i) for i in range(count)))
        return time.perf_counter() - started, Counter(codes)


def stop_server(proc: subprocess.Popen[str]) -> float:
    """Stop it (SIGTERM, exit 0) and return its peak RSS in MB."""
    proc.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"digest serve exited with {proc.returncode}")
    return usage.ru_maxrss / 1024


def check(folder: Path, config: Path, count: int) -> None:
    """One confirmation .eml per address, and one pending sign-up each: nothing lost, none twice."""
    outbox = folder / ".digest" / "outbox" / "signups"
    files = list(outbox.glob("*.eml"))
    recipients: Counter[str] = Counter()
    for path in files:
        with path.open("rb") as handle:
            message = message_from_binary_file(handle, policy=policy.default)
        recipients[str(message["To"]).rsplit("<", 1)[-1].rstrip(">")] += 1
    expected = {f"reader{i:05d}@example.org" for i in range(count)}
    assert set(recipients) == expected, f"{len(expected - set(recipients))} address(es) got no mail"
    twice = [address for address, n in recipients.items() if n != 1]
    assert not twice, f"{len(twice)} address(es) got more than one mail"

    sys.path.insert(0, str(ROOT / "src"))
    from digest.config import load
    from digest.store import Store

    store = Store.open(load(config).database_url)
    try:
        pending = store.signups.count_pending()
        assert pending == count, f"{pending} pending sign-ups recorded for {count} posts"
        assert store.subscribers.counts() == {}, "a pending sign-up became a subscriber"
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signups", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1000, help="connections open at once")
    parser.add_argument("--database", help="a database URL (default: SQLite in the temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-signup-") as tmp:
        folder = Path(tmp)
        config = prepare(folder, args.database)
        proc, base = start_server(config)
        try:
            wall, codes = asyncio.run(post_all(base, args.signups, args.concurrency))
        finally:
            peak = stop_server(proc)
        assert codes == Counter({202: args.signups}), f"answers: {dict(codes)}"
        check(folder, config, args.signups)
        print(
            f"{args.signups} sign-ups ({args.concurrency} at once): {wall:.2f} s wall, "
            f"{args.signups / wall:.0f} sign-ups/s, server peak RSS {peak:.0f} MB; "
            f"{args.signups} confirmation mails, one per address, none lost"
        )


if __name__ == "__main__":
    main()
