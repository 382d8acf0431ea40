"""The command line: the only module that prints and exits.

Every failure the user can cause arrives here as a ``DigestError`` and leaves as one line on
stderr with the error's exit code (2 for a bad config or usage, 1 otherwise); a traceback only
with ``--debug``. Heavy modules are imported inside the commands so ``digest --help`` starts fast.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import __version__

if TYPE_CHECKING:
    from .config import Settings

CONFIG_HELP = "Path to config.toml (default: $DIGEST_CONFIG or ./config.toml)."


class DigestGroup(click.Group):
    """A click group that turns the package's typed errors into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        from .errors import DigestError

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
    from .config import load

    return load(path)


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


def warn(lines: tuple[str, ...] | list[str]) -> None:
    for line in lines:
        click.echo(f"digest: warning: {line}", err=True)


@cli.command()
@config_option
@now_option
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="out",
    show_default=True,
    help="Directory for <issue>.html, .txt and .eml.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object describing the issue.")
def build(config_path: Path, now_text: str | None, out_dir: Path, as_json: bool) -> None:
    """Build this week's issue and write it as HTML, text and .eml files."""
    from .build import build as build_issue
    from .build import summary, write_files

    settings = load_settings(config_path)
    now = parse_now(now_text, settings)
    result = build_issue(settings, now)
    paths = write_files(result, settings, out_dir, now)
    warn(result.warnings)
    if as_json:
        click.echo(json.dumps(summary(result), ensure_ascii=False, indent=2))
        return
    issue = result.issue
    click.echo(
        f"Built {issue.key}: {len(issue.articles)} article(s) in {len(issue.sections)} section(s)"
        + (" (thin week)" if issue.thin else "")
    )
    click.echo(f"Subject: {result.rendered.subject}")
    for path in paths.values():
        click.echo(f"  {path}  ({path.stat().st_size / 1024:.1f} KB)")


@cli.command()
@config_option
@now_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8025, show_default=True, type=click.IntRange(0, 65535), help="Port (0 picks one).")
@click.option("--open/--no-open", "open_browser", default=False, help="Open the preview in a browser.")
def preview(config_path: Path, now_text: str | None, host: str, port: int, open_browser: bool) -> None:
    """Serve the issue locally and rebuild it when the config, a template or a local feed changes."""
    from .preview import serve

    # The config is read (and re-read) by the preview itself: a bad key is shown on its page,
    # and a --now without an offset follows the newsletter's zone as configured at each rebuild.
    now = parse_now(now_text, None) if now_text else None
    serve(config_path, host=host, port=port, now=now, open_browser=open_browser)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="digest")
