"""`digest serve`: the subscriber's side (unsubscribe, preferences, webhook, archive)."""

from __future__ import annotations

from pathlib import Path

import click

from digest.cli.common import config_option, configure_logging, load_settings


@click.command()
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
