"""`digest editors ...`: who may sign in to the desk (`/desk/` in `digest serve`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from digest.cli.common import config_option, load_settings, open_store


@click.group()
def editors() -> None:
    """Add, list and remove the editors who sign in to the desk."""


@editors.command("add")
@config_option
@click.argument("email")
def editors_add(config_path: Path, email: str) -> None:
    """Add an editor, or set a new password for one (which signs them out everywhere).

    The password is asked for twice on a terminal; otherwise it is the first line of stdin.
    """
    from digest.delivery import desk

    password = _read_password()
    store = open_store(load_settings(config_path))
    address, new = desk.add_editor(store, email, password)
    click.echo(f"Added editor {address}" if new else f"New password for {address}; their sessions are ended")


@editors.command("list")
@config_option
def editors_list(config_path: Path) -> None:
    """The editors, with when each was added."""
    from digest.delivery import desk

    found = desk.editors(open_store(load_settings(config_path)))
    if not found:
        click.echo("No editors yet: add one with `digest editors add EMAIL`.")
    for editor in found:
        click.echo(f"{editor.email}  added {editor.created_at:%Y-%m-%d %H:%M} UTC")


@editors.command("remove")
@config_option
@click.argument("email")
def editors_remove(config_path: Path, email: str) -> None:
    """Take an editor off the desk; their sessions end at once."""
    from digest.delivery import desk

    desk.remove_editor(open_store(load_settings(config_path)), email)
    click.echo(f"Removed editor {email}")


def _read_password() -> str:
    """Twice, hidden, on a terminal; the first line of stdin otherwise (a script, a secret store)."""
    if _on_terminal():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password"))
    return sys.stdin.readline().rstrip("\r\n")


def _on_terminal() -> bool:
    return sys.stdin.isatty()
