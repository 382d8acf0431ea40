"""The editors' desk in a real headless Chromium (Playwright, Debian's chromium), end to end, on
SQLite and PostgreSQL: an editor is added on the command line and signs in; excludes an
article, moves another and writes a note; sends a test copy and reads its .eml; approves; then
`digest send` runs in another process while the page's counts reach the total without a reload;
and signs out. Then the desk's pages at 1280 and 390 px: no horizontal overflow, and every
control reached with the keyboard."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner
from playwright.sync_api import Browser, Page, expect

from browsing import answer_with_placeholder, serve_app
from desking import KEY, PASSWORD, SECRET, SEND_AT
from digest.cli import cli
from digest.config import load
from digest.delivery.tokens import Signer
from digest.schedule import jobs
from digest.store import Store
from digest.web.app import create_app

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path("/tmp/desk-shots")
EDITOR = "editor@responsiblestatecraft.example"
SITE = "https://responsiblestatecraft.example/2026/11"
JAPAN = f"{SITE}/25/japan-counterstrike-missiles"
JAPAN_TITLE = "Japan's counterstrike missiles"
INDIA = f"{SITE}/21/india-global-south"
NOTE = "Welcome to a **busy** week.\n\nThe talks in Oman lead; read them first."
NOW = "2026-11-27T09:00"


@dataclass
class Live:
    config: Path
    store: Store
    base: str

    def outbox(self, folder: str) -> list[EmailMessage]:
        found = sorted((self.config.parent / ".digest" / "outbox" / folder).glob("*.eml"))
        return [message_from_bytes(p.read_bytes(), policy=policy.default) for p in found]  # type: ignore[misc]


@pytest.fixture
def live(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    """The desk on SQLite and on PostgreSQL."""
    with desk_on(tmp_path, database_url, monkeypatch) as opened:
        yield opened


@pytest.fixture
def live_on_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    """The desk on SQLite: for what does not depend on the database (the pages' layout)."""
    with desk_on(tmp_path, f"sqlite:///{tmp_path / 'digest.sqlite3'}", monkeypatch) as opened:
        yield opened


@contextmanager
def desk_on(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    """The bundled sample on ``database_url``: subscribers imported, an editor added with
    `digest editors add`, the scheduler's review draft of 2026-W48, `digest serve`'s app on loopback."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    config = tmp_path / "config.toml"
    config.write_text((ROOT / "config.toml").read_text(encoding="utf-8") + "\n[schedule]\nreview_hours = 24\n")
    monkeypatch.setenv("DIGEST_DATABASE_URL", database_url)
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    runner = CliRunner()
    imported = runner.invoke(
        cli, ["subscribers", "import", "--config", str(config), str(tmp_path / "examples" / "subscribers.csv")]
    )
    assert imported.exit_code == 0, imported.output
    added = runner.invoke(cli, ["editors", "add", "--config", str(config), EDITOR], input=PASSWORD + "\n")
    assert added.exit_code == 0 and added.stdout == f"Added editor {EDITOR}\n", added.output
    settings = load(config)
    store = Store.open(database_url)
    assert jobs.review(settings, store, SEND_AT) == f"draft {KEY}"
    try:
        with serve_app(create_app(settings, store, Signer(SECRET))) as base:
            yield Live(config, store, base)
    finally:
        store.close()


def sign_in(page: Page, live: Live) -> None:
    page.goto(f"{live.base}/desk/")
    expect(page.locator("h1")).to_have_text("Sign in to the desk")  # sent to the sign-in page
    page.get_by_label("Email address").fill(EDITOR)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("h1")).to_have_text("Issues")


def run_digest_send(live: Live) -> subprocess.CompletedProcess[str]:
    """`digest send`, as an operator runs it: another process on the same database."""
    digest = Path(sys.executable).with_name("digest")
    env = {**os.environ, "DIGEST_SECRET": SECRET}
    return subprocess.run(
        [str(digest), "send", "--config", str(live.config), "--now", NOW],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.browser
def test_an_editor_arranges_introduces_tests_approves_and_watches_the_issue_go_out(page: Page, live: Live) -> None:
    page.route(re.compile(r"^https?://(?!127\.0\.0\.1).*\.(jpg|jpeg|png|webp|gif)(\?.*)?$"), answer_with_placeholder)
    # 1. signed in
    sign_in(page, live)
    page.get_by_role("link", name=KEY).click()
    expect(page.locator("h1")).to_have_text(KEY)

    # 2. exclude an article, move another, write a note (each rebuilds the draft)
    title = page.locator("ul.articles a", has_text=JAPAN_TITLE).first.inner_text()
    page.get_by_role("button", name=f"Exclude: {title}").click()
    expect(page.get_by_role("status")).to_have_text("Excluded; the draft is rebuilt.")
    india = page.locator(f'li:has(input[value="{INDIA}"]) .title a').first.inner_text()
    page.get_by_role("button", name=f"Up: {india}").click()
    expect(page.get_by_role("status")).to_have_text("Moved up; the draft is rebuilt.")
    page.get_by_role("textbox", name=re.compile("^Editor's note")).fill(NOTE)
    page.get_by_role("button", name="Save and rebuild").click()
    expect(page.get_by_role("status")).to_have_text("Saved; the draft is rebuilt.")
    frame = page.frame_locator("iframe[title='The issue on a desktop']")
    expect(frame.locator("strong", has_text="busy")).to_be_visible()

    # 3. a test copy, read as the .eml it is: the note is in, the excluded article out
    page.get_by_label(re.compile("A \\[TEST\\] copy goes to you")).fill("chief@responsiblestatecraft.example")
    page.get_by_role("button", name="Send test copies").click()
    expect(page.get_by_role("status")).to_contain_text("The [TEST] copies are on their way")
    copies = {m["To"]: m for m in live.outbox(f"test-{KEY}")}
    assert sorted(copies) == ["chief@responsiblestatecraft.example", EDITOR]
    mine = copies[EDITOR]
    html, text = (mine.get_body((kind,)).get_content() for kind in ("html", "plain"))  # type: ignore[union-attr]
    assert mine["Subject"].startswith("[TEST] ")
    assert "Welcome to a <strong>busy</strong> week." in html and "Welcome to a **busy** week." in text
    assert "japan-counterstrike-missiles" not in html and "japan-counterstrike-missiles" not in text
    assert html.index("india-global-south") < html.index("camp-david-trilateral")  # moved up past it
    assert live.store.ledger.counts(KEY) == {}

    # 4. approve, then `digest send` in another process: the counts reach the total, no reload
    page.get_by_role("button", name=f"Approve {KEY}").click()
    expect(page.get_by_role("status")).to_contain_text("Approved")
    expect(page.locator("#approved")).to_contain_text(f"approved by {EDITOR}")
    expect(page.locator("#progress [data-status]")).to_have_text("approved")
    page.evaluate("window.__notReloaded = true")
    sent = run_digest_send(live)
    assert sent.returncode == 0, sent.stderr
    expect(page.locator("#progress [data-count='submitted']").first).to_have_text("5", timeout=15_000)
    expect(page.locator("#progress [data-total]")).to_have_text("5")
    expect(page.locator("#progress [data-status]")).to_have_text("sent")
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"
    delivered = live.outbox(KEY)
    assert len(delivered) == 5
    assert all("japan-counterstrike-missiles" not in m.get_body(("html",)).get_content() for m in delivered)  # type: ignore[union-attr]

    # 5. sign out: the desk is shut again
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("h1")).to_have_text("Sign in to the desk")
    page.goto(f"{live.base}/desk/issues/{KEY}")
    expect(page.locator("h1")).to_have_text("Sign in to the desk")


# --- the pages at desktop and phone widths, and by keyboard ------------------------------------------

PAGES = ("/desk/", f"/desk/issues/{KEY}", "/desk/history", "/desk/audit")


def overflow(page: Page, width: int) -> list[str]:
    """The elements reaching past a ``width`` px window, besides what scrolls in its own box (a
    frame, a wide table), and the page itself if it does (none: no horizontal scrolling). Measured
    against the width asked for: a phone's layout viewport widens to fit what overflows it."""
    return page.evaluate(
        """width => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > width + 0.5 && !e.closest('.screen, .scroll'))
            .map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + [...e.classList].join('.'))
            .concat(document.documentElement.scrollWidth > width
                ? ['page: ' + document.documentElement.scrollWidth] : [])""",
        width,
    )


def tab_through(page: Page, presses: int) -> list[str]:
    """Press Tab ``presses`` times from the top; the accessible names of the controls focused
    in the page itself (a frame's own links are the frame's), each checked to be on screen."""
    page.evaluate("window.scrollTo(0, 0); document.activeElement && document.activeElement.blur()")
    reached = []
    for _ in range(presses):
        page.keyboard.press("Tab")
        info = page.evaluate(
            """() => {
                const el = document.activeElement;
                if (!el || el === document.body || el.tagName === 'IFRAME') return null;
                const box = el.getBoundingClientRect();
                const seen = box.width > 0 && box.height > 0 && box.bottom > 0 && box.top < window.innerHeight
                    && box.left >= 0 && box.right <= window.innerWidth + 1;
                const name = el.getAttribute('aria-label') || (el.labels && el.labels[0] && el.labels[0].innerText)
                    || el.innerText || el.value || el.name || el.tagName;
                return {name: name.trim().split('\\n')[0], seen: seen};
            }"""
        )
        if info is None:
            continue
        assert info["seen"], f"focus went to {info['name']!r} off screen"
        reached.append(info["name"])
    return reached


@pytest.mark.browser
@pytest.mark.parametrize("width", [1280, 390])
def test_the_desk_fits_the_window_and_every_control_is_reached_by_keyboard(
    browser: Browser, live_on_sqlite: Live, width: int
) -> None:
    live = live_on_sqlite
    context = browser.new_context(viewport={"width": width, "height": 900}, is_mobile=width < 600)
    try:
        page = context.new_page()
        page.route(re.compile(r"^https?://(?!127\.0\.0\.1).*"), answer_with_placeholder)
        sign_in(page, live)
        SHOTS.mkdir(parents=True, exist_ok=True)
        for path in PAGES:
            page.goto(live.base + path)
            page.wait_for_load_state("networkidle")
            wide = overflow(page, width)
            assert not wide, f"{path} is wider than {width} px: {wide[:6]}"
            page.screenshot(
                path=str(SHOTS / f"{path.strip('/').replace('/', '-') or 'desk'}-{width}.png"), full_page=True
            )
        page.goto(f"{live.base}/desk/issues/{KEY}")
        buttons = page.locator("main button, main input:not([type=hidden]), main textarea, .bar button, .bar a")
        expected = {
            (b.get_attribute("aria-label") or b.inner_text() or "").strip()
            for b in buttons.all()
            if b.get_attribute("type") != "hidden" and b.evaluate("e => e.tagName") == "BUTTON"
        }
        assert len(expected) >= 50  # every article's buttons, the forms', the bar's
        reached = set(tab_through(page, 260))
        missing = expected - reached
        assert not missing, f"not reached by Tab at {width} px: {sorted(missing)[:5]}"
        assert {"Editor's note", "Approve 2026-W48", "Send test copies", "Sign out"} <= reached | {
            n.split(" (")[0] for n in reached
        }
    finally:
        context.close()
