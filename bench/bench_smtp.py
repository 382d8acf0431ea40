"""SMTP sending benchmark: N recipients through ``SmtpTransport`` to an aiosmtpd server on loopback.

Run:  .venv/bin/python bench/bench_smtp.py --recipients 10000 [--batch 100]

The bundled sample is rendered once (``digest.build.build`` at 2026-11-27T14:00Z, about 35 KB of
inlined HTML), as ``digest send`` does; then every recipient gets their own message through the
real path: signed links from ``deliver.recipient_values``, ``build_message``, one SMTP transaction
each, batches of ``--batch`` over the one connection the transport keeps. The server is aiosmtpd
in a separate process (this file with ``--serve``), so it does not share the sender's CPU core or
GIL; it counts the messages, bytes and connections it saw, and the run fails unless it received
every recipient exactly once, all over one connection.

Wall time covers the sends and the QUIT, not the rendering. Peak RSS is the sending process's.
Prints a markdown table row: recipients, wall s, recipients/s, peak RSS MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 27, 14, tzinfo=UTC)


def serve() -> None:
    """The server process: print the port, count until stdin closes, then print the counts as JSON."""
    from aiosmtpd.controller import Controller

    class Counter:
        def __init__(self) -> None:
            self.messages = 0
            self.bytes = 0
            self.recipients: set[str] = set()
            self.duplicates = 0
            self.peers: set[Any] = set()

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.messages += 1
            self.bytes += len(envelope.original_content)
            self.peers.add(session.peer)
            for rcpt in envelope.rcpt_tos:
                if rcpt in self.recipients:
                    self.duplicates += 1
                self.recipients.add(rcpt)
            return "250 2.0.0 Ok: queued"

    class PortZeroController(Controller):
        """aiosmtpd 1.4.6 probes ``self.port`` in ``start()``: read the real one from the socket first."""

        def _trigger_server(self) -> None:
            assert isinstance(self.server, asyncio.Server)
            self.port = self.server.sockets[0].getsockname()[1]
            super()._trigger_server()

    counter = Counter()
    controller = PortZeroController(counter, hostname="127.0.0.1", port=0)
    controller.start()
    print(controller.port, flush=True)
    sys.stdin.read()  # the parent closes our stdin when it is done
    controller.stop()
    print(
        json.dumps(
            {
                "messages": counter.messages,
                "bytes": counter.bytes,
                "distinct": len(counter.recipients),
                "duplicates": counter.duplicates,
                "connections": len(counter.peers),
            }
        ),
        flush=True,
    )


def run(recipients: int, batch_size: int, config: Path) -> None:
    from digest.config import load
    from digest.delivery.runner import recipient_values
    from digest.delivery.tokens import Signer
    from digest.delivery.transports.base import Batch, Recipient
    from digest.delivery.transports.smtp import SmtpTransport
    from digest.issue.build import build

    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdin is not None
        port = int(server.stdout.readline())
        with tempfile.TemporaryDirectory() as tmp:
            settings = load(config)
            settings = settings.model_copy(
                update={
                    "store": settings.store.model_copy(update={"data_dir": tmp}),
                    "delivery": settings.delivery.model_copy(
                        update={
                            "smtp": settings.delivery.smtp.model_copy(
                                update={"host": "127.0.0.1", "port": port, "security": "none", "username": ""}
                            )
                        }
                    ),
                }
            )
            variant = build(settings, NOW).rendered
            signer = Signer("bench-secret-long-enough-to-sign-links")
            transport = SmtpTransport(settings)
            outcomes: dict[str, int] = {}
            start = time.perf_counter()
            for first in range(0, recipients, batch_size):
                people = tuple(
                    Recipient(
                        i,
                        i,
                        f"reader{i}@bench.example",
                        recipient_values(settings, signer, i, f"reader{i}@bench.example", f"Reader {i}"),
                    )
                    for i in range(first + 1, min(first + batch_size, recipients) + 1)
                )
                result = transport.send(Batch("2026-W48", variant, people, batch_id=first // batch_size + 1))
                for status, _ in result.outcomes.values():
                    outcomes[status] = outcomes.get(status, 0) + 1
            transport.close()
            wall = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        server.stdin.close()
        stats = json.loads(server.stdout.readline())
    finally:
        if server.stdin and not server.stdin.closed:
            server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    expected = {"messages": recipients, "distinct": recipients, "duplicates": 0, "connections": 1}
    seen = {k: stats[k] for k in expected}
    if outcomes != {"submitted": recipients} or seen != expected:
        sys.exit(f"benchmark run was not clean: outcomes {outcomes}, server saw {seen}")
    print(
        f"HTML part {variant.html_bytes / 1024:.1f} KB; {stats['bytes'] / stats['messages'] / 1024:.1f} KB per message "
        f"on the wire; {transport.connections} connection(s)",
        file=sys.stderr,
    )
    print("| recipients | wall (s) | recipients/s | peak RSS (MB) |")
    print("| --- | --- | --- | --- |")
    print(f"| {recipients} | {wall:.2f} | {recipients / wall:.0f} | {peak_mb:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100, help="recipients per batch (SmtpTransport.max_batch)")
    parser.add_argument("--config", type=Path, default=ROOT / "config.toml", help="the sample config to render")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
    else:
        run(args.recipients, args.batch, args.config)


if __name__ == "__main__":
    main()
