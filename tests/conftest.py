"""Shared pytest fixtures. Each block belongs to one area; keep them apart and generic."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from playwright.sync_api import Browser, BrowserType, Playwright, sync_playwright

from digest.config import Settings
from digest.store import Store
from factories import settings

# --- feeds (feed.py, fetch.py) ---------------------------------------------------------------

# Retries without real waits, so a failing fetch test costs well under a second; timeouts generous,
# so a loaded machine never fails a fetch that is not about time (the tests of a timeout set their own).
FAST_FETCH = {"connect_timeout": 10, "read_timeout": 10, "retries": 2, "backoff": 0.01}


@pytest.fixture
def feed_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Build Settings for the given feeds (URLs or paths), state under ``tmp_path/state``.

    ``fetch`` overrides single ``[fetch]`` keys on top of ``FAST_FETCH``.
    """

    def make(*feeds: str, fetch: dict[str, Any] | None = None) -> Settings:
        return settings(tmp_path, feeds=[{"url": url} for url in feeds], fetch={**FAST_FETCH, **(fetch or {})})

    return make


# --- end feeds -------------------------------------------------------------------------------


# --- delivery (store.py, transports) -----------------------------------------------------------

POSTGRES_ENV = "DIGEST_TEST_POSTGRES_URL"


@pytest.fixture
def sg() -> Iterator[Any]:
    """A local SendGrid stand-in that checks every request against the Mail Send contract."""
    from sendgrid_standin import SendGridStandIn

    with SendGridStandIn() as standin:
        yield standin
        assert standin.server_errors == []


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each store test runs on a SQLite file and on PostgreSQL (in a schema of its own).

    PostgreSQL runs when $DIGEST_TEST_POSTGRES_URL is set (``.ci/run`` sets it); otherwise those
    cases are reported as skipped with the reason.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'digest.sqlite3'}"
        return
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"PostgreSQL tests need ${POSTGRES_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """An empty store on each database (see ``database_url``), closed after the test."""
    opened = Store.open(database_url)
    yield opened
    opened.close()


# --- end delivery ------------------------------------------------------------------------------


# --- browser tests (Playwright on Debian's chromium) -------------------------------------------

CHROMIUM_ENV = "DIGEST_CHROMIUM"
CHROMIUM = os.environ.get(CHROMIUM_ENV, "/usr/bin/chromium")

# Headless as root, offline and quiet. Without the background-networking flags chromium stalls on
# the closed network; the resolver rule lets only loopback resolve, so a test never depends on
# (or leaks to) the network and a remote image the test did not route fails at once.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright launches Debian's chromium, never a browser of its own (there is none to
    download here). A missing chromium fails every browser test with one clear line rather than
    skipping: a silent skip would hide that the pages were never looked at."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"browser tests need Chromium at {CHROMIUM} but it is missing: install Debian's 'chromium' "
            f"package (apt-get install chromium), point ${CHROMIUM_ENV} at a binary, "
            f"or leave these tests out with -m 'not browser'",
            pytrace=False,
        )
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


# pytest-playwright keeps one Playwright for the whole session, and its sync API leaves an asyncio
# loop marked running in the main thread while Playwright lives: every later test that calls
# asyncio.run() would fail. So Playwright and its browser live for one module of browser tests
# (a browser start costs about a second) and the loop ends with the module.


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    return cast(BrowserType, getattr(playwright, browser_name))


@pytest.fixture(scope="module")
def browser(browser_type: BrowserType, browser_type_launch_args: dict[str, Any]) -> Iterator[Browser]:
    browser = browser_type.launch(**browser_type_launch_args)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def browser_context_args() -> dict[str, Any]:
    """Playwright's defaults (a 1280 x 720 desktop); a module overrides this to be, say, a phone."""
    return {}


# --- end browser tests -------------------------------------------------------------------------
