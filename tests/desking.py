"""Helpers for the desk's tests: a desk app on a store, an editor, and signing in as a browser does."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from digest.config import Settings, load
from digest.delivery import desk
from digest.delivery.tokens import Signer
from digest.models import issue_of_record
from digest.schedule import jobs
from digest.store import Store
from digest.subscribers import read_csv
from digest.web.app import create_app

SECRET = "desk-test-secret-long-enough-to-sign-links"
EDITOR = "editor@example.org"
PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Clock:
    """A clock the test moves on (the desk reads ``site.clock`` for session ends)."""

    now: float = 1_800_000_000.0  # 2027-01-15

    def __call__(self) -> float:
        return self.now


def desk_client(
    settings: Settings, store: Store, *, clock: Callable[[], float] | None = None, ip: str = "203.0.113.7"
) -> TestClient:
    """A browser at the desk over https (the session cookie is Secure for an https base_url)."""
    app = create_app(settings, store, Signer(SECRET), **({"clock": clock} if clock else {}))
    return TestClient(app, base_url="https://testserver", follow_redirects=False, client=(ip, 50000))


def same_server(client: TestClient, ip: str) -> TestClient:
    """Another browser, from ``ip``, at the same running desk (its throttle and all)."""
    return TestClient(client.app, base_url="https://testserver", follow_redirects=False, client=(ip, 50000))


def add_editor(store: Store, email: str = EDITOR, password: str = PASSWORD) -> None:
    desk.add_editor(store, email, password)


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def sign_in(client: TestClient, email: str = EDITOR, password: str = PASSWORD) -> Any:
    """Open the sign-in page and post its form, as a browser does; returns the POST's answer."""
    page = client.get("/desk/login")
    assert page.status_code == 200
    return client.post("/desk/login", data={"email": email, "password": password, "csrf": csrf_of(page.text)})


def signed_in(client: TestClient, email: str = EDITOR, password: str = PASSWORD) -> str:
    """Sign in and return the session's CSRF token, read from a desk page."""
    answer = sign_in(client, email, password)
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/desk/").text)


# --- a desk over the bundled sample, its draft built by the scheduler's review job ---------------

ROOT = Path(__file__).resolve().parents[1]
SEND_AT = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)  # Friday 09:00 in New York
KEY = "2026-W48"


@dataclass
class Desk:
    settings: Settings
    store: Store
    client: TestClient
    csrf: str
    config: Path

    def page(self, query: str = "") -> str:
        answer = self.client.get(f"/desk/issues/{KEY}{query}")
        assert answer.status_code == 200, answer.text
        return answer.text

    def change(self, action: str, url: str, *, code: int = 303) -> str:
        answer = self.client.post(
            f"/desk/issues/{KEY}/articles", data={"csrf": self.csrf, "action": action, "url": url}
        )
        assert answer.status_code == code, answer.text
        return answer.text

    def post(self, action: str, *, code: int = 303, **fields: str) -> str:
        answer = self.client.post(f"/desk/issues/{KEY}/{action}", data={"csrf": self.csrf, **fields})
        assert answer.status_code == code, answer.text
        return answer.text

    def front(self, *, code: int = 303, **fields: str) -> str:
        answer = self.client.post(f"/desk/issues/{KEY}/front", data={"csrf": self.csrf, **fields})
        assert answer.status_code == code, answer.text
        return answer.text

    def section(self, name: str) -> list[str]:
        """The canonical URLs of a section of the recorded draft, in order."""
        issue = issue_of_record(self.store.issues.summary(KEY))
        assert issue is not None
        return [a.canonical_url for s in issue.sections if s.name == name for a in s.articles]

    def lead(self) -> str:
        issue = issue_of_record(self.store.issues.summary(KEY))
        assert issue is not None and issue.lead is not None
        return issue.lead.canonical_url

    def stored(self) -> tuple[str, str, str]:
        return self.store.issues.variant(KEY, "all")


@contextmanager
def open_desk(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Desk]:
    """The bundled sample (5 subscribers) on ``database_url`` with the scheduler's draft of
    2026-W48, an editor signed in at the desk."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    config = tmp_path / "config.toml"
    config.write_text((ROOT / "config.toml").read_text(encoding="utf-8") + "\n[schedule]\nreview_hours = 24\n")
    monkeypatch.setenv("DIGEST_DATABASE_URL", database_url)
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    settings = load(config)
    store = Store.open(database_url)
    store.subscribers.merge(read_csv(tmp_path / "examples" / "subscribers.csv", settings.section_names).rows)
    assert jobs.review(settings, store, SEND_AT) == f"draft {KEY}"
    add_editor(store)
    client = desk_client(settings, store)
    try:
        yield Desk(settings, store, client, signed_in(client), config)
    finally:
        store.close()
