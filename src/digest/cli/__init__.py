"""The command line: the only place that prints and exits.

Every failure the user can cause arrives here as a ``DigestError`` and leaves as one line on
stderr with the error's exit code (2 for a bad config or usage, 1 otherwise); a traceback only
with ``--debug``. Each group of commands has a module of its own (build, send, subscribers,
review, schedule, serve, editors), registered on ``cli`` below; they import the heavy modules inside the
commands, so ``digest --help`` starts fast.

``main`` is the console script (``digest = "digest.cli:main"``), a name kept across releases so
an installed entry point keeps working after an upgrade.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

import click

from digest import __version__
from digest.cli import build, editors, review, schedule, send, serve, subscribers

# How many new container objects the youngest generation of the garbage collector takes before
# it is collected, and how many collections of each generation before the next one is (CPython's
# default: 700, 10, 10). Imports and a send's batches make objects by the hundred thousand, very
# few of them in reference cycles (a feed's parse runs with the collector off already), so most
# collections find nothing to free, and each older one walks every module object again.
# Measured on bench/bench_build.py's 2,000-item feed: 1.6% fewer instructions (callgrind:
# 3,989 M -> 3,926 M), 1% to 3% less CPU in runs in turn with the default, the same peak memory
# (also with 100,000 items). Cycles are still collected, in every command, long-running ones
# included.
GC_THRESHOLDS = (50_000, 20, 20)


class DigestGroup(click.Group):
    """A click group that turns the package's typed errors into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        from digest.errors import DigestError

        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except DigestError as exc:
            if debug:
                raise
            click.echo(f"digest: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("digest: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            if debug:
                raise
            click.echo(
                f"digest: unexpected error: {type(exc).__name__}: {exc} (run again with --debug for the traceback)",
                err=True,
            )
            ctx.exit(1)


@click.group(cls=DigestGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, envvar="DIGEST_DEBUG", help="Show tracebacks instead of one-line errors.")
@click.version_option(__version__, prog_name="digest")
def cli(debug: bool) -> None:
    """Weekly newsletter digests from RSS/Atom feeds."""


for command in (
    build.build,
    build.preview,
    subscribers.subscribers,
    send.send,
    send.status,
    schedule.schedule,
    schedule.health,
    review.approve,
    review.withdraw,
    review.pin,
    review.exclude,
    review.issues_command,
    serve.serve,
    editors.editors,
):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point.

    When the command is done the process ends, and everything it made (the modules of
    SQLAlchemy, pydantic, premailer and the rest: some 80,000 objects the collector tracks)
    would still be walked by the interpreter's garbage collection on the way out: measured,
    about 0.1 s of a 0.7 s ``digest build``. Frozen, they are left to the exit itself. Files,
    connections and temporary directories are closed by the commands (and ``atexit``), never by
    that collection.

    pydantic looks for plugins of its own (observability hooks) in the entry points of every
    installed distribution when the first model is made: about 40 ms of every command, for
    plugins digest never asks for. They are off unless the operator sets
    ``PYDANTIC_DISABLE_PLUGINS`` (pydantic's own switch) to something else, empty included.

    The collector itself runs less often (``GC_THRESHOLDS``): see there why.
    """
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="digest")
    finally:
        gc.freeze()
