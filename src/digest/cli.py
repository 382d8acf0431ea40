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
    from .build import Build
    from .config import Settings
    from .store import Store

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


def open_store(settings: Settings) -> Store:
    from .store import Store

    return Store.open(settings.database_url)


def section_names(settings: Settings) -> list[str]:
    names = [s.name for s in settings.sections]
    return [*names, settings.issue.catch_all] if settings.issue.catch_all else names


# --- subscribers -------------------------------------------------------------------------------


@cli.group()
def subscribers() -> None:
    """Import, add, remove, list and export subscribers."""


@subscribers.command("import")
@config_option
@click.argument("csv_path", metavar="CSV", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--resubscribe", is_flag=True, help="Turn unsubscribed or bounced addresses in the file back to active.")
def subscribers_import(config_path: Path, csv_path: Path, resubscribe: bool) -> None:
    """Import a CSV with columns email, name and optional sections ("A; B")."""
    from .subscribers import describe_bad_rows, read_csv

    settings = load_settings(config_path)
    parsed = read_csv(csv_path, section_names(settings))
    for line in describe_bad_rows(csv_path, parsed.bad):
        click.echo(f"digest: warning: {line}", err=True)
    report = open_store(settings).merge_subscribers(parsed.rows, resubscribe=resubscribe)
    click.echo(
        f"Imported {csv_path}: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{len(parsed.bad)} bad row(s) skipped, {parsed.duplicates} duplicate(s) merged"
        + (f", {report.resubscribed} resubscribed" if report.resubscribed else "")
    )
    if report.kept_suppressed:
        click.echo(
            f"{len(report.kept_suppressed)} address(es) stay suppressed (unsubscribed, bounced or complained); "
            "use --resubscribe only if they asked to come back"
        )


@subscribers.command("add")
@config_option
@click.argument("email")
@click.option("--name", default="", help="The subscriber's name.")
@click.option("--section", "sections", multiple=True, help="A section they want (repeat); none means all.")
@click.option("--resubscribe", is_flag=True, help="Make a suppressed address active again.")
def subscribers_add(config_path: Path, email: str, name: str, sections: tuple[str, ...], resubscribe: bool) -> None:
    """Add one subscriber (or update their name and sections)."""
    from .store import NewSubscriber
    from .subscribers import check_email, parse_sections

    settings = load_settings(config_path)
    row = NewSubscriber(check_email(email), name, parse_sections(";".join(sections), section_names(settings)))
    report = open_store(settings).merge_subscribers([row], resubscribe=resubscribe)
    if report.kept_suppressed:
        click.echo(
            f"{row.email} is suppressed (unsubscribed, bounced or complained); not made active without --resubscribe"
        )
    else:
        click.echo(f"{'Added' if report.added else 'Updated' if report.updated else 'Unchanged'}: {row.email}")


@subscribers.command("remove")
@config_option
@click.argument("email")
@click.option("--forget", is_flag=True, help="Delete the record and its history instead of unsubscribing it.")
def subscribers_remove(config_path: Path, email: str, forget: bool) -> None:
    """Unsubscribe an address (kept as suppressed, so a re-import cannot add it back)."""
    from .errors import SubscriberError

    store = open_store(load_settings(config_path))
    done = store.forget(email) if forget else store.set_status(email, "unsubscribed")
    if not done:
        raise SubscriberError(f"{email}: no such subscriber", hint="check the address with `digest subscribers list`")
    click.echo(f"{'Forgot' if forget else 'Unsubscribed'}: {email}")


STATUS_CHOICE = click.Choice(["active", "unsubscribed", "bounced", "complained"])


@subscribers.command("list")
@config_option
@click.option("--status", type=STATUS_CHOICE, help="Only subscribers with this status.")
def subscribers_list(config_path: Path, status: str | None) -> None:
    """List subscribers: email, name, status, sections."""
    store = open_store(load_settings(config_path))
    count = 0
    for s in store.subscribers(status):
        click.echo(f"{s.email}\t{s.name}\t{s.status}\t{'; '.join(s.sections) or 'all sections'}")
        count += 1
    counts = store.subscriber_counts()
    click.echo(f"{count} listed; " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())), err=True)


@subscribers.command("export")
@config_option
@click.option("--status", type=STATUS_CHOICE, help="Only subscribers with this status.")
@click.option(
    "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), help="File to write (default: stdout)."
)
def subscribers_export(config_path: Path, status: str | None, out_path: Path | None) -> None:
    """Export subscribers as CSV, in the format `import` reads."""
    import io

    from .files import atomic_write
    from .subscribers import write_csv

    store = open_store(load_settings(config_path))
    buffer = io.StringIO()
    count = write_csv(store.subscribers(status), buffer)
    if out_path is None:
        click.echo(buffer.getvalue(), nl=False)
    else:
        atomic_write(out_path, buffer.getvalue().encode("utf-8"))
        click.echo(f"Exported {count} subscriber(s) to {out_path}", err=True)


# --- sending -----------------------------------------------------------------------------------


@cli.command()
@config_option
@now_option
@click.option("--dry-run", is_flag=True, help="Show what would be sent; record and send nothing.")
@click.option(
    "--to", "test_to", multiple=True, metavar="ADDR", help="Send a [TEST] copy to ADDR (repeat); records nothing."
)
@click.option("--retry-failed", is_flag=True, help="Send again to the recipients of failed batches.")
def send(config_path: Path, now_text: str | None, dry_run: bool, test_to: tuple[str, ...], retry_failed: bool) -> None:
    """Build this week's issue, record it, and send it to every active subscriber once."""
    from . import deliver, rank
    from .build import build as build_issue
    from .errors import DeliveryError
    from .subscribers import check_email
    from .tokens import Signer
    from .transports import open_transport

    configure_logging()
    settings = load_settings(config_path)
    now = parse_now(now_text, settings)
    key = rank.issue_key(now, settings.newsletter.zone)
    store = open_store(settings)
    if test_to:
        addresses = [check_email(a) for a in test_to]
        variant = deliver.stored_variant(store, key) if store.issue_exists(key) else _fresh(settings, now).rendered
        transport = open_transport(settings)
        try:
            deliver.send_test(settings, transport, variant, key, addresses)
        finally:
            transport.close()
        click.echo(f"Sent a [TEST] copy of {key} to {', '.join(addresses)} (nothing recorded)")
        return
    signer = None if dry_run else Signer.from_env()
    if not store.issue_exists(key):
        result = build_issue(settings, now)
        if result.issue.thin:  # said once, as the error, not also as a warning
            raise DeliveryError(
                f"{key} is a thin week ({len(result.issue.articles)} article(s), [issue] min_items = "
                f"{settings.issue.min_items}): not sent",
                hint="lower min_items or wait for more articles",
            )
        warn(result.warnings)
        if dry_run:
            active = store.subscriber_counts().get("active", 0)
            click.echo(f'Dry run: {key} "{result.rendered.subject}" would go to {active} active subscriber(s)')
            return
        deliver.record(store, result)
        click.echo(f"Recorded {key}: {result.rendered.subject}")
    elif dry_run:
        counts = store.delivery_counts(key)
        click.echo(f"Dry run: {key} is recorded; deliveries so far: {_counts(counts) or 'none'}")
        return
    if retry_failed:
        click.echo(f"{store.retry_failed(key)} recipient(s) of failed batches queued again")
    assert signer is not None
    transport = open_transport(settings)
    try:
        report = deliver.send_pending(store, settings, transport, signer, key, progress=make_progress())
    finally:
        transport.close()
    click.echo(f"{key}: {_counts(report.counts)} (this run: {report.sent_now} in {report.batches} batch(es))")
    bad = report.counts.get("failed", 0) + report.counts.get("unknown", 0)
    if bad:
        raise DeliveryError(
            f"{key}: {bad} recipient(s) failed or unknown",
            hint=f"see `digest status {key}`; `digest send --retry-failed` sends failed batches again",
        )


def _fresh(settings: Settings, now: datetime) -> Build:
    from .build import build as build_issue

    result = build_issue(settings, now)
    warn(result.warnings)
    return result


def _counts(counts: dict[str, int]) -> str:
    order = ["submitted", "pending", "submitting", "failed", "unknown", "skipped"]
    return ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))


@cli.command()
@config_option
@click.argument("issue_key", metavar="[ISSUE]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(config_path: Path, issue_key: str | None, as_json: bool) -> None:
    """Show an issue's deliveries per state, and its failed and unknown recipients."""
    from .errors import DeliveryError

    store = open_store(load_settings(config_path))
    key = issue_key or store.latest_issue()
    if key is None or not store.issue_exists(key):
        raise DeliveryError(f"no recorded issue {key or ''}".strip(), hint="issues are recorded by `digest send`")
    counts = store.delivery_counts(key)
    problems = store.problems(key)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "issue": key,
                    "counts": counts,
                    "problems": [{"email": p.email, "status": p.status, "error": p.error} for p in problems],
                },
                indent=2,
            )
        )
        return
    click.echo(f"{key}: {_counts(counts) or 'no deliveries'}")
    for p in problems[:50]:
        click.echo(f"  {p.status:8} {p.email}  {p.error}")
    if len(problems) > 50:
        click.echo(f"  ... and {len(problems) - 50} more (use --json for all)")


def configure_logging() -> None:
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("digest: %(message)s"))
    root = logging.getLogger("digest")
    if not root.handlers:
        root.addHandler(handler)
    root.setLevel(logging.WARNING if sys.stderr.isatty() else logging.INFO)


def make_progress() -> Any:
    from .progress import BarProgress, LogProgress

    return BarProgress() if sys.stderr.isatty() else LogProgress()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="digest")
