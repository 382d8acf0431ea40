"""The browser tests' own setup (``tests/conftest.py``): Playwright drives Debian's chromium, never
a browser of its own; without chromium the browser tests fail with one clear line instead of being
skipped; and Playwright's asyncio loop ends with its module, so later tests can run their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from factories import ROOT


@pytest.mark.browser
def test_playwright_drives_debians_chromium(browser: Browser, browser_type_launch_args: dict[str, Any]) -> None:
    binary = browser_type_launch_args["executable_path"]
    shown = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert f"Chromium {browser.version} " in shown, f"Playwright runs Chromium {browser.version}; {binary}: {shown}"


def run_pytest(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """pytest in a child process, from the project's root with its configuration."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    run = subprocess.run(
        [*command, "--rootdir", str(ROOT), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return run.returncode, run.stdout + run.stderr


def test_a_missing_chromium_fails_the_browser_tests_with_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-chromium-here"
    code, out = run_pytest("-m", "browser", "tests/web/test_web_browser.py", env={"DIGEST_CHROMIUM": str(missing)})
    assert code == 1, out
    assert "3 errors" in out and "skipped" not in out and "passed" not in out, out
    assert f"browser tests need Chromium at {missing} but it is missing: install Debian's 'chromium'" in out, out


@pytest.mark.browser
def test_a_test_after_the_browser_tests_can_run_its_own_asyncio_loop(tmp_path: Path) -> None:
    later = tmp_path / "test_later.py"
    later.write_text("import asyncio\n\n\ndef test_asyncio_run():\n    assert asyncio.run(asyncio.sleep(0, 1)) == 1\n")
    browser_test = "tests/test_browser_setup.py::test_playwright_drives_debians_chromium"
    code, out = run_pytest(browser_test, str(later))
    assert code == 0 and "2 passed" in out, out
