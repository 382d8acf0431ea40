"""The subscriber's side (``digest.web``): one-click unsubscribe as mailbox providers send it,
the confirmation and preferences pages, SendGrid's signed Event Webhook, the public archive, the
security headers, and 200 one-click POSTs at once against a real ``digest serve``, on SQLite and
on PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

import factories
from digest.config import Settings, load
from digest.delivery.tokens import Signer
from digest.errors import ConfigError, DigestError
from digest.store import NewSubscriber, Store
from digest.web.app import create_app, serve
from digest.web.pages import mask_email
from digest.web.security import ARCHIVE_CSP, CSP
from digest.web.webhooks import WEBHOOK_MAX_AGE, load_webhook_key, verify_signature
from factories import NAME, NEWSLETTER, copy_sample
from factories import settings as make_settings

SECRET = "web-test-secret-long-enough-to-sign-links"
ONE_CLICK = b"List-Unsubscribe=One-Click"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
SECTIONS = ["Asia-Pacific", "Military Industrial Complex", "Also this week"]
PEOPLE = {
    "ana": NewSubscriber("ana.lima@example.net", "Ana Lima"),
    "ben": NewSubscriber("Ben.Okafor@Example.org", "Ben Okafor", ("Asia-Pacific",)),
    "chloe": NewSubscriber("chloe@example.com", "Chloé Martin"),
    "dev": NewSubscriber("dev.patel@example.net", "Dev Patel"),
    "eve": NewSubscriber("eve@example.org", "Eve"),
}


# --- fixtures -------------------------------------------------------------------------------------


@dataclass
class Site:
    settings: Settings
    store: Store
    signer: Signer
    client: TestClient
    ids: dict[str, int]

    def token(self, who: str) -> str:
        return self.signer.token(self.ids[who])

    def status(self, who: str) -> str:
        found = self.store.subscribers.by_id(self.ids[who])
        assert found is not None
        return found.status

    def sections(self, who: str) -> tuple[str, ...]:
        found = self.store.subscribers.by_id(self.ids[who])
        assert found is not None
        return found.sections

    def everyone(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """Each subscriber's (status, sections): compared before and after to show nothing changed."""
        return {s.email: (s.status, s.sections) for s in self.store.subscribers.every()}


def web_settings(tmp_path: Path, *, name: str = NAME, webhook_key: str = "") -> Settings:
    return make_settings(
        tmp_path,
        newsletter={**NEWSLETTER, "name": name},
        issue={"min_items": 2, "catch_all": "Also this week"},
        web={"sendgrid_webhook_key": webhook_key},
    )


@pytest.fixture
def store(store: Store) -> Store:
    """The shared empty store with PEOPLE subscribed."""
    store.subscribers.merge(PEOPLE.values())
    return store


@pytest.fixture
def site_factory(tmp_path: Path, store: Store) -> Iterator[Callable[..., Site]]:
    clients: list[TestClient] = []

    def make(*, signer: Signer | None = None, webhook_key: str = "", name: str = NAME, **app: Any) -> Site:
        settings = web_settings(tmp_path, name=name, webhook_key=webhook_key)
        signer = signer or Signer(SECRET)
        client = TestClient(create_app(settings, store, signer, **app))
        client.__enter__()
        clients.append(client)
        ids = {}
        for who, person in PEOPLE.items():
            found = store.subscribers.by_email(person.email)
            assert found is not None
            ids[who] = found.id
        return Site(settings, store, signer, client, ids)

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def site(site_factory: Callable[..., Site]) -> Site:
    return site_factory()


def multipart(fields: dict[str, str], boundary: str = "----digest-test-boundary") -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body written out by hand, the way some providers send one-click."""
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def checkboxes(page: str) -> dict[str, bool]:
    """Section checkbox -> ticked, as the preferences page shows them."""
    found = re.findall(r'<input type="checkbox" name="section" value="([^"]*)"( checked)?>', page)
    return {value: bool(checked) for value, checked in found}


# --- one-click unsubscribe ------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["form-urlencoded", "multipart"])
def test_one_click_post_as_mailbox_providers_send_it_unsubscribes_at_once(site: Site, encoding: str) -> None:
    if encoding == "multipart":
        body, headers = multipart({"List-Unsubscribe": "One-Click"})
    else:
        body, headers = ONE_CLICK, FORM
    before = site.everyone()
    r = site.client.post(f"/unsubscribe?t={site.token('ben')}", content=body, headers=headers)
    assert r.status_code == 200
    assert "You are unsubscribed" in r.text
    assert site.status("ben") == "unsubscribed"
    after = site.everyone()
    assert {k: v for k, v in after.items() if k != PEOPLE["ben"].email} == {
        k: v for k, v in before.items() if k != PEOPLE["ben"].email
    }
    again = site.client.post(f"/unsubscribe?t={site.token('ben')}", content=body, headers=headers)
    assert again.status_code == 200
    assert site.status("ben") == "unsubscribed"


def test_the_confirmation_button_unsubscribes_and_links_to_preferences(site: Site) -> None:
    token = site.token("chloe")
    r = site.client.post(f"/unsubscribe?t={token}", content=b"confirm=1", headers=FORM)
    assert r.status_code == 200
    assert site.status("chloe") == "unsubscribed"
    assert f'href="preferences?t={token}"' in r.text
    assert "resubscribe" not in r.text.lower()


def test_one_click_never_weakens_a_bounce_or_a_complaint(site: Site) -> None:
    site.store.subscribers.suppress(site.ids["dev"], "complained")
    r = site.client.post(f"/unsubscribe?t={site.token('dev')}", content=ONE_CLICK, headers=FORM)
    assert r.status_code == 200
    assert site.status("dev") == "complained"


def test_get_shows_the_button_and_changes_nothing(site: Site) -> None:
    before = site.everyone()
    token = site.token("ana")
    for _ in range(3):  # a mail scanner following the link, more than once
        r = site.client.get(f"/unsubscribe?t={token}")
        assert r.status_code == 200
    assert site.everyone() == before
    page = r.text
    assert re.search(rf'<form method="post" action="\?t={re.escape(token)}">', page)
    assert '<button class="button danger" type="submit">Unsubscribe</button>' in page
    assert "a•••a@example.net" in page and "ana.lima@example.net" not in page
    assert "Statecraft Weekly" in page
    assert "<script" not in page.lower()
    assert r.headers["cache-control"] == "no-store"
    assert "noindex" in r.headers["x-robots-tag"]


def test_head_changes_nothing_either(site: Site) -> None:
    before = site.everyone()
    assert site.client.head(f"/unsubscribe?t={site.token('ana')}").status_code == 200
    assert site.everyone() == before


def test_an_already_unsubscribed_address_is_told_so(site: Site) -> None:
    site.store.subscribers.suppress(site.ids["eve"], "unsubscribed")
    r = site.client.get(f"/unsubscribe?t={site.token('eve')}")
    assert r.status_code == 200
    assert "already unsubscribed" in r.text and "<form" not in r.text


@pytest.mark.parametrize("path", ["/unsubscribe", "/preferences"])
def test_links_of_preview_copies_explain_themselves_and_change_nothing(site: Site, path: str) -> None:
    before = site.everyone()
    r = site.client.get(path)
    assert r.status_code == 200
    assert "preview" in r.text and "<form" not in r.text
    assert site.everyone() == before


@pytest.mark.parametrize("path", ["/unsubscribe", "/preferences", "/unsubscribe?t=", "/preferences?t=%20"])
def test_a_post_without_a_token_is_refused(site: Site, path: str) -> None:
    before = site.everyone()
    r = site.client.post(path, content=ONE_CLICK, headers=FORM)
    assert r.status_code == 400
    assert "incomplete" in r.text
    assert site.everyone() == before


def _altered(site: Site) -> str:
    """Ben's valid signature on a payload changed to name Ana."""
    ben_payload, _, ben_signature = site.token("ben").partition(".")
    ana_payload, _, _ = site.token("ana").partition(".")
    assert ben_payload != ana_payload
    return f"{ana_payload}.{ben_signature}"


BAD_TOKENS: dict[str, Callable[[Site], str]] = {
    "forged": lambda site: Signer("someone-elses-secret-long-enough-to-sign-links").token(site.ids["ana"]),
    "altered id": _altered,
    "truncated": lambda site: site.token("ana")[:-3],
    "garbage": lambda site: "not-a-token",
    "not a number": lambda site: Signer(SECRET)._serializer.dumps("ana"),
    # Signed by us, but no id we could have signed: each once acted as someone or gave a 500.
    "true": lambda site: Signer(SECRET)._serializer.dumps(True),
    "2**70": lambda site: Signer(SECRET)._serializer.dumps(2**70),
    "past INTEGER": lambda site: Signer(SECRET)._serializer.dumps(2**31),
    "zero": lambda site: Signer(SECRET)._serializer.dumps(0),
    "negative": lambda site: Signer(SECRET)._serializer.dumps(-site.ids["ana"]),
    "float": lambda site: Signer(SECRET)._serializer.dumps(float(site.ids["ana"])),
    "markup": lambda site: "<script>alert(1)</script>",
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
def test_a_forged_altered_or_garbage_token_is_a_plain_400_and_changes_nothing(site: Site, kind: str) -> None:
    token = BAD_TOKENS[kind](site)
    before = site.everyone()
    responses = [
        site.client.get("/unsubscribe", params={"t": token}),
        site.client.post("/unsubscribe", params={"t": token}, content=ONE_CLICK, headers=FORM),
        site.client.get("/preferences", params={"t": token}),
        site.client.post("/preferences", params={"t": token}, content=b"section=Asia-Pacific", headers=FORM),
    ]
    for r in responses:
        assert r.status_code == 400, (r.request.method, r.request.url.path)
        assert "This link is not valid" in r.text
        assert "Traceback" not in r.text and "<script>" not in r.text
    assert site.everyone() == before


def test_a_token_signed_with_the_previous_secret_still_works(
    site_factory: Callable[..., Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET", "the-new-secret-long-enough-to-sign-links")
    monkeypatch.setenv("DIGEST_SECRET_PREVIOUS", SECRET)
    site = site_factory(signer=Signer.from_env())
    old_token = Signer(SECRET).token(site.ids["ben"])  # in an issue sent before the rotation
    assert old_token != site.token("ben")
    assert site.client.get(f"/preferences?t={old_token}").status_code == 200
    r = site.client.post(f"/unsubscribe?t={old_token}", content=ONE_CLICK, headers=FORM)
    assert r.status_code == 200
    assert site.status("ben") == "unsubscribed"
    unknown = Signer("an-older-secret-long-enough-to-sign-links").token(site.ids["ana"])
    assert site.client.post(f"/unsubscribe?t={unknown}", content=ONE_CLICK, headers=FORM).status_code == 400


def test_a_deleted_subscriber_gets_a_plain_page_and_nothing_is_created(site: Site) -> None:
    token = site.token("eve")
    assert site.store.subscribers.forget(PEOPLE["eve"].email)
    count = len(site.everyone())
    for r in (
        site.client.get(f"/unsubscribe?t={token}"),
        site.client.post(f"/unsubscribe?t={token}", content=ONE_CLICK, headers=FORM),
        site.client.get(f"/preferences?t={token}"),
        site.client.post(f"/preferences?t={token}", content=b"section=Asia-Pacific", headers=FORM),
    ):
        assert r.status_code == 410
        assert "no longer on our list" in r.text
    assert len(site.everyone()) == count
    assert site.store.subscribers.by_email(PEOPLE["eve"].email) is None


# --- preferences ----------------------------------------------------------------------------------


def test_preferences_show_every_section_with_the_current_choice_ticked(site: Site) -> None:
    r = site.client.get(f"/preferences?t={site.token('ben')}")
    assert r.status_code == 200
    assert checkboxes(r.text) == {"Asia-Pacific": True, "Military Industrial Complex": False, "Also this week": False}
    assert "B•••r@Example.org" in r.text
    assert r.headers["cache-control"] == "no-store"
    everything = site.client.get(f"/preferences?t={site.token('ana')}")  # no choice yet: all of them
    assert checkboxes(everything.text) == dict.fromkeys(SECTIONS, True)


@pytest.mark.parametrize(
    ("ticked", "stored"),
    [
        (["Also this week", "Asia-Pacific"], ("Asia-Pacific", "Also this week")),  # kept in display order
        (["Military Industrial Complex"], ("Military Industrial Complex",)),
        (SECTIONS, ()),  # all ticked: everything, including sections added later
        ([], ()),  # none ticked: everything too
        (["asia-pacific", "Asia-Pacific"], ("Asia-Pacific",)),  # case and repeats do not matter
    ],
)
def test_saving_preferences_stores_the_choice(site: Site, ticked: list[str], stored: tuple[str, ...]) -> None:
    site.store.subscribers.set_sections(site.ids["chloe"], ["Military Industrial Complex"])
    token = site.token("chloe")
    r = site.client.post(f"/preferences?t={token}", data={"section": ticked})
    assert r.status_code == 200, r.text
    assert "Your choice is saved" in r.text
    assert site.sections("chloe") == stored
    assert site.status("chloe") == "active"
    for name in stored:
        assert f"<li>{name}</li>" in r.text
    if not stored:
        assert "every section" in r.text
    again = site.client.get(f"/preferences?t={token}")
    assert checkboxes(again.text) == {s: (s in stored or not stored) for s in SECTIONS}


def test_an_unknown_section_is_refused_and_nothing_is_saved(site: Site) -> None:
    token = site.token("ben")
    r = site.client.post(f"/preferences?t={token}", content=b"section=Asia-Pacific&section=Antarctica", headers=FORM)
    assert r.status_code == 400
    assert "nothing was saved" in r.text
    assert checkboxes(r.text)  # the form again, to choose anew
    assert site.sections("ben") == ("Asia-Pacific",)


def test_a_form_that_is_not_form_urlencoded_is_refused(site: Site) -> None:
    body, headers = multipart({"section": "Asia-Pacific"})
    r = site.client.post(f"/preferences?t={site.token('ben')}", content=body, headers=headers)
    assert r.status_code == 415
    assert site.sections("ben") == ("Asia-Pacific",)


def test_a_huge_body_is_refused_unread(site: Site) -> None:
    r = site.client.post(f"/preferences?t={site.token('ben')}", content=b"section=x&" * 10_000, headers=FORM)
    assert r.status_code == 413
    assert site.sections("ben") == ("Asia-Pacific",)


def test_preferences_of_an_unsubscribed_address_say_so(site: Site) -> None:
    site.store.subscribers.suppress(site.ids["dev"], "bounced")
    r = site.client.get(f"/preferences?t={site.token('dev')}")
    assert r.status_code == 200 and "does not subscribe it again" in r.text
    saved = site.client.post(f"/preferences?t={site.token('dev')}", data={"section": ["Asia-Pacific"]})
    assert saved.status_code == 200
    assert site.status("dev") == "bounced"


def test_pages_escape_the_newsletter_name(site_factory: Callable[..., Site]) -> None:
    site = site_factory(name='Weekly <b onmouseover="x()">&</b>')
    r = site.client.get(f"/unsubscribe?t={site.token('ana')}")
    assert "&lt;b onmouseover=&#34;x()&#34;&gt;&amp;&lt;/b&gt;" in r.text
    assert "<b onmouseover" not in r.text


# --- the SendGrid Event Webhook -------------------------------------------------------------------


@dataclass
class SendGridKeys:
    private: ec.EllipticCurvePrivateKey
    public_b64: str

    def sign(self, body: bytes, timestamp: str) -> str:
        """What SendGrid sends: base64 DER ECDSA P-256/SHA-256 over timestamp + raw body."""
        return base64.b64encode(self.private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        return {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": self.sign(body, stamp),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        }


@pytest.fixture(scope="module")
def keys() -> SendGridKeys:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return SendGridKeys(private, base64.b64encode(der).decode())


@pytest.fixture
def signed_site(site_factory: Callable[..., Site], keys: SendGridKeys) -> Site:
    return site_factory(webhook_key=keys.public_b64)


def sendgrid_events(site: Site) -> list[dict[str, Any]]:
    """A batch as SendGrid posts it: custom args copied into each event as top-level keys."""
    stamp = int(time.time())
    common = {"timestamp": stamp, "issue": "2026-W48", "sg_message_id": "abc.filter0001"}
    return [
        {**common, "email": "ben.okafor@example.org", "event": "bounce", "type": "bounce",
         "subscriber_id": str(site.ids["ben"]), "sg_event_id": "e1"},
        {**common, "email": "CHLOE@example.com", "event": "spamreport", "sg_event_id": "e2"},
        {**common, "email": "dev.patel@example.net", "event": "unsubscribe", "sg_event_id": "e3",
         "subscriber_id": str(site.ids["dev"])},
        {**common, "email": "ana.lima@example.net", "event": "delivered", "sg_event_id": "e4"},
        {**common, "email": "ana.lima@example.net", "event": "open", "sg_event_id": "e5"},
        {**common, "email": "eve@example.org", "event": "bounce", "type": "blocked", "sg_event_id": "e6"},
        {**common, "email": "nobody@example.org", "event": "bounce", "sg_event_id": "e7"},
    ]  # fmt: skip


def test_signed_events_are_applied(signed_site: Site, keys: SendGridKeys) -> None:
    site = signed_site
    body = json.dumps(sendgrid_events(site)).encode()
    r = site.client.post("/webhooks/sendgrid", content=body, headers=keys.headers(body))
    assert r.status_code == 200, r.text
    assert r.json() == {"applied": 3, "ignored": 3, "unknown": 1}
    assert site.status("ben") == "bounced"  # by subscriber_id
    assert site.status("chloe") == "complained"  # by address, whatever its case
    assert site.status("dev") == "unsubscribed"
    assert site.status("ana") == "active"  # delivered and open change nothing
    assert site.status("eve") == "active"  # a block is temporary
    again = site.client.post("/webhooks/sendgrid", content=body, headers=keys.headers(body))  # SendGrid retries
    assert again.status_code == 200
    assert (site.status("ben"), site.status("chloe"), site.status("dev")) == ("bounced", "complained", "unsubscribed")


def test_group_unsubscribe_and_drops_map_to_the_right_status(signed_site: Site, keys: SendGridKeys) -> None:
    site = signed_site
    events = [
        {"email": PEOPLE["ana"].email, "event": "group_unsubscribe", "asm_group_id": 42},
        {"email": PEOPLE["ben"].email, "event": "dropped", "reason": "Bounced Address"},
        {"email": PEOPLE["chloe"].email, "event": "dropped", "reason": "Spam Reporting Address"},
        {"email": PEOPLE["dev"].email, "event": "dropped", "reason": "Unsubscribed Address"},
        {"email": PEOPLE["eve"].email, "event": "group_resubscribe", "asm_group_id": 42},
    ]
    site.store.subscribers.suppress(site.ids["eve"], "unsubscribed")
    body = json.dumps(events).encode()
    assert site.client.post("/webhooks/sendgrid", content=body, headers=keys.headers(body)).status_code == 200
    assert [site.status(w) for w in ("ana", "ben", "chloe", "dev", "eve")] == [
        "unsubscribed", "bounced", "complained", "unsubscribed", "unsubscribed",  # never resubscribed by an event
    ]  # fmt: skip


def test_a_subscriber_id_that_names_someone_else_falls_back_to_the_address(
    signed_site: Site, keys: SendGridKeys
) -> None:
    site = signed_site
    events = [
        {"email": PEOPLE["chloe"].email, "event": "bounce", "subscriber_id": str(site.ids["ana"])},
        {"email": PEOPLE["dev"].email, "event": "bounce", "subscriber_id": "not-a-number"},
        {"email": PEOPLE["eve"].email, "event": "bounce", "subscriber_id": "99999999"},
    ]
    body = json.dumps(events).encode()
    assert site.client.post("/webhooks/sendgrid", content=body, headers=keys.headers(body)).status_code == 200
    assert [site.status(w) for w in ("ana", "chloe", "dev", "eve")] == ["active", "bounced", "bounced", "bounced"]


def _tampered(keys: SendGridKeys, body: bytes) -> tuple[bytes, dict[str, str]]:
    headers = keys.headers(body)
    return body.replace(b"delivered", b"spamreport"), headers


def _other_key(keys: SendGridKeys, body: bytes) -> tuple[bytes, dict[str, str]]:
    other = SendGridKeys(ec.generate_private_key(ec.SECP256R1()), "")
    return body, other.headers(body)


def _no_headers(keys: SendGridKeys, body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, {"Content-Type": "application/json"}


def _no_timestamp(keys: SendGridKeys, body: bytes) -> tuple[bytes, dict[str, str]]:
    headers = keys.headers(body)
    del headers["X-Twilio-Email-Event-Webhook-Timestamp"]
    return body, headers


def _other_timestamp(keys: SendGridKeys, body: bytes) -> tuple[bytes, dict[str, str]]:
    headers = keys.headers(body)
    headers["X-Twilio-Email-Event-Webhook-Timestamp"] = str(int(time.time()) + 1)
    return body, headers


def _garbage_signature(keys: SendGridKeys, body: bytes) -> tuple[bytes, dict[str, str]]:
    headers = keys.headers(body)
    headers["X-Twilio-Email-Event-Webhook-Signature"] = "!!not base64!!"
    return body, headers


def _stale(keys: SendGridKeys, body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, keys.headers(body, int(time.time()) - WEBHOOK_MAX_AGE - 3600)


def _future(keys: SendGridKeys, body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, keys.headers(body, int(time.time()) + 3600)


BAD_REQUESTS = {
    "tampered body": _tampered,
    "signed with another key": _other_key,
    "no signature headers": _no_headers,
    "no timestamp": _no_timestamp,
    "timestamp changed": _other_timestamp,
    "garbage signature": _garbage_signature,
    "signed more than a day ago": _stale,
    "signed in the future": _future,
}


@pytest.mark.parametrize("kind", list(BAD_REQUESTS))
def test_a_badly_signed_webhook_is_403_and_changes_nothing(signed_site: Site, keys: SendGridKeys, kind: str) -> None:
    site = signed_site
    events = [
        {"email": PEOPLE["ana"].email, "event": "delivered"},
        {"email": PEOPLE["ben"].email, "event": "bounce", "subscriber_id": str(site.ids["ben"])},
        {"email": PEOPLE["chloe"].email, "event": "spamreport"},
    ]
    before = site.everyone()
    body, headers = BAD_REQUESTS[kind](keys, json.dumps(events).encode())
    r = site.client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert r.status_code == 403, r.text
    assert site.everyone() == before


def test_malformed_json_is_400_once_the_signature_is_good(signed_site: Site, keys: SendGridKeys) -> None:
    before = signed_site.everyone()
    deep = b"[" * 100_000 + b"]" * 100_000
    for body in (b'[{"event": "bounce", "email": ', b'{"event": "bounce"}', b"", deep):
        r = signed_site.client.post("/webhooks/sendgrid", content=body, headers=keys.headers(body))
        assert r.status_code == 400, body[:40]
    # SendGrid's body is UTF-8 JSON; bytes that are not UTF-8 cannot be its, whoever signed them.
    latin = '[{"event": "bounce", "email": "chloé@example.com"}]'.encode("latin-1")
    assert signed_site.client.post("/webhooks/sendgrid", content=latin, headers=keys.headers(latin)).status_code == 403
    assert signed_site.everyone() == before


def test_without_a_key_the_webhook_refuses_everything_and_changes_nothing(site: Site, keys: SendGridKeys) -> None:
    """Issue 9: with the default config one unsigned POST marked a subscriber bounced."""
    before = site.everyone()
    bounce = json.dumps([{"email": PEOPLE["ana"].email, "event": "bounce", "subscriber_id": str(site.ids["ana"])}])
    for body, headers in (
        (bounce.encode(), {"Content-Type": "application/json"}),  # unsigned, as curl sends it
        (bounce.encode(), keys.headers(bounce.encode())),  # signed with a key nobody configured
        (b"not json", {}),
        (b"[]", {}),
    ):
        r = site.client.post("/webhooks/sendgrid", content=body, headers=headers)
        assert r.status_code == 403, r.text
        assert r.json() == {"error": "the SendGrid webhook is off until [web] sendgrid_webhook_key is set"}
    assert site.everyone() == before
    assert site.status("ana") == "active"


# SendGrid's own example of a signed request (sendgrid-python, test/unit/test_eventwebhook.py).
SENDGRID_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVp"
    "iglSI8eNEc6wEA3F+g=="
)
SENDGRID_SIGNATURE = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
SENDGRID_TIMESTAMP = "1600112502"
SENDGRID_PAYLOAD = (
    json.dumps(
        [
            {
                "email": "hello@world.com",
                "event": "dropped",
                "reason": "Bounced Address",
                "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
                "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
                "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
                "timestamp": 1600112492,
            }
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    + "\r\n"
).encode()


def test_sendgrids_own_signed_example_verifies(site_factory: Callable[..., Site], store: Store) -> None:
    key = load_webhook_key(SENDGRID_PUBLIC_KEY)
    assert verify_signature(key, SENDGRID_PAYLOAD, SENDGRID_SIGNATURE, SENDGRID_TIMESTAMP)
    assert not verify_signature(key, SENDGRID_PAYLOAD.replace(b"dropped", b"bounce"), SENDGRID_SIGNATURE, "1600112502")
    assert not verify_signature(key, SENDGRID_PAYLOAD, SENDGRID_SIGNATURE, "1600112503")
    # Posted to the app at the time it was signed, it bounces the address it names.
    store.subscribers.merge([NewSubscriber("hello@world.com")])
    site = site_factory(webhook_key=SENDGRID_PUBLIC_KEY, clock=lambda: int(SENDGRID_TIMESTAMP) + 20)
    r = site.client.post(
        "/webhooks/sendgrid",
        content=SENDGRID_PAYLOAD,
        headers={
            "X-Twilio-Email-Event-Webhook-Signature": SENDGRID_SIGNATURE,
            "X-Twilio-Email-Event-Webhook-Timestamp": SENDGRID_TIMESTAMP,
        },
    )
    assert r.status_code == 200, r.text
    found = store.subscribers.by_email("hello@world.com")
    assert found is not None and found.status == "bounced"


def test_our_test_signatures_are_what_sendgrids_helper_accepts(keys: SendGridKeys) -> None:
    from sendgrid.helpers.eventwebhook import EventWebhook

    body = b'[{"email":"a@example.org","event":"bounce"}]\r\n'
    headers = keys.headers(body)
    signature = headers["X-Twilio-Email-Event-Webhook-Signature"]
    stamp = headers["X-Twilio-Email-Event-Webhook-Timestamp"]
    assert EventWebhook(keys.public_b64).verify_signature(body.decode(), signature, stamp)
    assert verify_signature(load_webhook_key(keys.public_b64), body, signature, stamp)


def test_a_key_in_pem_armour_is_accepted_and_a_bad_key_stops_the_app(tmp_path: Path, store: Store) -> None:
    pem = (
        "-----BEGIN PUBLIC KEY-----\n"
        + SENDGRID_PUBLIC_KEY[:40]
        + "\n"
        + SENDGRID_PUBLIC_KEY[40:]
        + "\n-----END PUBLIC KEY-----\n"
    )
    assert verify_signature(load_webhook_key(pem), SENDGRID_PAYLOAD, SENDGRID_SIGNATURE, SENDGRID_TIMESTAMP)
    with pytest.raises(ConfigError, match="sendgrid_webhook_key is not a valid public key"):
        create_app(web_settings(tmp_path, webhook_key="bm90IGEga2V5"), store, Signer(SECRET))


# --- the archive ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """The bundled sample's issue, rendered once: (subject, html, text) with placeholders."""
    from digest.issue.build import build

    settings = load(copy_sample(tmp_path_factory.mktemp("sample")))
    rendered = build(settings, datetime(2026, 11, 27, 14, 0, tzinfo=UTC)).rendered
    return rendered.subject, rendered.html, rendered.text


def _record(store: Store, key: str, end: datetime, rendered: tuple[str, str, str], status: str) -> None:
    subject = f"{rendered[0]} ({key})"
    assert store.issues.record(
        key,
        subject=subject,
        window=(end - timedelta(days=7), end),
        article_count=5,
        summary={},
        rendered={"all": (subject, rendered[1], rendered[2])},
        status=status,
    )


@pytest.fixture
def archive_site(site: Site, sample_rendered: tuple[str, str, str]) -> Site:
    end = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
    _record(site.store, "2026-W46", end - timedelta(days=14), sample_rendered, "sending")
    site.store.issues.set_status("2026-W46", "sent")
    _record(site.store, "2026-W47", end - timedelta(days=7), sample_rendered, "draft")
    _record(site.store, "2026-W48", end, sample_rendered, "sending")
    return site


def test_the_archive_lists_sent_issues_newest_first(archive_site: Site) -> None:
    r = archive_site.client.get("/issues/")
    assert r.status_code == 200
    keys = re.findall(r'<a href="(2026-W\d\d)">', r.text)
    assert keys == ["2026-W48", "2026-W46"]  # the draft is not public
    assert "(2026-W48)" in r.text and "20–27 November 2026" in r.text
    assert r.headers["content-security-policy"] == CSP
    assert archive_site.client.get("/issues", follow_redirects=True).url.path == "/issues/"
    assert archive_site.client.get("/", follow_redirects=True).url.path == "/issues/"


def test_an_archived_issue_carries_nobodys_links(archive_site: Site, sample_rendered: tuple[str, str, str]) -> None:
    assert "%%" in sample_rendered[1]  # the stored HTML has placeholders to remove
    r = archive_site.client.get("/issues/2026-W48")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    page = r.text
    assert "%%" not in page
    assert "unsubscribe?t=" not in page and "preferences?t=" not in page
    assert 'class="section-name"' in page and "<img" in page
    assert r.headers["content-security-policy"] == ARCHIVE_CSP
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
    assert archive_site.client.get("/issues/2026-W46").text == archive_site.client.get("/issues/2026-W46").text


@pytest.mark.parametrize("key", ["2026-W47", "2026-W49", "nope", "x" * 300, "%2e%2e"])
def test_an_unknown_or_unsent_issue_is_404(archive_site: Site, key: str) -> None:
    r = archive_site.client.get(f"/issues/{key}")
    assert r.status_code == 404
    assert "No such issue" in r.text and r.headers["content-security-policy"] == CSP


# --- headers, errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/unsubscribe?t={ana}"),
        ("POST", "/unsubscribe?t={ana}"),
        ("GET", "/unsubscribe"),
        ("GET", "/preferences?t={ana}"),
        ("POST", "/preferences?t={ana}"),
        ("GET", "/unsubscribe?t=garbage"),
        ("GET", "/issues/"),
        ("GET", "/nowhere"),
        ("GET", "/webhooks/sendgrid"),
        ("POST", "/webhooks/sendgrid"),
    ],
)
def test_security_headers_on_every_response(site: Site, method: str, path: str) -> None:
    r = site.client.request(method, path.format(ana=site.token("ana")), content=b"[]", headers=FORM)
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-frame-options"] == "DENY"
    if "t=" in path:
        assert r.headers["cache-control"] == "no-store"
    assert "server" not in r.headers or "uvicorn" not in r.headers["server"]


def test_unknown_paths_and_methods_get_plain_pages(site: Site) -> None:
    assert site.client.get("/wp-admin").status_code == 404
    r = site.client.get("/webhooks/sendgrid")
    assert r.status_code == 405 and "POST" in r.headers["allow"]
    assert site.client.delete(f"/unsubscribe?t={site.token('ana')}").status_code == 405
    assert site.status("ana") == "active"


def test_a_database_error_is_a_plain_500_page(
    signed_site: Site, keys: SendGridKeys, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    site = signed_site

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise sa.exc.OperationalError("UPDATE subscribers ...", {}, Exception("database is gone"))

    for repo, name in (
        ("subscribers", "suppress"),
        ("subscribers", "by_id"),
        ("issues", "went_out"),
        ("issues", "get"),
        ("subscribers", "by_email"),
    ):
        monkeypatch.setattr(getattr(site.store, repo), name, broken)
    token = site.token("ana")
    for r in (
        site.client.post(f"/unsubscribe?t={token}", content=ONE_CLICK, headers=FORM),
        site.client.get(f"/unsubscribe?t={token}"),
        site.client.get(f"/preferences?t={token}"),
        site.client.get("/issues/"),
        site.client.get("/issues/2026-W48"),
    ):
        assert r.status_code == 500
        assert "Something went wrong" in r.text
        assert "Traceback" not in r.text and "database is gone" not in r.text and "UPDATE" not in r.text
        assert r.headers["content-security-policy"] == CSP
    events = json.dumps([{"email": PEOPLE["ana"].email, "event": "bounce"}]).encode()
    hook = site.client.post("/webhooks/sendgrid", content=events, headers=keys.headers(events))
    assert hook.status_code == 500  # SendGrid retries it later
    assert "database is gone" in caplog.text and token not in caplog.text


def test_mask_email() -> None:
    assert mask_email("ana.lima@example.net") == "a•••a@example.net"
    assert mask_email("bo@example.org") == "b•••@example.org"
    assert mask_email("x@y.z") == "x•••@y.z"
    assert mask_email("odd") == "•••"


# --- a real server: 200 one-click POSTs at once ----------------------------------------------------

SERVE = "import sys; from digest.config import load; from digest.web.app import serve; serve(load(sys.argv[1]), host='127.0.0.1', port=0)"  # noqa: E501


def write_config(folder: Path) -> Path:
    return factories.write_config(folder, sections=[{"name": "Asia-Pacific", "categories": ["Asia-Pacific"]}])


@contextmanager
def served(
    config: Path, database_url: str, *, command: list[str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``serve`` in a process of its own, as ``digest serve`` runs it (or ``command``, given the
    config's path); yields it and its URL."""
    env = {**os.environ, "DIGEST_SECRET": SECRET, "DIGEST_DATABASE_URL": database_url}
    env.pop("DIGEST_SECRET_PREVIOUS", None)
    proc = subprocess.Popen(
        [*(command or [sys.executable, "-c", SERVE]), str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        match = re.search(r"at (http://127\.0\.0\.1:(\d+)/) ", line)
        if not match:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"serve printed no address: {line!r}\n{err}")
        assert match.group(2) != "0"
        yield proc, match.group(1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


async def one_click_all(url: str, tokens: list[str]) -> list[int]:
    """One one-click POST per token, all in flight at once (no connection limit)."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60, trust_env=False) as client:
        go = asyncio.Event()

        async def one(token: str) -> int:
            await go.wait()
            r = await client.post("unsubscribe", params={"t": token}, content=ONE_CLICK, headers=FORM)
            return r.status_code

        tasks = [asyncio.create_task(one(token)) for token in tokens]
        await asyncio.sleep(0)
        go.set()
        return list(await asyncio.gather(*tasks))


def test_200_one_click_posts_at_once_on_a_real_server(tmp_path: Path, database_url: str) -> None:
    store = Store.open(database_url)
    try:
        store.subscribers.merge([NewSubscriber(f"reader{i:03d}@example.org") for i in range(200)])
        signer = Signer(SECRET)
        tokens = [signer.token(s.id) for s in store.subscribers.every()]
        assert len(tokens) == 200
        with served(write_config(tmp_path), database_url) as (proc, url):
            statuses = asyncio.run(one_click_all(url, tokens))
            assert statuses == [200] * 200
            assert store.subscribers.counts() == {"unsubscribed": 200}  # every one recorded, at once
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "locked" not in err and "Traceback" not in err, err
    finally:
        store.close()


def test_serve_prints_its_address_and_ctrl_c_exits_0(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'digest.sqlite3'}"
    with served(write_config(tmp_path), url) as (proc, base):
        r = httpx.get(base + "issues/", timeout=10, trust_env=False)
        assert r.status_code == 200 and "Past issues" in r.text
        assert "server" not in r.headers
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_digest_serve_says_at_start_that_the_webhook_is_off(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'digest.sqlite3'}"
    command = [sys.executable, "-m", "digest", "serve", "--port", "0", "--config"]
    with served(write_config(tmp_path), url, command=command) as (proc, base):
        r = httpx.post(
            base + "webhooks/sendgrid",
            json=[{"email": "a@example.org", "event": "bounce"}],
            timeout=10,
            trust_env=False,
        )
        assert r.status_code == 403
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    off = [line for line in err.splitlines() if "webhook is off" in line]
    assert off == [
        "digest: the SendGrid webhook is off until [web] sendgrid_webhook_key is set: "
        "/webhooks/sendgrid refuses every request (403) until then"
    ], err


def test_serve_needs_the_secret_and_a_free_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.delenv("DIGEST_DATABASE_URL", raising=False)
    settings = load(write_config(tmp_path))
    monkeypatch.delenv("DIGEST_SECRET", raising=False)
    with pytest.raises(ConfigError, match="DIGEST_SECRET"):
        serve(settings, host="127.0.0.1", port=0)
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DigestError, match=rf"cannot listen on 127\.0\.0\.1:{port}"):
            serve(settings, host="127.0.0.1", port=port)
