"""`digest subscribers ...`: import, add, remove, list and export the mailing list."""

from __future__ import annotations

from pathlib import Path

import click

from digest.cli.common import config_option, load_settings, open_store, warn
from digest.models import SubscriberStatus

STATUS_CHOICE = click.Choice([s.value for s in SubscriberStatus])


@click.group()
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
    warn(describe_bad_rows(csv_path, parsed.bad))
    report = open_store(settings).subscribers.merge(parsed.rows, resubscribe=resubscribe)
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
    report = open_store(settings).subscribers.merge([row], resubscribe=resubscribe)
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
    done = (
        store.subscribers.forget(email)
        if forget
        else store.subscribers.set_status(email, SubscriberStatus.UNSUBSCRIBED)
    )
    if not done:
        raise SubscriberError(f"{email}: no such subscriber", hint="check the address with `digest subscribers list`")
    click.echo(f"{'Forgot' if forget else 'Unsubscribed'}: {email}")


@subscribers.command("show")
@config_option
@click.argument("email")
def subscribers_show(config_path: Path, email: str) -> None:
    """Show one address: status, sections, dates, its consent record and any pending sign-up."""
    from digest.errors import SubscriberError
    from digest.subscribers import describe_subscriber

    store = open_store(load_settings(config_path))
    lines = describe_subscriber(store.subscribers.by_email(email), store.signups.by_email(email))
    if not lines:
        raise SubscriberError(
            f"{email}: no such subscriber or sign-up", hint="check the address with `digest subscribers list`"
        )
    for line in lines:
        click.echo(line)


@subscribers.command("list")
@config_option
@click.option("--status", type=STATUS_CHOICE, help="Only subscribers with this status.")
def subscribers_list(config_path: Path, status: str | None) -> None:
    """List subscribers: email, name, status, sections."""
    store = open_store(load_settings(config_path))
    count = 0
    for s in store.subscribers.every(SubscriberStatus(status) if status else None):
        click.echo(f"{s.email}\t{s.name}\t{s.status}\t{'; '.join(s.sections) or 'all sections'}")
        count += 1
    counts = store.subscribers.counts()
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
    count = write_csv(store.subscribers.every(SubscriberStatus(status) if status else None), buffer)
    if out_path is None:
        click.echo(buffer.getvalue(), nl=False)
    else:
        atomic_write(out_path, buffer.getvalue().encode("utf-8"))
        click.echo(f"Exported {count} subscriber(s) to {out_path}", err=True)
