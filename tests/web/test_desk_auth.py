"""The desk's door: editors added from the command line, signing in and out, sessions that end,
CSRF on every POST, throttled wrong passwords, and every desk route shut to a stranger. On
SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from starlette.routing import Route

from desking import EDITOR, PASSWORD, Clock, add_editor, csrf_of, desk_client, same_server, sign_in, signed_in
from digest.cli import cli
from digest.store import Store
from digest.store.schema import desk_sessions, editors
from factories import settings as make_settings

SAMPLE_KEY = "2026-W48"


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store.open(database_url)
    add_editor(store)
    yield store
    store.close()


@pytest.fixture
def settings(tmp_path: Path):
    return make_settings(tmp_path)


def cookie_header(answer, name: str) -> str:
    return next(v for v in answer.headers.get_list("set-cookie") if v.startswith(f"{name}="))


# --- editors from the command line ------------------------------------------------------------------


def write_config(tmp_path: Path) -> Path:
    """The bundled config (its database comes from $DIGEST_DATABASE_URL in these tests)."""
    config = tmp_path / "config.toml"
    config.write_text((Path(__file__).resolve().parents[2] / "config.toml").read_text(encoding="utf-8"))
    return config


def run(*args: str, stdin: str = "", code: int = 0):
    result = CliRunner().invoke(cli, list(args), input=stdin)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def test_editors_are_added_listed_and_removed_with_an_argon2_hash(tmp_path, database_url, monkeypatch):
    monkeypatch.setenv("DIGEST_DATABASE_URL", database_url)
    config = str(write_config(tmp_path))
    added = run("editors", "add", "--config", config, "Ana@Example.org", stdin=PASSWORD + "\n")
    assert added.stdout == "Added editor Ana@example.org\n"  # the domain as email-validator normalises it
    assert "Ana@example.org  added " in run("editors", "list", "--config", config).stdout
    store = Store.open(database_url)
    try:
        with store.engine.connect() as conn:
            stored = conn.execute(sa.select(editors.c.password_hash)).scalar_one()
        assert stored.startswith("$argon2id$") and PASSWORD not in stored
        client = desk_client(make_settings(tmp_path), store)
        assert sign_in(client, "ana@example.org", PASSWORD).status_code == 303  # any case of the address
        assert client.get("/desk/").status_code == 200
        assert run("editors", "remove", "--config", config, "ana@example.org").stdout == (
            "Removed editor ana@example.org\n"
        )
        assert client.get("/desk/").status_code == 303  # removing an editor ends their session at once
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(desk_sessions)).scalar() == 0
    finally:
        store.close()
    assert run("editors", "list", "--config", config).stdout.startswith("No editors yet")
    gone = run("editors", "remove", "--config", config, "ana@example.org", code=1)
    assert gone.stderr == "digest: error: ana@example.org is not an editor; `digest editors list` shows who is\n"


def test_on_a_terminal_the_password_is_asked_for_twice(tmp_path, database_url, monkeypatch):
    monkeypatch.setenv("DIGEST_DATABASE_URL", database_url)
    monkeypatch.setattr("digest.cli.editors._on_terminal", lambda: True)
    config = str(write_config(tmp_path))
    typed = f"{PASSWORD}\nsomething else entirely\n{PASSWORD}\n{PASSWORD}\n"
    added = run("editors", "add", "--config", config, "ana@example.org", stdin=typed)
    assert "The two entered values do not match" in added.output
    assert added.output.count("Repeat the password") == 2
    assert added.stdout.endswith("Added editor ana@example.org\n")


def test_a_short_password_or_a_bad_address_is_one_line_and_nothing_is_added(tmp_path, database_url, monkeypatch):
    monkeypatch.setenv("DIGEST_DATABASE_URL", database_url)
    config = str(write_config(tmp_path))
    short = run("editors", "add", "--config", config, "ana@example.org", stdin="tiny\n", code=2)
    assert short.stderr == ("digest: error: the password is too short: use at least 12 characters (a passphrase)\n")
    bad = run("editors", "add", "--config", config, "not-an-address", stdin=PASSWORD + "\n", code=1)
    assert bad.stderr.startswith("digest: error: 'not-an-address' is not a valid email address")
    assert "Traceback" not in short.stderr + bad.stderr
    assert run("editors", "list", "--config", config).stdout.startswith("No editors yet")


def test_a_new_password_for_an_editor_signs_them_out(settings, store):
    client = desk_client(settings, store)
    signed_in(client)
    add_editor(store, EDITOR, "another long passphrase")
    assert client.get("/desk/").status_code == 303
    assert sign_in(desk_client(settings, store), EDITOR, PASSWORD).status_code == 401
    assert sign_in(desk_client(settings, store), EDITOR, "another long passphrase").status_code == 303


# --- signing in and out -----------------------------------------------------------------------------


def test_signing_in_sets_a_session_cookie_that_is_httponly_lax_secure_and_ends(settings, store):
    client = desk_client(settings, store)
    page = client.get("/desk/login")
    assert 'name="email"' in page.text and 'name="password"' in page.text
    answer = sign_in(client)
    assert answer.status_code == 303 and answer.headers["location"].endswith("desk/")
    cookie = cookie_header(answer, "digest_desk").lower()
    for attribute in ("httponly", "samesite=lax", "secure", f"max-age={12 * 3600}", "path=/"):
        assert attribute in cookie, cookie
    home = client.get("/desk/")
    assert home.status_code == 200 and EDITOR in home.text and "Sign out" in home.text


def test_the_session_cookie_is_not_secure_on_a_plain_http_site(tmp_path, store):
    base = make_settings(tmp_path).newsletter.model_dump(by_alias=True)
    http = make_settings(tmp_path, newsletter={**base, "base_url": "http://localhost:8080"})
    answer = sign_in(desk_client(http, store))
    assert "secure" not in cookie_header(answer, "digest_desk").lower()


def test_signing_out_ends_the_session_on_the_server(settings, store):
    client = desk_client(settings, store)
    csrf = signed_in(client)
    token = client.cookies["digest_desk"]
    out = client.post("/desk/logout", data={"csrf": csrf})
    assert out.status_code == 303 and out.headers["location"].endswith("desk/login")
    thief = desk_client(settings, store)
    thief.cookies.set("digest_desk", token)  # the cookie copied before sign-out
    assert thief.get("/desk/").status_code == 303
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(desk_sessions)).scalar() == 0


def test_an_expired_session_is_refused(tmp_path, store):
    settings = make_settings(tmp_path, desk={"session_hours": 2})
    clock = Clock()
    client = desk_client(settings, store, clock=clock)
    signed_in(client)
    clock.now += 2 * 3600 - 60
    assert client.get("/desk/").status_code == 200
    clock.now += 120
    refused = client.get("/desk/")
    assert refused.status_code == 303 and refused.headers["location"].endswith("desk/login")


def test_a_wrong_password_and_an_unknown_account_get_the_same_answer(settings, store):
    wrong = sign_in(desk_client(settings, store), EDITOR, "not the password at all")
    nobody = sign_in(desk_client(settings, store), "nobody@example.org", "not the password at all")
    assert wrong.status_code == nobody.status_code == 401
    message = re.compile(r'<p class="error" role="alert">([^<]*)</p>')
    assert message.findall(wrong.text) == message.findall(nobody.text) == ["Wrong email address or password."]
    assert "digest_desk=" not in " ".join(wrong.headers.get_list("set-cookie"))


# --- throttling ---------------------------------------------------------------------------------------


def test_ten_wrong_passwords_for_an_account_throttle_it_from_anywhere(settings, store):
    app_client = desk_client(settings, store)
    for i in range(10):
        attacker = same_server(app_client, f"198.51.100.{i}")
        assert sign_in(attacker, EDITOR, f"guess number {i:04}").status_code == 401
    refused = sign_in(app_client, EDITOR, PASSWORD)  # even the right password, for now
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 15 * 60
    assert "Too many failed sign-ins" in refused.text


def test_ten_wrong_passwords_from_one_address_throttle_it_for_every_account(settings, store):
    client = desk_client(settings, store)
    for i in range(10):
        assert sign_in(client, f"someone{i}@example.org", "a wrong password here").status_code == 401
    assert sign_in(client, EDITOR, PASSWORD).status_code == 429
    elsewhere = same_server(client, "192.0.2.1")
    assert sign_in(elsewhere, EDITOR, PASSWORD).status_code == 303


# --- CSRF and the closed door ---------------------------------------------------------------------------


def test_a_sign_in_post_without_its_token_is_refused(settings, store):
    client = desk_client(settings, store)
    client.get("/desk/login")
    refused = client.post("/desk/login", data={"email": EDITOR, "password": PASSWORD})
    assert refused.status_code == 403 and "digest_desk=" not in " ".join(refused.headers.get_list("set-cookie"))
    other = client.post("/desk/login", data={"email": EDITOR, "password": PASSWORD, "csrf": "made-up"})
    assert other.status_code == 403


def desk_routes(client) -> list[tuple[str, str]]:
    """(method, path) of every desk route, path parameters filled in."""
    found = []
    for route in client.app.routes:
        if not isinstance(route, Route) or not route.path.startswith("/desk"):
            continue
        path = route.path.replace("{key}", SAMPLE_KEY)
        assert "{" not in path, f"fill in the parameters of {route.path}"
        found.extend((method, path) for method in sorted(route.methods or ()) if method != "HEAD")
    return found


def test_every_desk_route_refuses_a_request_that_is_not_signed_in(settings, store):
    client = desk_client(settings, store)
    routes = desk_routes(client)
    assert ("GET", "/desk/") in routes and len(routes) >= 4
    for method, path in routes:
        if path == "/desk/login":
            continue
        answer = client.request(method, path, data={"csrf": "x"} if method == "POST" else None)
        if method == "GET":
            assert answer.status_code == 303, (method, path)
            assert answer.headers["location"].endswith("desk/login"), (method, path)
        else:
            assert answer.status_code == 401, (method, path, answer.status_code)
        assert EDITOR not in answer.text


def test_every_desk_post_without_the_sessions_csrf_token_is_refused(settings, store):
    client = desk_client(settings, store)
    csrf = signed_in(client)
    for method, path in desk_routes(client):
        if method != "POST" or path == "/desk/login":
            continue
        for data in ({}, {"csrf": "not-the-token"}):
            answer = client.post(path, data=data)
            assert answer.status_code == 403, (path, data, answer.status_code)
    assert client.get("/desk/").status_code == 200  # still signed in: the refused sign-out did nothing
    assert csrf_of(client.get("/desk/").text) == csrf
