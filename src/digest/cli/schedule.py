"""`digest schedule` (the long-running scheduler, or its next send times) and `digest health`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from digest.cli.common import config_option, configure_logging, load_settings

if TYPE_CHECKING:
    from digest.config import Settings


@click.command()
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
    """The next send times in local time and UTC (and each draft's time with a review)."""
    from digest.cron import next_sends

    review = settings.schedule.review_hours
    for when in next_sends(settings.schedule.cron, settings.newsletter.zone, count, datetime.now(UTC)):
        line = f"{when:%a %Y-%m-%d %H:%M %Z}  ({when.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"
        if review:
            draft = when - timedelta(hours=review)
            line += f"  draft {draft:%a %Y-%m-%d %H:%M %Z}"
        click.echo(line)


@click.command()
@config_option
def health(config_path: Path) -> None:
    """Exit 0 if the scheduler is alive (its heartbeat is recent), 1 if not: for HEALTHCHECK."""
    from digest.schedule.health import health as check

    ok, message = check(load_settings(config_path))
    click.echo(message)
    if not ok:
        raise click.exceptions.Exit(1)
