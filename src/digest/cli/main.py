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

from digest import __version__

if TYPE_CHECKING:
    from digest.config import Settings
    from digest.store import Store

CONFIG_HELP = "Path to config.toml (default: $DIGEST_CONFIG or ./config.toml)."


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
    from digest.delivery.weekly import build_for
    from digest.issue.build import summary, write_files

    settings = load_settings(config_path)
    now = parse_now(now_text, settings)
    # The ledger's rules, as `send` applies them: editors' pins and exclusions, and no article
    # that an earlier issue already sent.
    store = open_store(settings)
    try:
        result = build_for(settings, store, now)
    finally:
        store.close()
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
    from digest.preview.app import serve

    # The config is read (and re-read) by the preview itself: a bad key is shown on its page,
    # and a --now without an offset follows the newsletter's zone as configured at each rebuild.
    now = parse_now(now_text, None) if now_text else None
    serve(config_path, host=host, port=port, now=now, open_browser=open_browser)


def open_store(settings: Settings) -> Store:
    from digest.store import Store

    return Store.open(settings.database_url)


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
    from digest.subscribers import describe_bad_rows, read_csv

    settings = load_settings(config_path)
    parsed = read_csv(csv_path, settings.section_names)
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
    from digest.store import NewSubscriber
    from digest.subscribers import check_email, check_name, parse_sections

    settings = load_settings(config_path)
    row = NewSubscriber(
        check_email(email), check_name(name), parse_sections(";".join(sections), settings.section_names)
    )
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
    from digest.errors import SubscriberError

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

    from digest.files import atomic_write
    from digest.subscribers import write_csv

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
@click.option("--retry-failed", is_flag=True, help="Send again to the recipients that failed.")
@click.option(
    "--resend-unknown",
    is_flag=True,
    help="Send again to recipients whose outcome is unknown; some may get a second copy.",
)
def send(
    config_path: Path,
    now_text: str | None,
    dry_run: bool,
    test_to: tuple[str, ...],
    retry_failed: bool,
    resend_unknown: bool,
) -> None:
    """Build this week's issue, record it, and send it to every active subscriber once."""
    from digest.delivery import runner as deliver
    from digest.delivery import weekly
    from digest.delivery.tokens import Signer
    from digest.delivery.transports import open_transport
    from digest.errors import DeliveryError
    from digest.models import IssueKey

    settings = load_settings(config_path)
    configure_logging(settings)
    now = parse_now(now_text, settings)
    key = str(IssueKey.at(now, settings.newsletter.zone))
    store = open_store(settings)
    if test_to:
        _send_test_copy(settings, store, now, key, test_to)
        return
    if dry_run:
        _dry_run(settings, store, now, key)
        return
    signer = Signer.from_env()
    ready = weekly.ready_to_send(settings, store, now)
    if ready.built is not None:
        warn(ready.built.warnings)
        click.echo(f"Recorded {key}: {ready.subject}")
    if retry_failed:
        click.echo(f"{store.retry_failed(key)} failed recipient(s) queued again")
    transport = open_transport(settings)
    try:
        report = deliver.send_pending(
            store, settings, transport, signer, key, progress=make_progress(key), resend_unknown=resend_unknown
        )
    finally:
        transport.close()
    if report.resent:
        click.echo(
            f"Warning: {report.resent} recipient(s) whose outcome was unknown were queued again; "
            "some of them may have had it already and get a second copy"
        )
    click.echo(f"{key}: {_counts(report.counts)} (this run: {report.sent_now} in {report.batches} batch(es))")
    bad = report.counts.get("failed", 0) + report.counts.get("unknown", 0)
    if bad:
        raise DeliveryError(
            f"{key}: {bad} recipient(s) failed or unknown",
            hint=f"see `digest status {key}`; `digest send --retry-failed` sends failed recipients again, "
            "`--resend-unknown` unknown recipients (they may get a second copy)",
        )


def _send_test_copy(settings: Settings, store: Store, now: datetime, key: str, addresses: tuple[str, ...]) -> None:
    """[TEST] copies of the recorded snapshot if there is one, else of a fresh build."""
    from digest.delivery import runner as deliver
    from digest.delivery import weekly
    from digest.delivery.transports import open_transport
    from digest.subscribers import check_email

    checked = [check_email(a) for a in addresses]
    record = store.issue(key)
    if record is not None and record.status != "skipped":
        variant = deliver.stored_variant(store, key)
    else:
        built = weekly.build_for(settings, store, now)
        warn(built.warnings)
        variant = built.rendered
    transport = open_transport(settings)
    try:
        deliver.send_test(settings, transport, variant, key, checked)
    finally:
        transport.close()
    click.echo(f"Sent a [TEST] copy of {key} to {', '.join(checked)} (nothing recorded)")


def _dry_run(settings: Settings, store: Store, now: datetime, key: str) -> None:
    from digest.delivery import weekly

    record = store.issue(key)
    if record is not None and record.status != "skipped":
        counts = store.delivery_counts(key)
        click.echo(f"Dry run: {key} is {record.status}; deliveries so far: {_counts(counts) or 'none'}")
        return
    built = weekly.build_for(settings, store, now)
    warn(built.warnings)
    if built.issue.thin:
        click.echo(f"Dry run: {key} is a thin week ({len(built.issue.articles)} article(s)): it would not be sent")
        return
    active = store.subscriber_counts().get("active", 0)
    click.echo(f'Dry run: {key} "{built.rendered.subject}" would go to {active} active subscriber(s)')


def _counts(counts: dict[str, int]) -> str:
    order = ["submitted", "pending", "submitting", "failed", "unknown", "skipped"]
    return ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))


@cli.command()
@config_option
@click.argument("issue_key", metavar="[ISSUE]", required=False, type=ISSUE_KEY)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(config_path: Path, issue_key: str | None, as_json: bool) -> None:
    """Show an issue's deliveries per state, and its failed and unknown recipients."""
    from digest.errors import DeliveryError

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
    if counts.get("unknown"):
        click.echo(
            f"{counts['unknown']} unknown: they may have received it, so they stay unknown and are not sent "
            "again on their own; `digest send --resend-unknown` sends to them again (some may get a second copy)"
        )
    for p in problems[:50]:
        click.echo(f"  {p.status:8} {p.email}  {p.error}")
    if len(problems) > 50:
        click.echo(f"  ... and {len(problems) - 50} more (use --json for all)")


# --- the schedule and editors' review ------------------------------------------------------------


@cli.command()
@config_option
@click.option(
    "--print-next", "print_next", type=click.IntRange(1, 520), metavar="N", help="Print the next N send times and exit."
)
def schedule(config_path: Path, print_next: int | None) -> None:
    """Run the weekly scheduler until SIGTERM or SIGINT (Docker, systemd, or by hand)."""
    settings = load_settings(config_path)
    if print_next:
        _print_next(settings, print_next)
        return
    import logging

    from digest.delivery.tokens import Signer
    from digest.schedule.service import Service

    configure_logging(settings)
    Signer.from_env()  # refuse to start without the signing secret, not at 09:00 on Friday
    service = Service(config_path)
    logging.getLogger("digest.schedule").info(
        "sending on '%s' (%s); SIGTERM or Ctrl-C stops after the batch in flight",
        settings.schedule.cron,
        settings.newsletter.timezone,
    )
    service.run_forever()


def _print_next(settings: Settings, count: int) -> None:
    from datetime import timedelta

    from digest.schedule.service import next_sends

    review = settings.schedule.review_hours
    for when in next_sends(settings.schedule.cron, settings.newsletter.zone, count, datetime.now(UTC)):
        line = f"{when:%a %Y-%m-%d %H:%M %Z}  ({when.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"
        if review:
            draft = when - timedelta(hours=review)
            line += f"  draft {draft:%a %Y-%m-%d %H:%M %Z}"
        click.echo(line)


def issue_argument(func: Any) -> Any:
    return click.argument("issue_key", metavar="ISSUE", type=ISSUE_KEY)(func)


@cli.command()
@config_option
@issue_argument
def approve(config_path: Path, issue_key: str) -> None:
    """Approve a draft: it goes out at its send time, exactly as it is now."""
    from digest.delivery import weekly

    store = open_store(load_settings(config_path))
    weekly.approve(store, issue_key)

    record = store.issue(issue_key)
    zone = load_settings(config_path).newsletter.zone
    when = f" at {record.send_at.astimezone(zone):%a %Y-%m-%d %H:%M %Z}" if record and record.send_at else ""
    click.echo(f"Approved {issue_key}; it will be sent{when}")


def _edit(config_path: Path, url: str, issue_key: str | None, action: str) -> None:
    from digest.delivery import weekly
    from digest.errors import DeliveryError

    settings = load_settings(config_path)
    store = open_store(settings)
    key = issue_key or _current_draft(store)
    if key is None:
        raise DeliveryError("no draft to edit", hint="pass --issue KEY (e.g. 2026-W48)")
    weekly.edit(store, key, url, action)
    done = "Pinned" if action == "pin" else "Excluded"
    record = store.issue(key)
    if record is not None and record.status == "draft":
        result = weekly.rebuild(settings, store, key)
        warn(result.warnings)
        click.echo(f"{done} {url} in {key}; the draft is rebuilt: {result.rendered.subject}")
    else:
        click.echo(f"{done} {url} for {key}; it applies when {key} is built")


def _current_draft(store: Store) -> str | None:
    for record, _ in store.issue_list():
        if record.status == "draft":
            return record.key
    return None


@cli.command()
@config_option
@click.argument("url")
@click.option("--issue", "issue_key", metavar="KEY", type=ISSUE_KEY, help="The issue (default: the current draft).")
def pin(config_path: Path, url: str, issue_key: str | None) -> None:
    """Show an article first in its section in this issue, and rebuild the draft."""
    _edit(config_path, url, issue_key, "pin")


@cli.command()
@config_option
@click.argument("url")
@click.option("--issue", "issue_key", metavar="KEY", type=ISSUE_KEY, help="The issue (default: the current draft).")
def exclude(config_path: Path, url: str, issue_key: str | None) -> None:
    """Leave an article out of this issue, and rebuild the draft."""
    _edit(config_path, url, issue_key, "exclude")


@cli.command("issues")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def issues_command(config_path: Path, as_json: bool) -> None:
    """List issues with their state (draft, approved, sending, sent, skipped) and counts."""
    store = open_store(load_settings(config_path))
    rows = store.issue_list()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "issue": r.key,
                        "status": r.status,
                        "subject": r.subject,
                        "articles": r.article_count,
                        "send_at": r.send_at.isoformat() if r.send_at else None,
                        "note": r.note,
                        "deliveries": counts,
                    }
                    for r, counts in rows
                ],
                indent=2,
            )
        )
        return
    if not rows:
        click.echo("No issues recorded yet.")
    for r, counts in rows:
        detail = _counts(counts) or r.note or r.subject
        click.echo(f"{r.key}  {r.status:9} {r.article_count:3} article(s)  {detail}")


@cli.command()
@config_option
def health(config_path: Path) -> None:
    """Exit 0 if the scheduler is alive (its heartbeat is recent), 1 if not: for HEALTHCHECK."""
    from digest.schedule.service import health as check

    ok, message = check(load_settings(config_path))
    click.echo(message)
    if not ok:
        raise click.exceptions.Exit(1)


# --- the subscriber's side ---------------------------------------------------------------------


@cli.command()
@config_option
@click.option("--host", help="Address to listen on (default: [web] host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: [web] port; 0 picks one).")
def serve(config_path: Path, host: str | None, port: int | None) -> None:
    """Serve one-click unsubscribe, section preferences, SendGrid's event webhook and the archive."""
    from digest.delivery.tokens import Signer
    from digest.web.app import serve as run

    settings = load_settings(config_path)
    configure_logging(settings)
    Signer.from_env()  # tokens cannot be checked without the secret: refuse to start
    run(settings, host=host or settings.web.host, port=settings.web.port if port is None else port)


def configure_logging(settings: Settings) -> None:
    """One line per event on stderr, text or JSON as configured; a terminal shows only warnings
    (the progress bar says the rest)."""
    from digest.logs import configure

    level = settings.logging.level
    if sys.stderr.isatty() and level in ("debug", "info"):
        level = "warning"
    configure(settings.logging.format, level)


def make_progress(issue: str) -> Any:
    from digest.delivery.progress import BarProgress, LogProgress

    return BarProgress() if sys.stderr.isatty() else LogProgress(issue)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="digest")
