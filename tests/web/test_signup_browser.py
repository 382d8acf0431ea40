"""A reader signs up in a real headless Chromium (Playwright, Debian's chromium), end to end: the
form on a phone, the confirmation email (from the outbox, then once more through SMTP to a real
aiosmtpd server), its link, the button; then ``digest send`` delivers the next issue to the new
reader with only the sections they ticked."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from playwright.sync_api import Page, expect
from test_transport_smtp import Recorder, _Controller

from browsing import serve_app
from digest.cli import cli
from digest.config import load
from digest.delivery.tokens import Signer
from digest.store import Store
from digest.web.app import create_app

ROOT = Path(__file__).resolve().parents[2]
SECRET = "browser-signup-secret-long-enough-to-sign-links"
NOW = "2026-11-27T09:00"
KEY = "2026-W48"
PHONE = 375
READER = "new.reader@example.org"
CHOSEN = ["Asia-Pacific", "Middle East"]


@pytest.fixture(scope="module")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_context_args, "viewport": {"width": PHONE, "height": 900}, "is_mobile": True}


@dataclass
class Live:
    config: Path
    store: Store
    base: str

    def send(self) -> None:
        result = CliRunner(env={"DIGEST_SECRET": SECRET}).invoke(
            cli, ["send", "--config", str(self.config), "--now", NOW]
        )
        assert result.exit_code == 0, result.output


@pytest.fixture
def sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bundled sample's config and feeds, with its subscribers imported."""
    monkeypatch.delenv("DIGEST_DATABASE_URL", raising=False)
    shutil.copy(ROOT / "config.toml", tmp_path / "config.toml")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    config = tmp_path / "config.toml"
    imported = CliRunner().invoke(
        cli, ["subscribers", "import", "--config", str(config), str(tmp_path / "examples" / "subscribers.csv")]
    )
    assert imported.exit_code == 0, imported.output
    return config


@pytest.fixture
def serve(sample: Path) -> Iterator[Callable[[], Live]]:
    stack: list[Any] = []

    def start() -> Live:
        settings = load(sample)
        store = Store.open(settings.database_url)
        server = serve_app(create_app(settings, store, Signer(SECRET)))
        base = server.__enter__()
        stack.append((server, store))
        return Live(sample, store, base)

    yield start
    for server, store in reversed(stack):
        server.__exit__(None, None, None)
        store.close()


def local(link: str, live: Live) -> str:
    """The emailed link (on the public base_url) pointed at the app served on loopback."""
    parts = urlsplit(link)
    return f"{live.base}{parts.path}?{parts.query}"


def confirm_link(message: EmailMessage) -> str:
    text = message.get_body(("plain",))
    assert text is not None
    (link,) = re.findall(r"https://\S+/confirm\?t=\S+", text.get_content())
    return link


def sign_up_in_the_browser(page: Page, live: Live) -> None:
    page.goto(f"{live.base}/subscribe?source=homepage-box")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE, f"the sign-up page is {width} px wide on a {PHONE} px phone"
    page.get_by_label("Email address").fill(READER)
    page.get_by_label("Name (optional)").fill("Nia Reader")
    for section in CHOSEN:
        page.get_by_label(section, exact=True).check()
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator("h1")).to_have_text("Check your inbox")
    assert live.store.subscribers.by_email(READER) is None  # pending: not a subscriber yet


def confirm_in_the_browser(page: Page, live: Live, link: str) -> None:
    page.goto(local(link, live))
    expect(page.locator("h1")).to_have_text("Confirm your subscription")
    assert live.store.subscribers.by_email(READER) is None  # opening the link changed nothing
    page.get_by_role("button", name="Yes, subscribe me").click()
    expect(page.locator("h1")).to_have_text("You're in")
    found = live.store.subscribers.by_email(READER)
    assert found is not None and found.status == "active" and found.sections == tuple(CHOSEN)
    assert found.consent is not None and found.consent.source == "homepage-box"
    assert found.consent.user_agent  # the browser's, trimmed


def sections_in(message: EmailMessage) -> list[str]:
    """The sections an issue carries: its lead's and its section headings, from the text part."""
    part = message.get_body(("plain",))
    assert part is not None
    text = part.get_content().replace("\r\n", "\n")
    headings = re.findall(r"(?m)^== (.+) ==$", text)
    lead = re.search(r"View in your browser: \S+\n\n([A-Z][A-Z -]+)\n", text)
    return sorted({*headings, *([lead.group(1).title()] if lead else [])})


@pytest.mark.browser
def test_a_reader_signs_up_confirms_and_gets_the_next_issue_through_the_outbox(
    page: Page, serve: Callable[[], Live]
) -> None:
    live = serve()
    sign_up_in_the_browser(page, live)
    outbox = live.config.parent / ".digest" / "outbox"
    (eml,) = (outbox / "signups").glob("*.eml")
    mail = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert isinstance(mail, EmailMessage)
    assert mail["To"] == f"Nia Reader <{READER}>"
    confirm_in_the_browser(page, live, confirm_link(mail))

    live.send()
    subscriber = live.store.subscribers.by_email(READER)
    assert subscriber is not None
    (copy,) = (outbox / KEY).glob(f"*-{subscriber.id}.eml")
    issue = message_from_bytes(copy.read_bytes(), policy=policy.default)
    assert isinstance(issue, EmailMessage)
    got = sections_in(issue)
    assert got and set(got) <= set(CHOSEN), got
    everyone = live.store.subscribers.by_email("ana.lima@example.net")  # imported, every section
    assert everyone is not None
    (full,) = (outbox / KEY).glob(f"*-{everyone.id}.eml")
    whole = message_from_bytes(full.read_bytes(), policy=policy.default)
    assert isinstance(whole, EmailMessage)
    assert set(sections_in(whole)) - set(CHOSEN), "the sample issue should have sections beyond the chosen ones"
    assert got == sorted(set(sections_in(whole)) & set(CHOSEN))


@pytest.mark.browser
def test_the_same_flow_through_smtp_to_aiosmtpd(page: Page, sample: Path, serve: Callable[[], Live]) -> None:
    recorder = Recorder()
    server = _Controller(recorder, hostname="127.0.0.1", port=0)
    server.start()
    try:
        with sample.open("a", encoding="utf-8") as config:
            config.write(
                f'\n[delivery]\ntransport = "smtp"\n\n[delivery.smtp]\nport = {server.port}\nsecurity = "none"\n'
            )
        live = serve()
        sign_up_in_the_browser(page, live)
        (received,) = recorder.messages
        assert received.rcpt_tos == [READER]
        confirm_in_the_browser(page, live, confirm_link(received.message))

        live.send()
        mine = [m for m in recorder.messages if m.rcpt_tos == [READER]]
        assert len(mine) == 2  # the confirmation, then the issue
        got = sections_in(mine[1].message)
        assert got and set(got) <= set(CHOSEN), got
        assert len(recorder.messages) > 2  # the imported subscribers got theirs too
    finally:
        server.stop()
