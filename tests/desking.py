"""Helpers for the desk's tests: a desk app on a store, an editor, and signing in as a browser does."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.testclient import TestClient

from digest.config import Settings
from digest.delivery import desk
from digest.delivery.tokens import Signer
from digest.store import Store
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
