"""Subscriber CSVs as they leave and come back: an export opened in a spreadsheet runs no formula,
and importing that export gives back every name and address exactly."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.subscribers import neutralise_formula, restore_formula
from factories import copy_sample

# Names a subscriber can type into a sign-up form, each one a formula to a spreadsheet.
FORMULAS = ["=cmd|' /C calc'!A0", "+1+1", "@SUM(1+1)", "-2+3", "\tTab", "\r=CR"]
# Names and addresses that must come back exactly as they went out.
PEOPLE = {
    "formula@example.org": "=cmd|' /C calc'!A0",
    "plus@example.org": "+1+1",
    "at@example.org": "@SUM(1+1)",
    "minus@example.org": "-2+3",
    "ann@example.org": "-Ann",
    "quoted@example.org": "'=already quoted",
    "twice@example.org": "''+twice",
    "obrien@example.org": "O'Brien",
    "apostrophe@example.org": "'Tis Herself",
    "-dash@example.org": "Dash First",
    "+plus.first@example.org": "Plus First",
    "plain@example.org": "Plain Name",
}


@pytest.fixture
def sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("DIGEST_DATABASE_URL", raising=False)
    return copy_sample(tmp_path)


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def add_everyone(config: Path) -> None:
    for email, name in PEOPLE.items():
        result = run("subscribers", "add", "--config", str(config), "--name", name, "--", email)
        assert result.exit_code == 0, result.output


def exported(config: Path, out: Path) -> list[dict[str, str]]:
    result = run("subscribers", "export", "--config", str(config), "--out", str(out))
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"), newline="")))


def test_export_neutralises_every_cell_a_spreadsheet_would_run(sample: Path, tmp_path: Path) -> None:
    add_everyone(sample)
    rows = {r["email"]: r for r in exported(sample, tmp_path / "export.csv")}
    triggers = ("=", "+", "-", "@", "\t", "\r")
    for row in rows.values():
        for column, cell in row.items():
            assert not cell.startswith(triggers), (column, cell)  # nothing a spreadsheet evaluates
    assert rows["formula@example.org"]["name"] == "'=cmd|' /C calc'!A0"
    assert rows["plus@example.org"]["name"] == "'+1+1"
    assert rows["at@example.org"]["name"] == "'@SUM(1+1)"
    assert rows["minus@example.org"]["name"] == "'-2+3"
    assert rows["'-dash@example.org"]["name"] == "Dash First"  # addresses are cells too
    assert rows["plain@example.org"]["name"] == "Plain Name"
    assert rows["obrien@example.org"]["name"] == "O'Brien"  # a quote inside is left alone


def test_export_then_import_gives_back_every_name_and_address_exactly(sample: Path, tmp_path: Path) -> None:
    add_everyone(sample)
    out = tmp_path / "export.csv"
    exported(sample, out)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    other = fresh / "config.toml"
    shutil.copy(sample, other)
    shutil.copytree(sample.parent / "examples", fresh / "examples")
    result = run("subscribers", "import", "--config", str(other), str(out))
    assert result.exit_code == 0, result.output
    assert f"{len(PEOPLE)} added, 0 updated, 0 unchanged, 0 bad row(s)" in result.stdout
    listing = run("subscribers", "list", "--config", str(other)).stdout.splitlines()
    assert {tuple(line.split("\t")[:2]) for line in listing} == set(PEOPLE.items())
    again = run("subscribers", "import", "--config", str(sample), str(out))  # into the database it came from
    assert f"0 added, 0 updated, {len(PEOPLE)} unchanged, 0 bad row(s)" in again.stdout


@pytest.mark.parametrize("cell", [*FORMULAS, "-Ann", "'=x", "''@x", "'", "''", "O'Brien", "'Tis", "", "plain", "a=b"])
def test_restore_undoes_neutralise_exactly(cell: str) -> None:
    escaped = neutralise_formula(cell)
    assert not escaped.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert restore_formula(escaped) == cell


@pytest.mark.parametrize("cell", ["O'Brien", "'Tis", "'", "plain", "-Ann", "+1"])
def test_a_hand_written_cell_without_the_escape_is_imported_as_written(cell: str) -> None:
    assert restore_formula(cell) == cell
