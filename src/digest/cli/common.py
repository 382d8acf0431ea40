"""What the commands share: the --config and --now options, settings, the store, warnings,
logging and progress. Only light imports at the top: `digest --help` loads this module."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from digest.config import Settings
    from digest.delivery.runner import Progress
    from digest.store import Store

CONFIG_HELP = "Path to config.toml (default: $DIGEST_CONFIG or ./config.toml)."


class IssueKeyType(click.ParamType):
    """An issue key typed by a person (``2026-W48``, any case), checked and given back in the
    form the ledger uses: a mistyped key is refused, never taken for a week not built yet."""

    name = "issue"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from digest.models import IssueKey

        try:
            return str(IssueKey.parse(str(value)))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


ISSUE_KEY = IssueKeyType()


def config_option(func: Any) -> Any:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="DIGEST_CONFIG",
        default="config.toml",
        show_envvar=True,
        help=CONFIG_HELP,
    )(func)


def now_option(func: Any) -> Any:
    return click.option(
        "--now",
        "now_text",
        metavar="ISO-8601",
        help="Run as if it were this time (default: now). Without an offset, the newsletter's zone.",
    )(func)


def load_settings(path: Path) -> Settings:
    from digest.config import load

    return load(path)


def open_store(settings: Settings) -> Store:
    from digest.store import Store

    return Store.open(settings.database_url)


def parse_now(text: str | None, settings: Settings | None) -> datetime:
    """``--now`` as an aware datetime; a time without an offset is in the newsletter's zone
    (left naive when ``settings`` is None, for a caller that reads the config itself)."""
    if not text:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(
            f"{text!r} is not an ISO-8601 time (e.g. 2026-11-27T09:00 or 2026-11-27T14:00:00Z)",
            param_hint="--now",
        ) from exc
    if moment.tzinfo or settings is None:
        return moment
    return moment.replace(tzinfo=settings.newsletter.zone)


def warn(lines: Iterable[str]) -> None:
    """Each line as ``digest: warning: ...`` on stderr, apart from the command's output."""
    for line in lines:
        click.echo(f"digest: warning: {line}", err=True)


def counts_line(counts: dict[str, int]) -> str:
    """An issue's deliveries per state, in the order a send moves them: ``3 submitted, 1 failed``."""
    order = ["submitted", "pending", "submitting", "failed", "unknown", "skipped"]
    return ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))


def configure_logging(settings: Settings) -> None:
    """One line per event on stderr, text or JSON as configured; a terminal shows only warnings
    (the progress bar says the rest)."""
    from digest.logs import configure

    level = settings.logging.level
    if sys.stderr.isatty() and level in ("debug", "info"):
        level = "warning"
    configure(settings.logging.format, level)


def make_progress(issue: str) -> Progress:
    """A bar on a terminal, one log line per batch anywhere else (cron mail, journald)."""
    from digest.delivery.progress import BarProgress, LogProgress

    return BarProgress() if sys.stderr.isatty() else LogProgress(issue)
