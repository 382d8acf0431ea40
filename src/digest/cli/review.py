"""The editors' commands: `issues`, `approve`, `withdraw`, `pin` and `exclude`.

A draft is built by the scheduler's review job (``[schedule] review_hours``); here editors see
it, change what it carries (each change rebuilds it) and approve it for its send time.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from digest.cli.common import ISSUE_KEY, config_option, counts_line, load_settings, open_store, warn
from digest.models import IssueStatus

if TYPE_CHECKING:
    from digest.store import Store

ISSUE_OPTION = click.option(
    "--issue", "issue_key", metavar="KEY", type=ISSUE_KEY, help="The issue (default: the current draft)."
)


@click.command("issues")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def issues_command(config_path: Path, as_json: bool) -> None:
    """List issues with their state (draft, approved, sending, sent, skipped) and counts."""
    store = open_store(load_settings(config_path))
    rows = store.issues.recent()
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
        detail = counts_line(counts) or r.note or r.subject
        click.echo(f"{r.key}  {r.status:9} {r.article_count:3} article(s)  {detail}")


@click.command()
@config_option
@click.argument("issue_key", metavar="ISSUE", type=ISSUE_KEY)
def approve(config_path: Path, issue_key: str) -> None:
    """Approve a draft: it goes out at its send time, exactly as it is now."""
    from digest.delivery import weekly

    settings = load_settings(config_path)
    store = open_store(settings)
    weekly.approve(store, issue_key, by=f"{getpass.getuser()} (digest approve)")
    record = store.issues.get(issue_key)
    zone = settings.newsletter.zone
    when = f" at {record.send_at.astimezone(zone):%a %Y-%m-%d %H:%M %Z}" if record and record.send_at else ""
    click.echo(f"Approved {issue_key}; it will be sent{when}")


@click.command()
@config_option
@click.argument("issue_key", metavar="ISSUE", type=ISSUE_KEY)
def withdraw(config_path: Path, issue_key: str) -> None:
    """Take back an approval: the issue is a draft again, and is not sent unless approved anew."""
    from digest.delivery import weekly

    weekly.withdraw(open_store(load_settings(config_path)), issue_key)
    click.echo(f"Withdrew the approval of {issue_key}; it is a draft again")


@click.command()
@config_option
@click.argument("url")
@ISSUE_OPTION
def pin(config_path: Path, url: str, issue_key: str | None) -> None:
    """Show an article first in its section in this issue, and rebuild the draft."""
    _edit(config_path, url, issue_key, "pin")


@click.command()
@config_option
@click.argument("url")
@ISSUE_OPTION
def exclude(config_path: Path, url: str, issue_key: str | None) -> None:
    """Leave an article out of this issue, and rebuild the draft."""
    _edit(config_path, url, issue_key, "exclude")


def _edit(config_path: Path, url: str, issue_key: str | None, action: str) -> None:
    """Record a pin or an exclusion; a draft is rebuilt with it at once, any other issue when built."""
    from digest.delivery import weekly
    from digest.errors import DeliveryError

    settings = load_settings(config_path)
    store = open_store(settings)
    key = issue_key or _current_draft(store)
    if key is None:
        raise DeliveryError("no draft to edit", hint="pass --issue KEY (e.g. 2026-W48)")
    weekly.edit(store, key, url, action)
    done = "Pinned" if action == "pin" else "Excluded"
    result = weekly.revised(settings, store, key)
    if result is not None:
        warn(result.warnings)
        click.echo(f"{done} {url} in {key}; the draft is rebuilt: {result.rendered.subject}")
    else:
        click.echo(f"{done} {url} for {key}; it applies when {key} is built")


def _current_draft(store: Store) -> str | None:
    for record, _ in store.issues.recent():
        if record.status == IssueStatus.DRAFT:
            return record.key
    return None
