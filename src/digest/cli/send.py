"""`digest send` and `digest status`: the issue out to every subscriber once, and how it went.

The send itself is ``delivery.send.send_issue``, the same the scheduler runs; this module only
says what happens, in the user's words, and turns failed or unknown recipients into exit 1.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from digest.cli.common import (
    ISSUE_KEY,
    config_option,
    configure_logging,
    counts_line,
    load_settings,
    make_progress,
    now_option,
    open_store,
    parse_now,
    warn,
)
from digest.models import DeliveryStatus, IssueKey, IssueStatus, SubscriberStatus

if TYPE_CHECKING:
    from digest.config import Settings
    from digest.delivery.send import Prepared, Sent
    from digest.store import Store


@click.command()
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
    from digest.delivery.send import send_issue

    settings = load_settings(config_path)
    configure_logging(settings)
    now = parse_now(now_text, settings)
    store = open_store(settings)
    if test_to:
        _send_test_copy(settings, store, now, test_to)
        return
    if dry_run:
        _dry_run(settings, store, now)
        return

    def announce(prepared: Prepared) -> None:
        ready = prepared.ready
        if ready.built is not None:
            warn(ready.built.warnings)
            click.echo(f"Recorded {ready.key}: {ready.subject}")
        if retry_failed:
            click.echo(f"{prepared.retried} failed recipient(s) queued again")

    key = str(IssueKey.at(now, settings.newsletter.zone))
    sent = send_issue(
        settings,
        store,
        now,
        retry_failed=retry_failed,
        resend_unknown=resend_unknown,
        progress=make_progress(key),
        announce=announce,
    )
    _report(sent)


def _report(sent: Sent) -> None:
    """The send's last lines; failed or unknown recipients make it exit 1 with what to do."""
    from digest.errors import DeliveryError

    key, report = sent.key, sent.report
    if report.resent:
        click.echo(
            f"Warning: {report.resent} recipient(s) whose outcome was unknown were queued again; "
            "some of them may have had it already and get a second copy"
        )
    click.echo(f"{key}: {counts_line(report.counts)} (this run: {report.sent_now} in {report.batches} batch(es))")
    if sent.troubled:
        raise DeliveryError(
            f"{key}: {sent.troubled} recipient(s) failed or unknown",
            hint=f"see `digest status {key}`; `digest send --retry-failed` sends failed recipients again, "
            "`--resend-unknown` unknown recipients (they may get a second copy)",
        )


def _send_test_copy(settings: Settings, store: Store, now: datetime, addresses: tuple[str, ...]) -> None:
    """[TEST] copies of the recorded snapshot if there is one, else of a fresh build."""
    from digest.delivery.send import proof_of, send_proofs
    from digest.subscribers import check_email

    checked = [check_email(a) for a in addresses]
    proof = proof_of(settings, store, now)
    warn(proof.warnings)
    send_proofs(settings, proof.rendered, proof.key, checked)
    click.echo(f"Sent a [TEST] copy of {proof.key} to {', '.join(checked)} (nothing recorded)")


def _dry_run(settings: Settings, store: Store, now: datetime) -> None:
    from digest.delivery import weekly

    key = str(IssueKey.at(now, settings.newsletter.zone))
    record = store.issues.get(key)
    if record is not None and record.status != IssueStatus.SKIPPED:
        counts = store.ledger.counts(key)
        click.echo(f"Dry run: {key} is {record.status}; deliveries so far: {counts_line(counts) or 'none'}")
        return
    built = weekly.build_for(settings, store, now)
    warn(built.warnings)
    if built.issue.thin:
        click.echo(f"Dry run: {key} is a thin week ({len(built.issue.articles)} article(s)): it would not be sent")
        return
    active = store.subscribers.counts().get(SubscriberStatus.ACTIVE, 0)
    click.echo(f'Dry run: {key} "{built.rendered.subject}" would go to {active} active subscriber(s)')


@click.command()
@config_option
@click.argument("issue_key", metavar="[ISSUE]", required=False, type=ISSUE_KEY)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(config_path: Path, issue_key: str | None, as_json: bool) -> None:
    """Show an issue's deliveries per state, and its failed and unknown recipients."""
    from digest.errors import DeliveryError

    store = open_store(load_settings(config_path))
    key = issue_key or store.issues.latest_key()
    if key is None or not store.issues.exists(key):
        raise DeliveryError(f"no recorded issue {key or ''}".strip(), hint="issues are recorded by `digest send`")
    counts = store.ledger.counts(key)
    problems = store.ledger.problems(key)
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
    click.echo(f"{key}: {counts_line(counts) or 'no deliveries'}")
    if counts.get(DeliveryStatus.UNKNOWN):
        click.echo(
            f"{counts['unknown']} unknown: they may have received it, so they stay unknown and are not sent "
            "again on their own; `digest send --resend-unknown` sends to them again (some may get a second copy)"
        )
    for p in problems[:50]:
        click.echo(f"  {p.status:8} {p.email}  {p.error}")
    if len(problems) > 50:
        click.echo(f"  ... and {len(problems) - 50} more (use --json for all)")
