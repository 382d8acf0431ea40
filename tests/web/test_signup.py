"""Readers signing themselves up (``/subscribe``, ``/confirm``): double opt-in, on SQLite and on
PostgreSQL. What a reader, an abuser and a mail scanner can do, and what each leaves behind: the
mails in the outbox, the pending sign-ups, the subscribers and their consent records."""

from __future__ import annotations

import csv
import io
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import feedparser
import pytest
from click.testing import CliRunner
from itsdangerous import TimestampSigner
from starlette.testclient import TestClient

from digest.cli import cli
from digest.config import Settings, load
from digest.delivery.tokens import Signer
from digest.delivery.variants import stored_variant
from digest.models import SubscriberStatus
from digest.store import NewSubscriber, Store
from digest.web.app import create_app
from factories import settings as make_settings

ROOT = Path(__file__).resolve().parents[2]
SECRET = "signup-test-secret-long-enough-to-sign-links"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
SECTIONS = ["Asia-Pacific", "Military Industrial Complex"]
START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@dataclass
class Clock:
    """The app's idea of now (the web app's ``clock``), moved by the tests."""

    now: datetime = START

    def __call__(self) -> float:
        return self.now.timestamp()


@dataclass
class App:
    settings: Settings
    store: Store
    signer: Signer
    client: TestClient
    clock: Clock
    clients: list[TestClient] = field(default_factory=list)

    @property
    def outbox(self) -> Path:
        return self.settings.outbox_dir / "signups"

    def mails(self, email: str | None = None) -> list[EmailMessage]:
        found = []
        for path in sorted(self.outbox.glob("*.eml")) if self.outbox.is_dir() else []:
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            assert isinstance(message, EmailMessage)
            if email is None or message["To"].addresses[0].addr_spec.casefold() == email.casefold():
                found.append(message)
        return found

    def post(self, email: str, **fields: Any) -> Any:
        data = {"email": email, **fields}
        return self.client.post("/subscribe", data=data, headers=FORM)

    def post_json(self, body: Any, **headers: str) -> Any:
        return self.client.post("/subscribe", json=body, headers=headers)

    def everyone(self) -> dict[str, tuple[str, tuple[str, ...], str]]:
        return {s.email: (s.status, s.sections, s.name) for s in self.store.subscribers.every()}

    def status(self, email: str) -> str | None:
        found = self.store.subscribers.by_email(email)
        return found.status if found else None


def link_in(message: EmailMessage) -> str:
    """The token of the confirmation link in a mail's text part (the HTML part has the same)."""
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    links = re.findall(r"https://news\.example\.org/confirm\?t=\S+", text.get_content())
    assert len(links) == 1, text.get_content()
    assert links[0].replace("&", "&amp;") in html.get_content() or links[0] in html.get_content()
    return parse_qs(urlsplit(links[0]).query)["t"][0]


def signup_settings(tmp_path: Path, **signup: Any) -> Settings:
    return make_settings(
        tmp_path,
        signup={"per_ip": "1000/hour", "per_address": "100/hour", **signup},
        web={"allowed_origins": ["https://www.example.org"]},
    )


@pytest.fixture
def app_factory(tmp_path: Path, database_url: str) -> Iterator[Callable[..., App]]:
    stores: list[Store] = []
    clients: list[TestClient] = []

    def make(**signup: Any) -> App:
        settings = signup_settings(tmp_path, **signup)
        store = Store.open(database_url)
        stores.append(store)
        signer = Signer(SECRET)
        clock = Clock()
        client = TestClient(create_app(settings, store, signer, clock=clock))
        client.__enter__()
        clients.append(client)
        return App(settings, store, signer, client, clock)

    yield make
    for client in clients:
        client.__exit__(None, None, None)
    for store in stores:
        store.close()


@pytest.fixture
def app(app_factory: Callable[..., App]) -> App:
    return app_factory()


def sign_up_and_confirm(app: App, email: str, **fields: Any) -> None:
    assert app.post(email, **fields).status_code == 200
    token = link_in(app.mails(email)[-1])
    assert app.client.post(f"/confirm?t={token}").status_code == 200


# --- the page, the post, the mail ------------------------------------------------------------------


def test_the_sign_up_page_asks_for_email_name_and_sections(app: App) -> None:
    page = app.client.get("/subscribe?source=homepage-box")
    assert page.status_code == 200
    body = page.text
    assert 'name="email" type="email"' in body and 'autocomplete="email"' in body and "required" in body
    assert '<label for="email">Email address</label>' in body
    assert 'name="name"' in body
    assert re.findall(r'name="section" value="([^"]*)"', body) == SECTIONS
    assert 'name="source" value="homepage-box"' in body
    assert 'class="hp" aria-hidden="true"' in body and 'tabindex="-1"' in body  # the honeypot, hidden


def test_a_sign_up_mails_a_link_and_subscribes_nobody_until_it_is_used(app: App) -> None:
    answer = app.post("Ana.Lima@Example.net", name="Ana Lima", section="Asia-Pacific", source="homepage-box")
    assert answer.status_code == 200
    assert "Check your inbox" in answer.text
    assert app.everyone() == {}  # pending: on no list that picks recipients
    assert app.store.subscribers.counts() == {}
    (mail,) = app.mails()
    assert mail["Subject"] == "Please confirm your subscription to Statecraft Weekly"
    assert mail["To"] == "Ana Lima <Ana.Lima@example.net>"
    assert "List-Unsubscribe" not in mail  # nobody to unsubscribe yet
    html_part = mail.get_body(("html",))
    assert html_part is not None and 'style="' in html_part.get_content()  # inlined like an issue
    token = link_in(mail)

    opened = app.client.get(f"/confirm?t={token}")  # a mail scanner, or the reader
    assert opened.status_code == 200
    assert "Yes, subscribe me" in opened.text and "A•••a@example.net" in opened.text
    assert app.everyone() == {}

    done = app.client.post(f"/confirm?t={token}")
    assert done.status_code == 200 and "You're in" in done.text
    assert app.everyone() == {"Ana.Lima@example.net": ("active", ("Asia-Pacific",), "Ana Lima")}


def test_a_json_post_gets_202_pending_and_the_same_mail(app: App) -> None:
    answer = app.post_json({"email": "ben@example.org", "sections": ["Military Industrial Complex"], "source": "app"})
    assert answer.status_code == 202
    assert answer.json() == {"status": "pending"}
    (mail,) = app.mails("ben@example.org")
    app.client.post(f"/confirm?t={link_in(mail)}")
    assert app.everyone() == {"ben@example.org": ("active", ("Military Industrial Complex",), "")}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not an address"}, "email"),
        ({"email": "a@example.org", "name": "Eve\r\nBcc: x@evil.example"}, "name"),
        ({"email": "a@example.org", "sections": ["Sports"]}, "sections"),
    ],
)
def test_a_bad_field_is_named_and_nothing_is_recorded(app: App, body: dict[str, Any], field: str) -> None:
    answer = app.post_json(body)
    assert answer.status_code == 400
    assert answer.json()["field"] == field
    form = app.post(body["email"], name=body.get("name", ""), section=body.get("sections", []))
    assert form.status_code == 400
    assert 'role="alert"' in form.text
    assert app.mails() == [] and app.everyone() == {}
    assert app.store.signups.by_email("a@example.org") is None


# --- a scanner's GET, forged, altered, expired links ------------------------------------------------


def test_a_prefetch_get_confirms_nothing(app: App) -> None:
    app.post("ana@example.net")
    token = link_in(app.mails()[0])
    for _ in range(3):
        assert app.client.get(f"/confirm?t={token}").status_code == 200
        assert app.client.head(f"/confirm?t={token}").status_code == 200
    assert app.everyone() == {}
    pending = app.store.signups.by_email("ana@example.net")
    assert pending is not None and pending.confirmed_at is None


def _expired(signer: Signer, nonce: str, monkeypatch: pytest.MonkeyPatch, days: int) -> str:
    """A confirmation token signed ``days`` ago, as a reader finds it in an old mail."""
    with monkeypatch.context() as m:
        m.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - days * 86400)
        return signer.confirm_token(nonce)


def test_forged_altered_and_expired_links_change_nothing(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    app.store.subscribers.merge([NewSubscriber("gone@example.org", "Gone")])
    app.store.subscribers.set_status("gone@example.org", SubscriberStatus.UNSUBSCRIBED)
    app.post("gone@example.org", name="Someone Else")
    token = link_in(app.mails()[0])
    pending = app.store.signups.by_email("gone@example.org")
    assert pending is not None
    forged = Signer("another-secret-that-is-long-enough-to-sign").confirm_token(pending.nonce)
    altered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    subscriber_token = app.signer.token(1)  # an unsubscribe link's token is no confirmation
    expired = _expired(app.signer, pending.nonce, monkeypatch, days=8)
    before = app.everyone()
    for bad, status in ((forged, 400), (altered, 400), (subscriber_token, 400), (expired, 410), ("", 400)):
        for method in (app.client.get, app.client.post):
            answer = method(f"/confirm?t={bad}")
            assert answer.status_code == status, (bad, method)
    assert app.everyone() == before == {"gone@example.org": ("unsubscribed", (), "Gone")}
    still = app.store.signups.by_email("gone@example.org")
    assert still is not None and still.confirmed_at is None
    fresh = _expired(app.signer, pending.nonce, monkeypatch, days=6)  # within the 7 days: works
    assert app.client.post(f"/confirm?t={fresh}").status_code == 200
    assert app.status("gone@example.org") == "active"


def test_confirming_twice_changes_nothing_more(app: App) -> None:
    sign_up_and_confirm(app, "ana@example.net", section="Asia-Pacific")
    token = link_in(app.mails()[0])
    first = app.store.subscribers.by_email("ana@example.net")
    app.clock.now += timedelta(hours=1)
    again = app.client.post(f"/confirm?t={token}")
    assert again.status_code == 200 and "already confirmed" in again.text
    assert app.store.subscribers.by_email("ana@example.net") == first
    # unsubscribed afterwards, the old link does not bring the address back
    app.store.subscribers.set_status("ana@example.net", SubscriberStatus.UNSUBSCRIBED)
    app.client.post(f"/confirm?t={token}")
    assert app.status("ana@example.net") == "unsubscribed"


# --- the same answer, whatever the address --------------------------------------------------------


def test_the_answer_is_the_same_for_new_pending_active_and_suppressed_addresses(app: App) -> None:
    app.store.subscribers.merge([NewSubscriber("active@example.org"), NewSubscriber("bounced@example.org")])
    app.store.subscribers.set_status("bounced@example.org", SubscriberStatus.BOUNCED)
    app.post("pending@example.org")
    app.clock.now += timedelta(minutes=11)  # past the mail interval: every state is mailed alike

    def answers(email: str) -> tuple[Any, ...]:
        form = app.post(email, source="box")
        data = app.post_json({"email": email, "source": "box"})
        page = form.text.replace(email, "EMAIL")
        headers = {k: v for k, v in form.headers.items() if k != "content-length"}  # the address is in the page
        return form.status_code, page, headers, data.status_code, data.content, dict(data.headers)

    seen = {state: answers(f"{state}@example.org") for state in ("new", "pending", "active", "bounced")}
    assert len(set(map(repr, seen.values()))) == 1, seen
    assert seen["new"][3] == 202
    assert app.status("bounced@example.org") == "bounced"


def test_a_suppressed_address_that_signs_up_stays_suppressed_until_it_confirms(app: App) -> None:
    for email, status in (
        ("u@example.org", "unsubscribed"),
        ("b@example.org", "bounced"),
        ("c@example.org", "complained"),
    ):
        app.store.subscribers.merge([NewSubscriber(email, "Old Name")])
        app.store.subscribers.set_status(email, SubscriberStatus(status))
        app.post(email, section="Asia-Pacific")
        assert app.status(email) == status  # signing up alone changes nothing
        app.clock.now += timedelta(days=1)
        assert app.status(email) == status
        app.client.post(f"/confirm?t={link_in(app.mails(email)[-1])}")
        found = app.store.subscribers.by_email(email)
        assert found is not None
        assert (found.status, found.sections, found.name) == ("active", ("Asia-Pacific",), "Old Name")


# --- abuse limits ---------------------------------------------------------------------------------


def test_one_confirmation_mail_per_address_in_ten_minutes_whatever_is_posted(app: App) -> None:
    for i in range(4):
        assert app.post("Ana@Example.net" if i % 2 else "ana@example.net", name=f"Ana {i}").status_code == 200
    assert len(app.mails("ana@example.net")) == 1
    app.clock.now += timedelta(minutes=9)
    app.post_json({"email": "ana@example.net"})
    assert len(app.mails("ana@example.net")) == 1
    app.clock.now += timedelta(minutes=2)
    app.post("ana@example.net")
    first, second = app.mails("ana@example.net")
    for mail in (first, second):  # both links work: the later post's choice is what is confirmed
        assert app.client.get(f"/confirm?t={link_in(mail)}").status_code == 200


def test_the_per_ip_limit_holds(app_factory: Callable[..., App]) -> None:
    app = app_factory(per_ip="3/hour")
    codes = [app.post(f"r{i}@example.org").status_code for i in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    refused = app.post_json({"email": "r9@example.org"})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert len(app.mails()) == 3


def test_the_per_address_limit_holds(app_factory: Callable[..., App]) -> None:
    app = app_factory(per_address="2/hour")
    codes = [app.post("same@example.org").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert app.post("other@example.org").status_code == 200


def test_the_honeypot_gets_the_usual_answer_and_nothing_happens(app: App) -> None:
    caught = app.post("bot@example.org", website="http://spam.example")
    normal = app.post("person@example.org")
    assert caught.status_code == normal.status_code == 200
    assert caught.text.replace("bot@", "X@") == normal.text.replace("person@", "X@")
    assert app.post_json({"email": "bot2@example.org", "website": "x"}).status_code == 202
    assert [m["To"] for m in app.mails()] == ["person@example.org"]
    assert app.store.signups.by_email("bot@example.org") is None


def test_a_body_past_the_cap_is_refused_unread(app: App) -> None:
    big = app.client.post("/subscribe", content=b"email=a%40example.org&name=" + b"x" * 9000, headers=FORM)
    assert big.status_code == 413
    big_json = app.client.post(
        "/subscribe",
        content=b'{"email": "a@example.org", "name": "' + b"x" * 9000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert big_json.status_code == 413
    assert app.mails() == []


def test_cors_is_allowed_only_from_the_configured_origins(app: App) -> None:
    def preflight(origin: str) -> Any:
        return app.client.options(
            "/subscribe",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )

    ok = preflight("https://www.example.org")
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://www.example.org"
    evil = preflight("https://evil.example")
    assert "access-control-allow-origin" not in evil.headers
    posted = app.post_json({"email": "a@example.org"}, Origin="https://www.example.org")
    assert posted.headers["access-control-allow-origin"] == "https://www.example.org"
    assert (
        "access-control-allow-origin"
        not in app.post_json({"email": "b@example.org"}, Origin="https://evil.example").headers
    )


# --- consent, welcome, pruning --------------------------------------------------------------------


def test_the_consent_record_keeps_a_keyed_ip_hash_and_a_trimmed_user_agent(app: App, tmp_path: Path) -> None:
    agent = "Mozilla/5.0 " + "x" * 400
    app.client.post(
        "/subscribe", data={"email": "ana@example.net", "source": "homepage-box"}, headers={**FORM, "User-Agent": agent}
    )
    asked = app.clock.now
    app.clock.now += timedelta(hours=2)
    app.client.post(f"/confirm?t={link_in(app.mails()[0])}")
    found = app.store.subscribers.by_email("ana@example.net")
    assert found is not None and found.consent is not None
    consent = found.consent
    assert (consent.signed_up_at, consent.confirmed_at, consent.source) == (asked, app.clock.now, "homepage-box")
    assert consent.user_agent == agent[:200]
    assert consent.ip_hash == app.signer.keyed_hash("testclient") and "testclient" not in consent.ip_hash
    assert len(consent.ip_hash) == 64

    config = tmp_path / "show.toml"
    _write_config(config, app)
    shown = CliRunner().invoke(cli, ["subscribers", "show", "--config", str(config), "ana@example.net"])
    assert shown.exit_code == 0, shown.output
    assert f"signed up: {asked.isoformat()}" in shown.output
    assert "source: homepage-box" in shown.output and f"ip hash: {consent.ip_hash}" in shown.output
    exported = CliRunner().invoke(cli, ["subscribers", "export", "--config", str(config)])
    (row,) = csv.DictReader(io.StringIO(exported.output))
    assert (row["source"], row["signed_up_at"], row["ip_hash"]) == ("homepage-box", asked.isoformat(), consent.ip_hash)
    assert row["confirmed_at"] == app.clock.now.isoformat()
    missing = CliRunner().invoke(cli, ["subscribers", "show", "--config", str(config), "nobody@example.org"])
    assert missing.exit_code == 1 and "no such subscriber or sign-up" in missing.output


def _write_config(path: Path, app: App) -> None:
    url = app.store.engine.url.render_as_string(hide_password=False)
    path.write_text(
        "\n".join(
            [
                "[newsletter]",
                'name = "T"',
                'from = "T <t@example.org>"',
                'base_url = "https://news.example.org"',
                'postal_address = "1 Main St"',
                "[[feeds]]",
                'url = "feed.xml"',
                "[[sections]]",
                'name = "Asia-Pacific"',
                "[store]",
                f"url = {url!r}".replace("'", '"'),
            ]
        ),
        encoding="utf-8",
    )


def test_pending_sign_ups_are_deleted_after_the_ttl(app_factory: Callable[..., App]) -> None:
    app = app_factory(confirm_ttl="2d")
    app.post("old@example.org")
    sign_up_and_confirm(app, "kept@example.org")
    app.clock.now += timedelta(days=1)
    app.post("recent@example.org")
    app.clock.now += timedelta(days=1, hours=1)
    from digest.delivery.signup import SignupDesk

    desk = SignupDesk(app.settings, app.store, app.signer, clock=lambda: app.clock.now)
    assert desk.prune() == 2  # old's link and kept's used link have both expired
    assert app.store.signups.by_email("old@example.org") is None
    assert app.store.signups.by_email("recent@example.org") is not None
    assert app.status("kept@example.org") == "active"


@pytest.fixture
def sample(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bundled sample's config on this test's database, its week 2026-W48 already sent."""
    monkeypatch.setenv("DIGEST_DATABASE_URL", database_url)
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    shutil.copy(ROOT / "config.toml", tmp_path / "config.toml")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    sent = CliRunner().invoke(cli, ["send", "--config", str(tmp_path / "config.toml"), "--now", "2026-11-27T09:00"])
    assert sent.exit_code == 0, sent.output
    return tmp_path / "config.toml"


@pytest.mark.parametrize("welcome", ["latest-issue", "none"])
def test_the_welcome_copy_is_the_latest_issue_once_or_nothing(sample: Path, welcome: str) -> None:
    settings = load(sample)
    settings = settings.model_copy(update={"signup": settings.signup.model_copy(update={"welcome": welcome})})
    store = Store.open(settings.database_url)
    signer = Signer(SECRET)
    try:
        with TestClient(create_app(settings, store, signer)) as client:
            client.post("/subscribe", data={"email": "new@example.org", "section": "Europe"}, headers=FORM)
            (path,) = (settings.outbox_dir / "signups").glob("*.eml")
            mail = message_from_bytes(path.read_bytes(), policy=policy.default)
            assert isinstance(mail, EmailMessage)
            token = link_in_sample(mail)
            page = client.post(f"/confirm?t={token}")
            assert 'href="issues/2026-W48"' in page.text  # "you're in" links to the latest issue
            client.post(f"/confirm?t={token}")  # twice: still one copy
        subscriber = store.subscribers.by_email("new@example.org")
        assert subscriber is not None
        copies = list((settings.outbox_dir / "2026-W48").glob(f"*-{subscriber.id}.eml"))
        if welcome == "none":
            assert copies == []
            return
        (copy,) = copies
        issue = message_from_bytes(copy.read_bytes(), policy=policy.default)
        body = issue.get_body(("html",))
        assert body is not None
        heading = r'<h2 class="section-name"[^>]*>([^<]+)</h2>'
        whole = re.findall(heading, stored_variant(store, "2026-W48").html)
        assert "Europe" in whole and len(whole) > 1, "the sample issue should have Europe and more"
        assert re.findall(heading, body.get_content()) == ["Europe"]
        assert "List-Unsubscribe" in issue
        assert store.ledger.counts("2026-W48").get("submitted", 0) >= 1
    finally:
        store.close()


def link_in_sample(message: EmailMessage) -> str:
    text = message.get_body(("plain",))
    assert text is not None
    (link,) = re.findall(r"https://\S+/confirm\?t=\S+", text.get_content())
    return parse_qs(urlsplit(link).query)["t"][0]


# --- the archive's feed ---------------------------------------------------------------------------


def test_the_atom_feed_of_sent_issues_is_valid(app: App) -> None:
    empty = app.client.get("/issues/feed.xml")
    assert empty.status_code == 200 and empty.headers["content-type"].startswith("application/atom+xml")
    assert not feedparser.parse(empty.content).bozo
    for key, end, status in (
        ("2026-W47", "2026-11-20", "sent"),
        ("2026-W48", "2026-11-27", "sent"),
        ("2026-W49", "2026-12-04", "draft"),
    ):
        moment = datetime.fromisoformat(end + "T14:00:00+00:00")
        app.store.issues.record(
            key,
            subject=f"Statecraft Weekly: {key} <&> news",
            window=(moment - timedelta(days=7), moment),
            article_count=4,
            summary={},
            rendered={"all": ("s", "<p>h</p>", "t")},
            articles=[],
            status=status,
        )
    parsed = feedparser.parse(app.client.get("/issues/feed.xml").content)
    assert not parsed.bozo, parsed.bozo_exception
    assert parsed.feed.title == "Statecraft Weekly"
    assert [e.title for e in parsed.entries] == [
        "Statecraft Weekly: 2026-W48 <&> news",
        "Statecraft Weekly: 2026-W47 <&> news",
    ]
    assert parsed.entries[0].link == "https://news.example.org/issues/2026-W48"
    assert "Forwarded this?" in app.client.get("/issues/").text
