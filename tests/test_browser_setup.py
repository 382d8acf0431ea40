"""The browser tests' own setup (``tests/conftest.py``): Playwright drives Debian's chromium, never
a browser of its own, and without chromium the browser tests fail with one clear line instead of
being skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.browser
def test_playwright_drives_debians_chromium(browser: Browser, browser_type_launch_args: dict[str, Any]) -> None:
    binary = browser_type_launch_args["executable_path"]
    shown = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert f"Chromium {browser.version} " in shown, f"Playwright runs Chromium {browser.version}; {binary}: {shown}"


def test_a_missing_chromium_fails_the_browser_tests_with_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-chromium-here"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "browser", "tests/test_web_browser.py"],
        cwd=ROOT,
        env={**os.environ, "DIGEST_CHROMIUM": str(missing)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "3 errors" in out and "skipped" not in out and "passed" not in out, out
    assert f"browser tests need Chromium at {missing} but it is missing: install Debian's 'chromium'" in out, out
