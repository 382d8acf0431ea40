"""Golden files: the bundled sample in, the exact HTML, text and JSON summary out.

A change to a template, the CSS, ranking or parsing shows up here as a readable diff. When the
change is intended, regenerate with ``DIGEST_UPDATE_GOLDEN=1 pytest tests/test_golden.py`` and
review the diff of ``tests/golden/`` before committing it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from factories import copy_sample

GOLDEN = Path(__file__).parent / "golden"
NOW = "2026-11-27T09:00"  # Friday 09:00 New York: issue 2026-W48
UPDATE = os.environ.get("DIGEST_UPDATE_GOLDEN") == "1"


def scrub(text: str) -> str:
    """Replace values that differ on every run (Message-ID, MIME boundaries, local paths)."""
    text = re.sub(r"<\d+\.\d+\.\d+@", "<MESSAGE-ID@", text)
    text = re.sub(r"={15}\d+==", "=BOUNDARY==", text)
    return text


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """Build the bundled sample once, from a copy so no state is left in the checkout."""
    work = tmp_path_factory.mktemp("sample")
    config = copy_sample(work)
    result = CliRunner().invoke(
        cli, ["build", "--config", str(config), "--now", NOW, "--out", str(work / "out"), "--json"]
    )
    assert result.exit_code == 0, result.output
    (work / "out" / "summary.json").write_text(result.stdout, encoding="utf-8")
    return work / "out"


@pytest.mark.parametrize("name", ["2026-W48.html", "2026-W48.txt", "2026-W48.eml", "summary.json"])
def test_sample_matches_golden(sample, name):
    actual = scrub(Path(sample / name).read_bytes().decode("utf-8").replace("\r\n", "\n"))
    golden = GOLDEN / name
    if UPDATE:
        golden.write_text(actual, encoding="utf-8")
    assert golden.exists(), f"no golden file {golden}: run DIGEST_UPDATE_GOLDEN=1 pytest {__file__}"
    assert actual == golden.read_text(encoding="utf-8"), f"{name} differs from {golden} (see module docstring)"


def test_summary_describes_the_issue(sample):
    data = json.loads((sample / "summary.json").read_text(encoding="utf-8"))
    assert data["issue"] == "2026-W48"
    assert data["window"] == {"start": "2026-11-20T09:00:00-05:00", "end": "2026-11-27T09:00:00-05:00"}
    assert set(data) >= {"issue", "subject", "window", "sections", "html_bytes", "warnings"}
    names = [s["name"] for s in data["sections"]]
    assert names[:2] == ["Asia-Pacific", "Military Industrial Complex"]
    for section in data["sections"]:
        assert section["articles"], section["name"]
        for a in section["articles"]:
            assert set(a) == {"title", "url", "published", "authors", "image"}
    assert 0 < data["html_bytes"] < 90 * 1024
