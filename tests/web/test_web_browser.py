"""The subscriber's pages in a real headless Chromium (Playwright), clicked like a person clicks
them on a phone: the unsubscribe button, the section checkboxes and Save; then the next issue, sent
through the outbox, carries only the sections that were ticked."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from playwright.sync_api import Page, expect

from browsing import serve_app
from digest.cli import cli
from digest.config import Settings, load
from digest.delivery.tokens import Signer
from digest.store import Store, Subscriber
from digest.web.app import create_app
from factories import copy_sample

SECRET = "browser-test-secret-long-enough-to-sign-links"
NOW = "2026-11-27T09:00"
KEY = "2026-W48"
PHONE = 375


@dataclass
class Live:
    config: Path
    settings: Settings
    store: Store
    signer: Signer
    base: str

    def subscriber(self, email: str) -> Subscriber:
        found = self.store.subscribers.by_email(email)
        assert found is not None, email
        return found

    def link(self, page: str, email: str) -> str:
        return f"{self.base}/{page}?t={self.signer.token(self.subscriber(email).id)}"


def cli_run(*args: str) -> str:
    result = CliRunner(env={"DIGEST_SECRET": SECRET}).invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    """A phone: 375 px wide, its viewport meta honoured."""
    return {**browser_context_args, "viewport": {"width": PHONE, "height": 900}, "is_mobile": True}


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    """The bundled sample with its subscribers imported, and the web app served on loopback."""
    monkeypatch.delenv("DIGEST_DATABASE_URL", raising=False)
    config = copy_sample(tmp_path)
    cli_run("subscribers", "import", "--config", str(config), str(tmp_path / "examples" / "subscribers.csv"))
    settings = load(config)
    store = Store.open(settings.database_url)
    signer = Signer(SECRET)
    try:
        with serve_app(create_app(settings, store, signer)) as base:
            yield Live(config, settings, store, signer, base)
    finally:
        store.close()


def fits_a_phone(page: Page) -> None:
    """One column that fits 375 px, and buttons a thumb can hit."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE, f"the page is {width} px wide in a {PHONE} px window"
    heights = page.evaluate("[...document.querySelectorAll('button')].map(b => b.getBoundingClientRect().height)")
    assert heights and min(heights) >= 44, heights


def ticked(page: Page) -> dict[str, bool]:
    return dict(page.evaluate("[...document.querySelectorAll('input[name=section]')].map(b => [b.value, b.checked])"))


def choose_sections(live: Live, page: Page, email: str, wanted: set[str]) -> None:
    """Open the preferences link, click the boxes whose state differs from ``wanted``, Save."""
    page.goto(live.link("preferences", email))
    fits_a_phone(page)
    for name, checked in ticked(page).items():
        if checked != (name in wanted):
            page.locator(f'input[name=section][value="{name}"]').click()
    assert {name for name, checked in ticked(page).items() if checked} == wanted
    page.locator("button[type=submit]").click()
    expect(page.locator("h1")).to_have_text("Your choice is saved")


@pytest.mark.browser
def test_unsubscribing_with_the_button_in_a_real_browser(page: Page, live: Live) -> None:
    email = "ben.okafor@example.org"
    page.goto(live.link("unsubscribe", email))
    fits_a_phone(page)
    expect(page.locator("h1")).to_have_text("Unsubscribe from Statecraft Weekly?")
    assert live.subscriber(email).status == "active"  # opening the link changed nothing
    page.locator("button[type=submit]").click()
    expect(page.locator("h1")).to_have_text("You are unsubscribed")
    assert live.subscriber(email).status == "unsubscribed"
    assert page.url.startswith(live.base + "/unsubscribe?t="), page.url  # posted to itself, CSP allowing
    page.locator("main a").click()  # the link to the preferences
    expect(page.locator("h1")).to_have_text("Your sections")
    expect(page.locator("main")).to_contain_text("unsubscribed")


@pytest.mark.browser
def test_choosing_sections_in_a_real_browser(page: Page, live: Live) -> None:
    email = "chloe@example.com"  # imported with "Europe"
    page.goto(live.link("preferences", email))
    assert ticked(page) == {
        "Asia-Pacific": False,
        "Military Industrial Complex": False,
        "Middle East": False,
        "Europe": True,
        "Also this week": False,
    }
    choose_sections(live, page, email, {"Asia-Pacific", "Middle East"})
    assert live.subscriber(email).sections == ("Asia-Pacific", "Middle East")
    expect(page.locator("main li")).to_have_text(["Asia-Pacific", "Middle East"])
    choose_sections(live, page, email, set())  # none ticked: every section
    assert live.subscriber(email).sections == ()
    page.goto(live.link("preferences", email))
    assert all(ticked(page).values())


def sections_in(message: EmailMessage) -> tuple[list[str], list[str]]:
    """Section headings of the HTML part and of the text part."""
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    assert html_part is not None and text_part is not None
    page = html_part.get_content()
    headings = [html.unescape(h).strip() for h in re.findall(r'<h2 class="section-name"[^>]*>(.*?)</h2>', page, re.S)]
    text = re.findall(r"(?m)^== (.+) ==$", text_part.get_content())
    return headings, text


@pytest.mark.browser
def test_the_next_issue_carries_only_the_sections_chosen_in_the_browser(page: Page, live: Live) -> None:
    chooser, unsubscriber, everyone = "chloe@example.com", "ben.okafor@example.org", "dev.patel@example.net"
    chosen = {"Asia-Pacific", "Middle East"}
    choose_sections(live, page, chooser, chosen)
    page.goto(live.link("unsubscribe", unsubscriber))
    page.locator("button[type=submit]").click()
    expect(page.locator("h1")).to_have_text("You are unsubscribed")

    cli_run("send", "--config", str(live.config), "--now", NOW)

    folder = live.config.parent / ".digest" / "outbox" / KEY

    def eml(email: str) -> list[Path]:
        return sorted(folder.glob(f"*-{live.subscriber(email).id}.eml"))

    assert eml(unsubscriber) == []  # unsubscribed in the browser: not sent
    (full,) = eml(everyone)
    all_html, all_text = sections_in(message_from_bytes(full.read_bytes(), policy=policy.default))
    assert set(all_html) - chosen, "the sample issue should have sections beyond the chosen ones"
    (mine,) = eml(chooser)
    got_html, got_text = sections_in(message_from_bytes(mine.read_bytes(), policy=policy.default))
    expected = [name for name in all_html if name in chosen]
    assert expected, "the sample issue should have articles in the chosen sections"
    assert got_html == expected, f"{chooser} chose {sorted(chosen)} but the HTML part has {got_html}"
    assert got_text == [name for name in all_text if name in chosen], got_text
