"""Build benchmarks: the bundled sample, a generated 2,000-item feed, and CLI start-up.

Run:  .venv/bin/python bench/bench_build.py [--repeat N] [--items N]

Each build runs in a fresh process (so import costs and caches count as a user would see them)
and reports the best and median wall time, the median CPU time and the peak resident memory of
that process; the cases take turns, run by run, so a burst of load on a shared machine falls
on all of them alike. digest's modules are compiled to bytecode first, as they are in an
installed digest (``compile_bytecode``). The first build of a run also creates its database
(Alembic's migrations, once per install); every later one, like every weekly build, opens it:
a median of three or more runs is of those, one run (``--repeat 1``) is the first alone.
Beside the generated feed's build it runs, on the same file and in the same way, the floor (a
bare ``feedparser.parse`` of it) and, when it is installed, rss2email 3.14 (``r2e run --no-send``:
it fetches, parses and makes every item's email, but sends nothing), and prints the ratios.
Goals (issue 13): the build at most 1.3x feedparser's bare parse; at least 3x faster than
rss2email; 100,000 items in at most 8 s and 250 MB. rss2email is not a digest dependency:
``pip install rss2email`` into the venv to compare with it.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
NOW = "2026-11-27T09:00"
SECTIONS = ["Asia-Pacific", "Military Industrial Complex", "Middle East", "Europe", "Africa"]
WORDS = [
    "security",
    "deterrence",
    "alliance",
    "treaty",
    "sanctions",
    "diplomacy",
    "congress",
    "pentagon",
    "budget",
    "missile",
    "summit",
    "ceasefire",
    "region",
    "strategy",
    "escalation",
    "policy",
    "analysis",
    "reporting",
    "officials",
]


def generated_feed(path: Path, items: int, seed: int = 7) -> None:
    """An RSS 2.0 feed of ``items`` items spread over ten weeks before the sample's run time.

    Written item by item: holding a 100,000-item feed in this process would also count in each
    child's peak memory (a child's ``ru_maxrss`` includes what it inherited at fork).
    """
    rng = random.Random(seed)
    end = datetime(2026, 11, 27, 14, tzinfo=UTC)
    with path.open("w", encoding="utf-8") as out:
        out.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>\n'
            "<title>Generated</title><link>https://bench.example/</link><description>bench</description>"
        )
        for i in range(items):
            when = end - timedelta(minutes=rng.randrange(70 * 24 * 60))
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(40, 120)))
            description = escape(f'<p>{words}</p><p><a href="/x/{i}">more</a></p>')
            title = " ".join(rng.choice(WORDS) for _ in range(8)).capitalize()
            out.write(
                f"\n<item><title>{escape(title)} {i}</title><link>https://bench.example/{i}</link>"
                f'<guid isPermaLink="false">bench-{i}</guid><pubDate>{format_datetime(when)}</pubDate>'
                f"<dc:creator>Author {i % 37}</dc:creator><category>{rng.choice(SECTIONS)}</category>"
                f"<description>{description}</description>"
                f'<media:content url="https://bench.example/img/{i}.jpg" medium="image" width="1200" height="675">'
                f"<media:credit>Photographer {i % 11}</media:credit></media:content></item>"
            )
        out.write("\n</channel></rss>")


@dataclass
class Runs:
    """One case's runs: wall seconds, CPU seconds (user + system) and peak RSS in MB of each."""

    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)


def run_once(cmd: list[str], runs: Runs) -> None:
    """Run ``cmd`` as a fresh process and record its wall time, CPU time and peak memory."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)  # the child's own rusage: its CPU time and peak memory
    runs.walls.append(time.perf_counter() - start)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"benchmark command failed: {' '.join(cmd)}\n{proc.stderr.read().decode() if proc.stderr else ''}")
    runs.cpus.append(usage.ru_utime + usage.ru_stime)
    runs.peaks.append(usage.ru_maxrss / 1024)


def rss2email_cmd(feed: Path, work: Path) -> list[str] | None:
    """``r2e run --no-send`` on ``feed`` with a fresh state each run; None when rss2email is absent."""
    r2e = Path(sys.executable).with_name("r2e")
    if not r2e.exists():
        return None
    config, data = work / "r2e.cfg", work / "r2e.json"
    for args in (["new", "reader@bench.example"], ["add", "bench", feed.as_uri()]):
        subprocess.run([str(r2e), "-c", str(config), "-d", str(data), *args], check=True, capture_output=True)
    fresh = work / "r2e-fresh.json"
    shutil.copy(data, fresh)
    # Every run starts from the state before the first: each item is new each time.
    script = (
        "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2]); sys.argv = ['r2e', *sys.argv[3:]]; "
        "from rss2email.main import run; run()"
    )
    return [sys.executable, "-c", script, str(fresh), str(data), "-c", str(config), "-d", str(data), "run", "--no-send"]


def compile_bytecode(*packages: Path) -> None:
    """Compile each package's modules to bytecode, as pip does when it installs a wheel.

    feedparser, rss2email and every other installed library were compiled by pip; digest, an
    editable install, is compiled by Python at its first start, unless ``PYTHONDONTWRITEBYTECODE``
    is set (as on the machine these figures come from): then every start compiled all of its
    modules again (callgrind: 9% of a 2,000-item build), which no installed digest does.
    """
    for package in packages:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument(
        "--before",
        type=Path,
        help="another version's src/ (`git archive COMMIT src templates | tar -x -C DIR`, then DIR/src): "
        "its build of the same feed runs beside this one's, in the same turns",
    )
    args = parser.parse_args()
    import digest as package

    compile_bytecode(Path(package.__file__).parent, *([args.before / "digest"] if args.before else []))
    digest = str(Path(sys.executable).with_name("digest"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copy(ROOT / "config.toml", work / "config.toml")
        shutil.copytree(ROOT / "examples", work / "examples")
        big = work / "big"
        big.mkdir()
        generated_feed(big / "feed.xml", args.items)
        config = (ROOT / "config.toml").read_text(encoding="utf-8")
        head, _, _ = config.partition("# One [[feeds]] table per feed")
        rest = config[config.index("# Sections in the order") :]
        (big / "config.toml").write_text(head + '[[feeds]]\nurl = "feed.xml"\n\n' + rest, encoding="utf-8")
        rows = [
            ("`digest --help` start-up", [digest, "--help"]),
            (
                "build the bundled sample",
                [digest, "build", "--config", str(work / "config.toml"), "--now", NOW, "--out", str(work / "out")],
            ),
            (
                f"build a {args.items}-item feed",
                [digest, "build", "--config", str(big / "config.toml"), "--now", NOW, "--out", str(big / "out")],
            ),
        ]
        floor = "import sys, feedparser; feedparser.parse(sys.argv[1])"
        rows.append(
            (
                f"feedparser's bare parse of the {args.items}-item feed",
                [sys.executable, "-c", floor, str(big / "feed.xml")],
            )
        )
        r2e = rss2email_cmd(big / "feed.xml", work)
        if r2e is not None:
            rows.append((f"rss2email 3.14 on the {args.items}-item feed (`r2e run --no-send`)", r2e))
        if args.before is not None:
            # PYTHONPATH comes before the venv's own (editable) digest, so this runs the other code,
            # with a data directory of its own: a store migrated by newer code is not for older code.
            other = work / "before"
            other.mkdir()
            (other / "feed.xml").symlink_to(big / "feed.xml")
            shutil.copy(big / "config.toml", other / "config.toml")
            before = ["env", f"PYTHONPATH={args.before.resolve()}", sys.executable, "-m", "digest"]
            rows.append(
                (
                    f"build the {args.items}-item feed with the code in {args.before}",
                    [
                        *before,
                        "build",
                        "--config",
                        str(other / "config.toml"),
                        "--now",
                        NOW,
                        "--out",
                        str(other / "out"),
                    ],
                )
            )
        # Round robin: on a shared machine a burst of load then falls on every case alike.
        runs = {label: Runs() for label, _ in rows}
        for _ in range(args.repeat):
            for label, cmd in rows:
                run_once(cmd, runs[label])
        size = (big / "feed.xml").stat().st_size / 1e6
        print(f"{args.repeat} runs each, in turn; the generated feed is {size:.1f} MB; load average {os.getloadavg()}")
        print("| case | best (s) | median (s) | median CPU (s) | peak RSS (MB) |")
        print("| --- | --- | --- | --- | --- |")
        for label, _ in rows:
            r = runs[label]
            print(
                f"| {label} | {min(r.walls):.3f} | {statistics.median(r.walls):.3f} | "
                f"{statistics.median(r.cpus):.3f} | {max(r.peaks):.0f} |"
            )
        build, floor_runs = runs[rows[2][0]], runs[rows[3][0]]
        print(f"\nbuild / feedparser's bare parse: {ratio(build, floor_runs)} (goal: at most 1.3x)")
        if r2e is not None:
            print(f"rss2email / build: {ratio(runs[rows[4][0]], build)} (goal: at least 3x faster)")
        else:
            print("rss2email is not installed: `.venv/bin/pip install rss2email` to compare with it")


def ratio(top: Runs, bottom: Runs) -> str:
    """Two cases' ratio by median wall time, and by median CPU time (steadier on a busy machine)."""
    wall = statistics.median(top.walls) / statistics.median(bottom.walls)
    cpu = statistics.median(top.cpus) / statistics.median(bottom.cpus)
    return f"{wall:.2f}x by median wall time, {cpu:.2f}x by median CPU time"


if __name__ == "__main__":
    main()
