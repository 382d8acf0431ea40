"""`digest build` and `digest preview`: the issue as files, and served locally while editing."""

from __future__ import annotations

import json
from pathlib import Path

import click

from digest.cli.common import config_option, load_settings, now_option, open_store, parse_now, warn


@click.command()
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


@click.command()
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
