"""SMTP sending benchmark: digest's ``SmtpTransport`` beside raw smtplib, to the same sink on loopback.

Run:  .venv/bin/python bench/bench_smtp.py --recipients 10000 [--connections 4] [--sinks 2] [--rounds 3]
      [--reply-delay MS]

The bundled sample is rendered once (``digest.build.build`` at 2026-11-27T14:00Z, about 42 KB of
inlined HTML), as ``digest send`` does. Then, in each round and in this order, to the same sink:

- **raw smtplib** (the reference): one message of that variant flattened once by
  ``build_message``, then ``smtplib.SMTP.sendmail`` of those same bytes to each recipient over
  one connection. No per-recipient work at all: the rate of the wire, smtplib and the sink.
- **digest, 1 connection**: every recipient gets their own message through the real path:
  signed links from ``runner.recipient_values``, the variant's ``MessageTemplate``, the journal,
  one SMTP transaction each, ``SmtpTransport.max_batch`` recipients a batch.
- **digest, N connections** (``--connections N`` above 1): the same with
  ``[delivery.smtp] connections = N``.
- **raw smtplib, N connections**: the reference's bytes from N processes at once, each over its
  own connection, timed from when all have said EHLO: the most N connections can get from this
  sink on this machine with next to no work per message, the ceiling digest's N connections are
  measured against.

The sink is aiosmtpd in ``--sinks`` separate processes (this file with ``--serve``) listening on
one port with SO_REUSEPORT, so the kernel spreads the connections over them and the sink is not
one Python process's single core. They count the messages, bytes, recipients and connections
they saw; each run fails unless the sinks received every recipient exactly once, over the
expected number of connections.

On loopback a reply comes back as soon as the sink has computed it, so on a small machine the
sender and the sink share its cores and several connections can only divide them up. A real
relay (SES, Postmark, the publication's Postfix) is a network away, and each command then
waits a round trip for its reply: the wait several connections overlap. ``--reply-delay MS``
makes each aiosmtpd sink hold every reply back that long (a message costs smtplib four round
trips: MAIL, RCPT, DATA and the end of the data), the nearest this machine, which has no
``netem`` queueing discipline, comes to a relay across a network.

Wall time covers connecting, the sends and the QUIT, not the rendering. The machine's load
average is printed with the figures (other work on the machine slows both sides alike).
Prints a markdown table: one row per case and round, rates, and each case's ratio to the
reference (and to 1 connection) measured in the same round; the CPU this process and the sink
spent per message, and how busy the machine's cores were meanwhile (anyone's work, from
``/proc/stat``: when that is near 100% the cores, not the connections, set the rate), and how
many cores' worth of that was neither the sender nor the sink (other jobs sharing the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import resource
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 27, 14, tzinfo=UTC)
REFERENCE, ONE = "raw smtplib, 1 connection", "digest, 1 connection"


# --- the sink ------------------------------------------------------------------------------------


class Tally:
    """An aiosmtpd handler counting what it receives until asked (``count`` on stdin), then starting over."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.recipients: list[str] = []
        self.peers: set[Any] = set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages += 1
        self.bytes += len(envelope.original_content)
        self.peers.add(session.peer)
        self.recipients.extend(envelope.rcpt_tos)
        return "250 2.0.0 Ok: queued"

    def report(self) -> str:
        counts = {"messages": self.messages, "bytes": self.bytes, "recipients": self.recipients}
        counts["connections"] = len(self.peers)
        self.reset()
        return json.dumps(counts)


def serve(port: int, reply_delay: float) -> None:
    """One sink process: listen on ``port`` (0: any) with SO_REUSEPORT, print the port, answer
    each ``count`` line on stdin with the counts as JSON, stop at the end of stdin. With a
    ``reply_delay`` (seconds) every reply is held back that long, as if it crossed a network."""
    from aiosmtpd.smtp import SMTP

    class Distant(SMTP):
        """aiosmtpd answering each command ``reply_delay`` late: a round trip to a relay elsewhere.

        Only a reply's last line waits (``250-`` lines of EHLO go at once): the sender waits for
        a reply as a whole, once per command, so that is where a network's latency is felt.
        """

        async def push(self, status: Any) -> None:
            text = status if isinstance(status, str) else status.decode("ascii")
            if text[3:4] != "-":
                await asyncio.sleep(reply_delay)
            await super().push(status)

    counter = Tally()
    server_class = Distant if reply_delay > 0 else SMTP

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: server_class(counter, hostname="sink.bench.example"), host="127.0.0.1", port=port, reuse_port=True
        )
        print(server.sockets[0].getsockname()[1], flush=True)
        while await loop.run_in_executor(None, sys.stdin.readline):
            print(counter.report(), flush=True)
        server.close()

    asyncio.run(main())


class Sinks:
    """``count`` aiosmtpd processes sharing one port; ``seen()`` sums what they received."""

    def __init__(self, count: int, reply_delay_ms: float = 0.0) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.port = 0
        self.reply_delay_ms = reply_delay_ms
        for _ in range(count):
            proc = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(self.port), "--reply-delay", str(reply_delay_ms)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            self.procs.append(proc)
            assert proc.stdout is not None
            self.port = int(proc.stdout.readline())

    def seen(self, expected: int) -> dict[str, Any]:
        total: dict[str, Any] = {"messages": 0, "bytes": 0, "connections": 0, "recipients": Counter()}
        for proc in self.procs:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("count\n")
            proc.stdin.flush()
            counts = json.loads(proc.stdout.readline())
            for key in ("messages", "bytes", "connections"):
                total[key] += counts[key]
            total["recipients"].update(counts["recipients"])
        return total

    def stop(self) -> None:
        for proc in self.procs:
            if proc.stdin and not proc.stdin.closed:
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Postfix:
    """A running Postfix set to discard everything, as the sink: what it saw is read from its log.

    Postfix is C and queues each message to disk (with an fsync) before it answers, as a real
    relay does: a server that waits, where aiosmtpd is one that computes. Set up (Debian, as root):
    ``apt-get install postfix`` ("No configuration"), then ``bench/postfix_sink.sh``, which
    configures it to listen on 127.0.0.1:2525 only, discard everything and log to
    /var/log/postfix-bench.log (``bench/postfix_sink.sh stop`` stops it).
    """

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.offset = log.stat().st_size

    def seen(self, expected: int) -> dict[str, Any]:
        """What the log says since the last call, once ``expected`` deliveries are in it (or 60 s)."""
        deadline = time.monotonic() + 60
        while True:
            with self.log.open("rb") as f:
                f.seek(self.offset)
                text = f.read().decode("utf-8", "replace")
            sent = re.findall(r"postfix/discard\[\d+\]: \w+: to=<([^>]*)>.*status=sent", text)
            if len(sent) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.offset += len(text.encode("utf-8"))
        return {
            "messages": len(re.findall(r"postfix/smtpd\[\d+\]: \w+: client=", text)),
            "bytes": sum(int(n) for n in re.findall(r"postfix/qmgr\[\d+\]: \w+: from=<[^>]*>, size=(\d+)", text)),
            "connections": len(re.findall(r"postfix/smtpd\[\d+\]: connect from", text)),
            "recipients": Counter(sent),
        }

    def stop(self) -> None:
        pass


class Cpu:
    """CPU seconds spent from now on by this process, by the sink, and by the whole machine (``since``).

    The sink's processes are listed again at the end: a Postfix process started during the case
    counts in full, one that exited counts through its master's reaped-children times.
    """

    def __init__(self, sinks: Sinks | Postfix) -> None:
        self.sinks = sinks
        self.start = (own_cpu(), sum(cpu_of(pid) for pid in self.pids()), machine())

    def pids(self) -> list[int]:
        return [p.pid for p in self.sinks.procs] if isinstance(self.sinks, Sinks) else postfix_pids()

    def since(self) -> tuple[float, float, float]:
        """Seconds of CPU of this process and of the sink, and the machine's busy share of all its cores."""
        busy, total = (b - a for a, b in zip(self.start[2], machine(), strict=True))
        return (
            own_cpu() - self.start[0],
            sum(cpu_of(pid) for pid in self.pids()) - self.start[1],
            busy / total if total else 0.0,
        )


def own_cpu() -> float:
    """CPU seconds of this process and of its children that have exited (the raw smtplib senders)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def machine() -> tuple[int, int]:
    """All cores' busy and total clock ticks so far (``/proc/stat``); idle and iowait are not busy."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def cpu_of(pid: int) -> float:
    """A process's CPU seconds, its reaped children's included (``/proc/<pid>/stat``); 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


def postfix_pids() -> list[int]:
    """Postfix's master and every process it started (smtpd, cleanup, qmgr, discard, postlogd,
    trivial-rewrite...); the ones that exited show in the master's reaped-children times."""
    stats: dict[int, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            name, _, rest = stat.read_text().partition(" (")[2].rpartition(")")
            stats[int(stat.parent.name)] = [name, *rest.split()]
    masters = {pid for pid, fields in stats.items() if fields[0] == "master"}
    return [pid for pid, fields in stats.items() if pid in masters or int(fields[2]) in masters]


# --- the cases -------------------------------------------------------------------------------------


@dataclass
class Row:
    case: str
    round: int
    wall: float
    recipients: int
    connections: int
    client_cpu: float  # seconds of CPU this process spent on the case
    sink_cpu: float  # seconds of CPU the sink spent on it (its processes, and their reaped children)
    machine_busy: float  # share of all the machine's cores busy meanwhile (anyone's work, not idle or iowait)

    @property
    def rate(self) -> float:
        return self.recipients / self.wall

    def others(self, cores: int) -> float:
        """Cores' worth of work by anything but the sender and the sink meanwhile (other jobs on the
        machine; also the kernel's loopback and disk work, which no process's times include)."""
        return max(0.0, self.machine_busy * cores - (self.client_cpu + self.sink_cpu) / self.wall)


def address(i: int) -> str:
    return f"reader{i}@bench.example"


def check(sinks: Sinks | Postfix, case: str, recipients: int, connections: int) -> dict[str, Any]:
    """What the sinks saw since the last check: every recipient once, over ``connections`` connections."""
    seen = sinks.seen(recipients)
    counts: Counter[str] = seen["recipients"]
    clean = (
        seen["messages"] == recipients
        and len(counts) == recipients
        and max(counts.values()) == 1
        and seen["connections"] == connections
    )
    if not clean:
        twice = sum(1 for n in counts.values() if n > 1)
        sys.exit(
            f"{case}: run not clean: {seen['messages']} messages, {len(counts)} distinct, {twice} twice, "
            f"{seen['connections']} connections (expected {recipients} once each over {connections})"
        )
    return seen


def raw_smtplib(port: int, message: bytes, sender: str, recipients: int, connections: int = 1) -> float:
    """The reference: the same bytes to every recipient with ``sendmail``, one connection; with
    ``connections`` above 1, that many processes at once, each over its own connection taking
    every n-th recipient: the most that many connections can get from this sink and machine."""
    if connections == 1:
        start = time.perf_counter()
        raw_share(port, message, sender, range(1, recipients + 1), None)
        return time.perf_counter() - start
    fork = multiprocessing.get_context("fork")
    ready = fork.Barrier(connections + 1)
    workers = [
        fork.Process(target=raw_share, args=(port, message, sender, range(k, recipients + 1, connections), ready))
        for k in range(1, connections + 1)
    ]
    for worker in workers:
        worker.start()
    ready.wait()  # every worker has connected and said EHLO
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - start
    if any(worker.exitcode for worker in workers):
        sys.exit("raw smtplib: a sending process failed")
    return wall


def raw_share(port: int, message: bytes, sender: str, numbers: range, ready: Any) -> None:
    """Send ``message`` to each numbered recipient over one connection (after ``ready``, if any)."""
    conn = smtplib.SMTP("127.0.0.1", port, local_hostname=socket.getfqdn(), timeout=30)
    conn.ehlo_or_helo_if_needed()
    if ready is not None:
        ready.wait()
    for i in numbers:
        conn.sendmail(sender, [address(i)], message)
    conn.quit()


def digest(settings: Any, variant: Any, recipients: int) -> tuple[float, int]:
    """digest's transport, batches of its ``max_batch``; returns the wall time and connections opened."""
    from digest.delivery.runner import recipient_values
    from digest.delivery.tokens import Signer
    from digest.delivery.transports.base import Batch, Recipient
    from digest.delivery.transports.smtp import SmtpTransport

    signer = Signer("bench-secret-long-enough-to-sign-links")
    transport = SmtpTransport(settings)
    size = transport.max_batch
    outcomes: Counter[str] = Counter()
    start = time.perf_counter()
    for first in range(1, recipients + 1, size):
        people = tuple(
            Recipient(i, i, address(i), recipient_values(settings, signer, i, address(i), f"Reader {i}"))
            for i in range(first, min(first + size, recipients + 1))
        )
        result = transport.send(Batch("2026-W48", variant, people, batch_id=first // size + 1))
        outcomes.update(status for status, _ in result.outcomes.values())
    transport.close()
    wall = time.perf_counter() - start
    if outcomes != {"submitted": recipients}:
        sys.exit(f"digest: outcomes {dict(outcomes)}")
    return wall, transport.connections


def with_smtp(settings: Any, tmp: str, port: int, connections: int) -> Any:
    return settings.model_copy(
        update={
            "store": settings.store.model_copy(update={"data_dir": tmp}),
            "delivery": settings.delivery.model_copy(
                update={
                    "smtp": settings.delivery.smtp.model_copy(
                        update={
                            "host": "127.0.0.1",
                            "port": port,
                            "security": "none",
                            "username": "",
                            "connections": connections,
                        }
                    )
                }
            ),
        }
    )


def run(recipients: int, connections: int, sinks: Sinks | Postfix, rounds: int, config: Path) -> None:
    from digest.config import load
    from digest.delivery.transports.smtp import envelope_sender
    from digest.issue.build import build
    from digest.issue.message import build_message

    rows: list[Row] = []
    per_message = 0.0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = load(config)
            one = with_smtp(base, tmp, sinks.port, 1)
            variant = build(one, NOW).rendered
            sender = envelope_sender(one)
            message = build_message(
                one, variant, {"name": "Reader 1", "email": address(1)}, now=NOW, to=address(1)
            ).as_bytes()
            for n in range(1, rounds + 1):
                cpu = Cpu(sinks)
                wall = raw_smtplib(sinks.port, message, sender, recipients)
                check(sinks, "raw smtplib", recipients, 1)
                rows.append(Row(REFERENCE, n, wall, recipients, 1, *cpu.since()))
                cpu = Cpu(sinks)
                wall, opened = digest(one, variant, recipients)
                seen = check(sinks, "digest", recipients, 1)
                per_message = seen["bytes"] / seen["messages"]
                rows.append(Row(ONE, n, wall, recipients, opened, *cpu.since()))
                if connections > 1:
                    many = with_smtp(base, tmp, sinks.port, connections)
                    cpu = Cpu(sinks)
                    wall, opened = digest(many, variant, recipients)
                    check(sinks, f"digest, {connections} connections", recipients, connections)
                    rows.append(Row(f"digest, {connections} connections", n, wall, recipients, opened, *cpu.since()))
                    cpu = Cpu(sinks)
                    wall = raw_smtplib(sinks.port, message, sender, recipients, connections)
                    check(sinks, f"raw smtplib, {connections} connections", recipients, connections)
                    rows.append(
                        Row(f"raw smtplib, {connections} connections", n, wall, recipients, connections, *cpu.since())
                    )
    finally:
        sinks.stop()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"HTML part {variant.html_bytes / 1024:.1f} KB; {per_message / 1024:.1f} KB per message on the wire; "
        f"sink: {describe(sinks)}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"peak RSS {peak_mb:.0f} MB",
        file=sys.stderr,
    )
    report(rows)


def describe(sinks: Sinks | Postfix) -> str:
    if isinstance(sinks, Postfix):
        return f"Postfix on port {sinks.port}, discarding"
    delay = f", each reply {sinks.reply_delay_ms:g} ms late" if sinks.reply_delay_ms else ""
    return f"{len(sinks.procs)} aiosmtpd process(es){delay}"


def report(rows: list[Row]) -> None:
    """The table: each case's rate and its ratios to the reference and to 1 connection in its round."""
    by_round = {(r.round, r.case): r for r in rows}
    print(
        "| case | round | recipients | wall (s) | recipients/s | / raw smtplib | / digest 1 connection "
        "| sender CPU ms/msg | sink CPU ms/msg | machine busy | other work (cores) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    cores = os.cpu_count() or 1
    to_ref: dict[str, list[float]] = {}
    to_one: dict[str, list[float]] = {}
    for r in rows:
        ref = by_round[(r.round, REFERENCE)]
        one = by_round[(r.round, ONE)]
        to_ref.setdefault(r.case, []).append(r.rate / ref.rate)
        to_one.setdefault(r.case, []).append(r.rate / one.rate)
        print(
            f"| {r.case} | {r.round} | {r.recipients} | {r.wall:.2f} | {r.rate:.0f} | {r.rate / ref.rate:.2f} | "
            f"{f'{r.rate / one.rate:.2f}' if many(r.case) else ''} | "
            f"{r.client_cpu / r.recipients * 1e3:.2f} | {r.sink_cpu / r.recipients * 1e3:.2f} | "
            f"{r.machine_busy:.0%} of {cores} cores | {r.others(cores):.2f} |"
        )
    for case in to_ref:
        if case != REFERENCE:
            print(f"median over rounds, {case}: {statistics.median(to_ref[case]):.2f}x raw smtplib", file=sys.stderr)
        if many(case):
            median = statistics.median(to_one[case])
            print(f"median over rounds, {case}: {median:.2f}x digest 1 connection", file=sys.stderr)


def many(case: str) -> bool:
    """digest over several connections: the rows compared with digest over one."""
    return case.startswith("digest") and case != ONE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=1, help="also run digest with this many connections")
    parser.add_argument("--sinks", type=int, default=1, help="aiosmtpd processes sharing the port")
    parser.add_argument(
        "--reply-delay",
        type=float,
        default=0.0,
        help="milliseconds each aiosmtpd sink holds back every reply: a relay a network away (default 0)",
    )
    parser.add_argument("--postfix", type=int, default=0, help="send to a discarding Postfix on this port instead")
    parser.add_argument("--postfix-log", type=Path, default=Path("/var/log/postfix-bench.log"))
    parser.add_argument("--rounds", type=int, default=1, help="times to run every case, in turn")
    parser.add_argument("--config", type=Path, default=ROOT / "config.toml", help="the sample config to render")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.reply_delay / 1000)
    else:
        if args.postfix and args.reply_delay:
            parser.error("--reply-delay applies to the aiosmtpd sinks, not to Postfix")
        sinks = Postfix(args.postfix, args.postfix_log) if args.postfix else Sinks(args.sinks, args.reply_delay)
        run(args.recipients, args.connections, sinks, args.rounds, args.config)


if __name__ == "__main__":
    main()
