"""``digest preview``: the rebuild/state logic, the web app, the watcher, the CLI and, in a real
headless Chromium, how the issue and the editor's page look at desktop and phone widths."""

from __future__ import annotations

import email
import email.policy
import html
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Response, expect
from starlette.testclient import TestClient

import factories
from browsing import answer_with_placeholder, is_blank, right_edge_clear, serve_app
from digest.errors import DigestError
from digest.issue.render import bundled_templates
from digest.preview.app import (
    DESKTOP_WIDTH,
    PHONE_WIDTH,
    PreviewState,
    Snapshot,
    Watcher,
    create_app,
    serve,
    watch_set,
)

NOW = datetime(2026, 11, 27, 9, 0)  # no offset: the newsletter's zone (America/New_York)
SHOTS = Path("/tmp/preview-shots")
SAMPLE_MEDIA = "https://responsiblestatecraft.example/media/"


def copy_sample(dest: Path, *, templates: bool = False) -> Path:
    """The sample config and feeds under ``dest``; state (feed cache) stays inside ``dest``.

    With ``templates``, a ``my-templates`` folder holding a copy of the HTML template is set as
    ``[render] templates``, so a test can break and fix a template without touching the repo.
    """
    config = factories.copy_sample(dest)
    text = config.read_text(encoding="utf-8")
    text, n = re.subn(r"(?m)^data_dir = .*$", 'data_dir = "state"', text)
    assert n == 1, "the sample config should set [store] data_dir"
    if templates:
        (dest / "my-templates").mkdir()
        shutil.copy(bundled_templates() / "issue.html.j2", dest / "my-templates" / "issue.html.j2")
        text, n = re.subn(r"(?m)^\[render\]$", '[render]\ntemplates = "my-templates"', text)
        assert n == 1
    config.write_text(text, encoding="utf-8")
    return config


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def last_good(state: PreviewState) -> Snapshot:
    """The last good build, which the test expects to exist."""
    snapshot = state.status.good
    assert snapshot is not None, state.status.error
    return snapshot


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return copy_sample(tmp_path / "site", templates=True)


@pytest.fixture
def state(config: Path) -> PreviewState:
    state = PreviewState(config, now=NOW)
    assert state.rebuild().ok, state.status.error
    return state


@pytest.fixture
def client(state: PreviewState) -> Iterator[TestClient]:
    with TestClient(create_app(state)) as c:
        yield c


# --- The state and the app --------------------------------------------------------------------


def test_first_build_fills_the_snapshot(state: PreviewState) -> None:
    status = state.status
    good = status.good
    assert good is not None
    assert (status.generation, status.key, good.key) == (1, "2026-W48", "2026-W48")
    assert good.count == sum(n for _, n in good.sections) > 0
    assert good.lead_title and good.lead_title in good.subject
    assert good.preheader and "<" not in good.preheader
    assert "%%" not in good.html and "%%" not in good.text  # preview recipient values are filled in


def test_index_shows_the_issue_both_frames_and_the_text_part(client: TestClient, state: PreviewState) -> None:
    good = state.status.good
    assert good is not None
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-store"
    page = r.text
    assert _escaped(good.subject) in page
    frames = re.findall(r'<iframe src="/issue.html"[^>]*width="(\d+)"', page)
    assert frames == [str(DESKTOP_WIDTH), str(PHONE_WIDTH)]
    assert "2026-W48" in page and _escaped(good.dates) in page
    assert f"{good.count} in {len(good.sections)} sections" in page
    text_part = re.search(r'<pre id="text">(.*?)</pre>', page, re.S)
    assert text_part and _escaped(good.lead_title) in text_part.group(1)
    assert 'role="alert"' not in page  # no error, no warning box
    assert 'id="warnings"' not in page


def test_issue_html_is_the_inlined_email(client: TestClient, state: PreviewState) -> None:
    r = client.get("/issue.html")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.text == last_good(state).html
    assert re.search(r'<td class="header" style="[^"]*padding', r.text), "CSS is inlined"
    assert "@media only screen" in r.text, "the phone rules stay in a <style> block"
    assert "https://newsletter.responsiblestatecraft.example/unsubscribe" in r.text
    assert "<script" not in r.text  # the reader's email, untouched: nothing of the preview in it


def test_text_eml_and_api_state(client: TestClient, state: PreviewState) -> None:
    good = state.status.good
    assert good is not None
    txt = client.get("/issue.txt")
    assert txt.status_code == 200 and txt.text == good.text
    assert txt.headers["content-type"].startswith("text/plain")

    eml = client.get("/issue.eml")
    assert eml.status_code == 200
    assert eml.headers["content-type"] == "message/rfc822"
    assert eml.headers["content-disposition"] == 'attachment; filename="2026-W48.eml"'
    msg = email.message_from_bytes(eml.content, policy=email.policy.default)
    assert msg["Subject"] == good.subject
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert [p.get_content_type() for p in msg.walk()][1:] == ["text/plain", "text/html"]

    api = client.get("/api/state").json()
    assert api["generation"] == 1 and api["ok"] is True and api["error"] is None
    assert api["issue"] == "2026-W48" and api["subject"] == good.subject
    assert api["instance"] == state.instance and api["stale"] is False
    state.rebuild()
    assert client.get("/api/state").json()["generation"] == 2


def test_index_shows_the_client_lint_per_client_beside_the_size(client: TestClient, state: PreviewState) -> None:
    good = state.status.good
    assert good is not None and good.lint is not None, good and good.lint_unavailable
    page = client.get("/").text
    lint = page[page.index('id="lint"') :]
    assert page.index("HTML size") < page.index('id="lint"')
    for name in ("Gmail (web)", "Gmail (iOS)", "Gmail (Android)", "Apple Mail (macOS)", "Outlook (Windows)"):
        assert f"<b>{name}</b>" in lint
    assert "@jsx-email/doiuse-email 1.0.4" in lint
    assert 'title="phone sizes and dark mode' in lint  # Outlook's accepted @media, with its reason
    assert 'class="bad"' not in lint
    found = client.get("/api/state").json()["lint"]
    assert found["gmail.ios"] == {"errors": {}, "enhancements": {}}
    assert set(found["outlook.windows"]["enhancements"]) <= {"@media", "Attribute selector", "overflow"}


def test_without_node_the_page_says_the_client_lint_is_unavailable(config: Path, monkeypatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    state = PreviewState(config, now=NOW)
    assert state.rebuild().ok
    with TestClient(create_app(state)) as c:
        page = c.get("/").text
    assert "client lint unavailable: node is not installed; install Node.js 20 or later" in page
    assert "HTML size" in page


def test_template_syntax_error_shows_the_error_and_keeps_the_last_good_issue(
    client: TestClient, state: PreviewState, config: Path
) -> None:
    template = config.parent / "my-templates" / "issue.html.j2"
    good_html = client.get("/issue.html").text
    edit(template, "{% if lead %}", "{% if lead %\n}")

    status = state.rebuild()
    assert status.generation == 2 and not status.ok
    assert status.error is not None
    assert "issue.html.j2:" in status.error and "template syntax error" in status.error
    assert "\n" not in status.error
    assert status.good is not None and status.good.html == good_html

    page = client.get("/").text
    assert 'role="alert"' in page and "The last rebuild failed" in page
    assert _escaped(status.error) in page
    assert _escaped(status.good.subject) in page and page.count('<iframe src="/issue.html"') == 2
    assert client.get("/issue.html").text == good_html
    api = client.get("/api/state").json()
    assert api["ok"] is False and api["stale"] is True and api["error"] == status.error

    edit(template, "{% if lead %\n}", "{% if lead %}<!-- fixed -->")
    status = state.rebuild()
    assert status.ok and status.error is None and status.generation == 3
    assert "<!-- fixed -->" in client.get("/issue.html").text
    assert 'role="alert"' not in client.get("/").text


def test_a_bad_config_key_is_shown_until_it_is_fixed(client: TestClient, state: PreviewState, config: Path) -> None:
    edit(config, "min_items = 3", "min_itemz = 3")
    status = state.rebuild()
    assert status.error is not None and "[issue] min_itemz: unknown key" in status.error
    assert status.key == "2026-W48" and status.good is not None
    assert "[issue] min_itemz: unknown key" in client.get("/").text
    assert len(state.watch_set().files) == 3, "a config that does not load keeps the last watch set"

    edit(config, "min_itemz = 3", "min_items = 30")  # config edits apply on the next rebuild
    status = state.rebuild()
    assert status.ok and status.good is not None and status.good.thin
    page = client.get("/").text
    assert 'id="warnings"' in page and "thin week" in page and "this issue will not be sent" in page


def test_a_broken_feed_is_a_warning_or_an_error_never_a_crash(
    client: TestClient, state: PreviewState, config: Path
) -> None:
    feed = config.parent / "examples" / "feeds" / "analysis.atom"
    text = feed.read_text(encoding="utf-8")
    feed.write_text(text[: len(text) // 2], encoding="utf-8")  # cut off mid-document
    status = state.rebuild()
    problems = [status.error or "", *(status.good.warnings if status.good else ())]
    assert any("Statecraft Analysis" in p for p in problems), problems
    page = client.get("/").text
    assert "Statecraft Analysis" in page

    feed.write_text("this is not a feed", encoding="utf-8")
    status = state.rebuild()  # that feed is down: the issue is built from the other, and says so
    assert status.ok and status.good is not None
    down = 'feed down, left out of this issue: feed "Statecraft Analysis": not a valid RSS or Atom feed'
    assert any(w.startswith(down) for w in status.good.warnings), status.good.warnings
    assert "Statecraft Analysis" in client.get("/").text

    (config.parent / "examples" / "feeds" / "statecraft.rss").write_text("nor is this", encoding="utf-8")
    status = state.rebuild()  # every feed down: no issue, an error naming each
    assert status.error is not None and status.error.startswith("no feed could be read: ")
    assert 'feed "Statecraft"' in status.error and 'feed "Statecraft Analysis"' in status.error
    assert client.get("/").status_code == 200 and client.get("/issue.html").status_code == 200


def test_a_first_build_that_fails_still_serves_a_page_with_the_error(config: Path) -> None:
    edit(config.parent / "my-templates" / "issue.html.j2", "{% endif %}", "{% endiff %}")
    state = PreviewState(config, now=NOW)
    status = state.rebuild()
    assert status.good is None and status.error and "template" in status.error
    with TestClient(create_app(state)) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "No issue to show yet" in page.text and _escaped(status.error) in page.text
        for path in ("/issue.html", "/issue.txt", "/issue.eml"):
            r = client.get(path)
            assert r.status_code == 503 and "No issue has been built yet" in r.text
        assert client.get("/api/state").json()["ok"] is False


def test_an_unexpected_failure_is_one_line_too(config: Path) -> None:
    def broken(settings: object, now: object) -> NoReturn:
        raise RuntimeError("boom\nsecond line")

    state = PreviewState(config, now=NOW, builder=broken)
    status = state.rebuild()
    assert status.error == "unexpected error: RuntimeError: boom second line"
    assert isinstance(state.last_exception, RuntimeError)


def test_a_time_without_offset_is_in_the_newsletters_zone(config: Path) -> None:
    # 23:30 on Sunday 29 November in New York is already Monday (ISO week 49) in UTC.
    state = PreviewState(config, now=datetime(2026, 11, 29, 23, 30))
    assert state.rebuild().key == "2026-W48"


def test_the_watch_set_follows_the_config(config: Path, state: PreviewState) -> None:
    ws = state.watch_set()
    site = config.parent.resolve()
    assert ws.files == {
        site / "config.toml",
        site / "examples/feeds/statecraft.rss",
        site / "examples/feeds/analysis.atom",
    }
    assert ws.trees == {site / "my-templates", bundled_templates().resolve()}
    assert ws.matches(site / "my-templates" / "_article.html.j2")
    assert not ws.matches(site / "state" / "feeds" / "x.json")  # the build's own cache
    assert not ws.matches(site / "README.md")
    assert set(ws.directories()) >= {site, site / "examples/feeds", site / "my-templates"}

    # A remote feed is fetched on each rebuild, not watched; a missing templates folder is
    # watched for from its parent so creating it rebuilds.
    from digest.config import load

    edit(config, 'url = "examples/feeds/analysis.atom"', 'url = "https://feeds.example/analysis.atom"')
    edit(config, 'templates = "my-templates"', 'templates = "later"')
    ws = watch_set(load(config))
    assert site / "examples/feeds/analysis.atom" not in ws.files
    assert not any("feeds.example" in str(f) for f in ws.files)
    assert site / "later" in ws.trees and ws.matches(site / "later")
    assert site in ws.directories()


# --- What send sends: editors' edits, the recorded snapshot, the variants ---------------------

SITE = "https://responsiblestatecraft.example"
KEY = "2026-W48"
LEAD = f"{SITE}/2026/11/21/nationalize-defense-primes/"  # the sample week's lead, unedited
JAPAN = f"{SITE}/2026/11/25/japan-counterstrike-missiles/"  # has an image: pinned, it leads
JAPAN_TITLE = "Japan's counterstrike missiles are a windfall for U.S. contractors, and a risk for Tokyo"


def digest(*args: str) -> str:
    """Run a ``digest`` command in process; it must succeed."""
    from click.testing import CliRunner

    from digest.cli import cli

    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


@pytest.fixture
def ledger(config: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sample site with its subscribers imported into its own database (under ``state``)."""
    monkeypatch.delenv("DIGEST_DATABASE_URL", raising=False)
    digest("subscribers", "import", "--config", str(config), str(config.parent / "examples" / "subscribers.csv"))
    return config


def first_article(html_page: str) -> str:
    """The first article link of an issue's HTML: the lead's."""
    found = re.search(rf'href="({re.escape(SITE)}/20[^"?]+)', html_page)
    assert found, "no article link"
    return found.group(1)


def subject_on_page(page: str) -> str:
    found = re.search(r'<div class="subject" id="subject">(.*?)</div>', page)
    assert found, "no subject on the page"
    return html.unescape(found.group(1))


def test_preview_applies_editors_pins_and_exclusions(ledger: Path) -> None:
    state = PreviewState(ledger, now=NOW)
    assert state.rebuild().ok, state.status.error
    assert first_article(last_good(state).html) == LEAD

    digest("exclude", "--config", str(ledger), "--issue", KEY, LEAD)
    digest("pin", "--config", str(ledger), "--issue", KEY, JAPAN)
    assert state.rebuild().ok, state.status.error
    with TestClient(create_app(state)) as client:
        assert subject_on_page(client.get("/").text) == f"Statecraft Weekly: {JAPAN_TITLE}"
        issue = client.get("/issue.html").text
        assert first_article(issue) == JAPAN and LEAD not in issue
        eml = email.message_from_bytes(client.get("/issue.eml").content, policy=email.policy.default)
        assert eml["Subject"] == f"Statecraft Weekly: {JAPAN_TITLE}"
        assert client.get("/api/state").json()["recorded"] is None  # a fresh build, as send would make


def test_preview_shows_each_variant_as_send_renders_it(ledger: Path) -> None:
    from digest.config import load
    from digest.delivery import weekly
    from digest.issue.build import preview_values
    from digest.issue.render import fill
    from digest.store import Store

    state = PreviewState(ledger, now=NOW)
    assert state.rebuild().ok, state.status.error
    good = last_good(state)
    # Ben chose Asia-Pacific and Middle East, Eve the Military Industrial Complex, Chloé Europe.
    assert [(v.name, v.label) for v in good.variants] == [
        ("all", "All sections"),
        ("1,3", "Asia-Pacific + Middle East"),
        ("2", "Military Industrial Complex"),
        ("4", "Europe"),
    ]
    with TestClient(create_app(state)) as client:
        page = client.get("/").text
        chooser = re.search(r'<nav class="variants".*?</nav>', page, re.S)
        assert chooser and re.findall(r'<a href="([^"]+)"', chooser.group(0)) == [
            "/",
            "/?variant=1,3",
            "/?variant=2",
            "/?variant=4",
        ]
        europe = client.get("/?variant=4").text
        assert '<a href="/?variant=4" aria-current="page">Europe</a>' in europe
        assert re.findall(r'<iframe src="([^"]+)"', europe) == ["/issue.html?variant=4"] * 2
        shown = {v.name: (client.get(f"/issue.html?variant={v.name}").text, v.subject) for v in good.variants}
        assert client.get("/issue.html?variant=9").status_code == 404

    # Send's own path records the same issue: each variant it stores is what the preview showed.
    settings = load(ledger)
    store = Store.open(settings.database_url)
    try:
        weekly.draft(settings, store, NOW.replace(tzinfo=settings.newsletter.zone))
        values = preview_values(settings)
        for name, (page_html, subject) in shown.items():
            stored_subject, stored_html, _ = store.issues.variant(KEY, name)
            assert (fill(stored_html, values, "html"), stored_subject) == (page_html, subject), name
    finally:
        store.close()


def test_a_recorded_draft_is_shown_as_its_snapshot_and_follows_edits(ledger: Path) -> None:
    from digest.config import load
    from digest.delivery import weekly
    from digest.store import Store

    settings = load(ledger)
    store = Store.open(settings.database_url)
    try:
        weekly.draft(settings, store, NOW.replace(tzinfo=settings.newsletter.zone))
    finally:
        store.close()
    # A feed edit after the draft was recorded does not change what goes out, so not the preview.
    feed = ledger.parent / "examples" / "feeds" / "statecraft.rss"
    edit(feed, "<title>Is nationalizing the defense industry such a bad idea?</title>", "<title>Edited</title>")
    state = PreviewState(ledger, now=NOW)
    assert state.rebuild().ok, state.status.error
    assert last_good(state).recorded == "draft"
    assert "Is nationalizing the defense industry" in last_good(state).subject
    with TestClient(create_app(state)) as client:
        assert f"{KEY} is recorded as draft" in client.get("/").text

    watcher = Watcher(state, step_ms=30, debounce_ms=300).start()
    try:
        assert watcher.ready.wait(30), "the watcher did not start"
        digest("exclude", "--config", str(ledger), LEAD)  # the current draft, rebuilt
        # The preview sees the database change by itself: no file it watches changed.
        wait_for(lambda: state.status.good is not None and LEAD not in state.status.good.html)
    finally:
        watcher.stop()
    assert state.status.ok, state.status.error
    with TestClient(create_app(state)) as client:
        subject = subject_on_page(client.get("/").text)
        issue = client.get("/issue.html").text
    assert subject == "Statecraft Weekly: The Oman channel is the only Iran policy that has worked"
    assert LEAD not in issue and first_article(issue) == f"{SITE}/2026/11/26/iran-talks-oman-channel/"


# --- The watcher ------------------------------------------------------------------------------


@pytest.fixture
def watcher(state: PreviewState) -> Iterator[Watcher]:
    w = Watcher(state, step_ms=30, debounce_ms=300).start()
    assert w.ready.wait(30), "the watcher did not start"
    yield w
    w.stop()


def test_editing_a_local_feed_rebuilds(watcher: Watcher, state: PreviewState, config: Path) -> None:
    feed = config.parent / "examples" / "feeds" / "statecraft.rss"
    shown = last_good(state).text
    titles = re.findall(r"<item>.*?<title>(.*?)</title>", feed.read_text(encoding="utf-8"), re.S)
    in_issue = next(t for t in titles if html.unescape(t) in shown)
    edit(feed, f"<title>{in_issue}</title>", "<title>A title edited in the feed</title>")
    wait_for(lambda: state.status.generation >= 2)
    assert state.status.ok
    assert "A title edited in the feed" in last_good(state).html
    # The rebuild wrote the feed cache beside the config: that must not trigger another one.
    assert watcher.wait_quiet(), "the watcher never settled"
    assert state.status.generation == 2


def test_editing_a_template_or_the_config_rebuilds(watcher: Watcher, state: PreviewState, config: Path) -> None:
    edit(config.parent / "my-templates" / "issue.html.j2", "{% endif %}", "{% endiff %}")
    wait_for(lambda: state.status.generation >= 2)
    assert state.status.error and "endiff" in state.status.error

    edit(config.parent / "my-templates" / "issue.html.j2", "{% endiff %}", "{% endif %}<!-- again -->")
    wait_for(lambda: state.status.generation >= 3)
    assert state.status.ok and "<!-- again -->" in last_good(state).html

    edit(config, 'subject = "{newsletter}: {lead_title}"', 'subject = "{issue} - {lead_title}"')
    wait_for(lambda: state.status.generation >= 4)
    assert last_good(state).subject.startswith("2026-W48 - ")


def test_an_editor_saving_by_rename_is_seen(watcher: Watcher, state: PreviewState, config: Path) -> None:
    template = config.parent / "my-templates" / "issue.html.j2"
    tmp = template.with_name(".issue.html.j2.swp")
    tmp.write_text(template.read_text(encoding="utf-8").replace("</body>", "<!-- renamed --></body>"))
    os.replace(tmp, template)
    wait_for(lambda: state.status.generation >= 2)
    assert "<!-- renamed -->" in last_good(state).html


# --- serve and the CLI ------------------------------------------------------------------------


def test_cli_preview_serves_on_a_free_port_and_stops_cleanly_on_ctrl_c(config: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digest",
            "preview",
            "--config",
            str(config),
            "--now",
            "2026-11-27T09:00",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"Previewing 2026-W48 at (http://127\.0\.0\.1:(\d+)/) \(Ctrl-C to stop\)\n", line)
        assert match, line
        assert int(match.group(2)) != 0
        url = match.group(1)
        state = httpx.get(url + "api/state", timeout=10).json()
        assert state["ok"] is True and state["issue"] == "2026-W48"
        assert httpx.get(url, timeout=10).status_code == 200
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "interrupted" not in err
    assert "INFO" not in err  # uvicorn stays quiet


def test_cli_preview_with_a_broken_config_serves_the_error(config: Path) -> None:
    edit(config, "min_items = 3", "min_itemz = 3")
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "preview", "--config", str(config), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = re.search(r"http://\S+/", proc.stdout.readline())
        assert url
        assert "min_itemz" in httpx.get(url.group(0), timeout=10).text
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    errors = [line for line in err.splitlines() if "min_itemz" in line]
    assert len(errors) == 1 and errors[0].startswith("digest: rebuild failed: ")


def test_serve_reports_a_port_in_use_as_one_error(config: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DigestError, match=rf"cannot listen on 127\.0\.0\.1:{port}"):
            serve(config, host="127.0.0.1", port=port, now=NOW, open_browser=False)


def test_serve_needs_an_existing_config(tmp_path: Path) -> None:
    with pytest.raises(DigestError, match="no such config file"):
        serve(tmp_path / "nope.toml", host="127.0.0.1", port=0, now=None, open_browser=False)


# --- In a real browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, PreviewState]]:
    """The preview app on a free 127.0.0.1 port serving the sample issue, plus its state."""
    config = copy_sample(tmp_path_factory.mktemp("live") / "site")
    state = PreviewState(config, now=NOW)
    assert state.rebuild().ok, state.status.error
    with serve_app(create_app(state)) as base:
        yield base, state


@pytest.fixture
def context(context: BrowserContext) -> BrowserContext:
    """The sample's images live on a host that does not exist: the browser gets placeholder
    images of a photo's shape instead, so it lays out loaded images."""
    context.route(f"{SAMPLE_MEDIA}**", answer_with_placeholder)
    return context


@dataclass(frozen=True)
class Metrics:
    """What the page measured of itself, in a viewport of ``viewport_width`` px."""

    viewport_width: int
    inner_width: int
    scroll_width: int
    text: str
    images: list[dict[str, Any]]
    overflowing: list[str]

    def images_without_size(self) -> list[str]:
        return [i["src"] for i in self.images if not (i["width_attr"] and i["height_attr"])]


# The page's width, its text, its images and up to ten elements drawn past the viewport's right edge.
_MEASURE = """() => {
  const root = document.documentElement, vw = window.innerWidth, over = [];
  document.querySelectorAll('body *').forEach(el => {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > vw + 0.5 && over.length < 10) {
      over.push(el.tagName.toLowerCase() + (el.className ? '.' + String(el.className).split(' ').join('.') : '')
                + ' right=' + Math.round(r.right));
    }
  });
  const images = [...document.images].map(img => ({
    src: img.getAttribute('src') || '', alt: img.getAttribute('alt'),
    width_attr: img.getAttribute('width'), height_attr: img.getAttribute('height'),
    rendered_width: Math.round(img.getBoundingClientRect().width),
    loaded: img.complete && img.naturalWidth > 0,
  }));
  return {
    inner_width: vw, scroll_width: Math.max(root.scrollWidth, document.body ? document.body.scrollWidth : 0),
    text: document.body ? document.body.innerText : '', images, overflowing: over,
  };
}"""


def measure(page: Page, url: str, *, width: int, height: int = 900) -> Metrics:
    """Open ``url`` in a ``width`` px viewport; measured once it (images included) has loaded."""
    page.set_viewport_size({"width": width, "height": height})
    page.goto(url)
    return Metrics(viewport_width=width, **page.evaluate(_MEASURE))


def _shoot(page: Page, name: str, tmp_path: Path, *, full_page: bool) -> Path:
    """A screenshot of the page as it is now (the viewport, or the whole page), also kept in
    ``SHOTS`` for a person to look at."""
    shot = tmp_path / name
    page.screenshot(path=shot, full_page=full_page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SHOTS / name)
    return shot


@pytest.mark.browser
@pytest.mark.parametrize("width", [PHONE_WIDTH, 600, DESKTOP_WIDTH])
def test_the_issue_fits_the_width_in_a_real_browser(
    page: Page, live: tuple[str, PreviewState], tmp_path: Path, width: int
) -> None:
    base, state = live
    good = state.status.good
    assert good is not None
    metrics = measure(page, f"{base}/issue.html", width=width)
    assert metrics.inner_width == width
    assert metrics.scroll_width <= width, f"horizontal overflow at {width} px: {metrics.overflowing}"
    assert not metrics.overflowing, metrics.overflowing
    assert good.lead_title in metrics.text
    assert metrics.images, "the sample issue has images"
    assert not metrics.images_without_size(), "every image needs width and height attributes"
    assert all(i["alt"] for i in metrics.images), "every image needs alt text"
    assert all(i["rendered_width"] <= width for i in metrics.images)
    assert all(i["loaded"] for i in metrics.images), [i["src"] for i in metrics.images if not i["loaded"]]

    shot = _shoot(page, f"issue-{width}.png", tmp_path, full_page=True)
    assert not is_blank(shot)
    cut = right_edge_clear(shot)
    assert not cut, f"something is drawn into the right edge at {width} px (rows {cut[:5]}...)"


@pytest.mark.browser
@pytest.mark.parametrize("width", [PHONE_WIDTH, 600, 1440])
def test_the_editor_page_in_a_real_browser(
    page: Page, live: tuple[str, PreviewState], tmp_path: Path, width: int
) -> None:
    base, state = live
    good = state.status.good
    assert good is not None
    metrics = measure(page, base + "/", width=width, height=1600)
    assert metrics.scroll_width <= width, f"the editor's page overflows at {width} px: {metrics.overflowing}"
    assert good.subject in metrics.text
    # The desktop frame is sized to the whole issue once it loaded.
    expect(page.get_by_title("The issue on a desktop")).to_have_attribute(
        "style", re.compile(r"width: 680px; height: \d{4,}px")
    )
    assert page.content().count('<iframe src="/issue.html"') == 2
    shot = _shoot(page, f"editor-{width}.png", tmp_path, full_page=False)
    assert not is_blank(shot)


def _escaped(text: str) -> str:
    """How jinja2's autoescape writes ``text`` (apostrophes and quotes as entities)."""
    import markupsafe

    return str(markupsafe.escape(text))


@pytest.mark.browser
def test_the_editor_page_shows_a_failed_rebuild_above_the_last_good_issue(page: Page, tmp_path: Path) -> None:
    config = copy_sample(tmp_path / "site", templates=True)
    state = PreviewState(config, now=NOW)
    assert state.rebuild().ok
    edit(config, "min_items = 3", "min_items = 30")  # a thin week: warnings too
    assert state.rebuild().ok
    edit(config.parent / "my-templates" / "issue.html.j2", "{% endif %}", "{% endiff %}")
    error = state.rebuild().error
    assert error
    page.set_viewport_size({"width": 1280, "height": 900})
    with serve_app(create_app(state)) as base:
        page.goto(base + "/")
        dom = page.content()
        shot = _shoot(page, "editor-error-1280.png", tmp_path, full_page=False)
    alert = dom.index('role="alert"')
    assert alert < dom.index('id="warnings"') < dom.index("<iframe"), "the error comes first, then warnings"
    assert error in html.unescape(dom) and "thin week" in dom
    assert dom.count('<iframe src="/issue.html"') == 2
    assert not is_blank(shot)


@pytest.mark.browser
def test_the_editor_page_reloads_itself_when_the_issue_is_rebuilt(page: Page, tmp_path: Path) -> None:
    state = PreviewState(copy_sample(tmp_path / "site"), now=NOW)
    assert state.rebuild().generation == 1
    app = create_app(state)
    polls = 0

    async def rebuild_on_first_poll(scope: Any, receive: Any, send: Any) -> None:
        nonlocal polls
        if scope["type"] == "http" and scope["path"] == "/api/state":
            polls += 1
            if polls == 1:  # as if the editor saved a file right after the page loaded
                state.rebuild()
        await app(scope, receive, send)

    def a_poll(response: Response) -> bool:
        return response.url.endswith("/api/state")

    # Playwright's clock runs the page's one-second polls without waiting for them.
    page.clock.install()
    with serve_app(rebuild_on_first_poll) as base:
        page.goto(base + "/")
        with page.expect_navigation():  # the reload
            page.clock.run_for(1000)
        with page.expect_response(a_poll):  # the reloaded page polls, and stays
            page.clock.run_for(1000)
        dom = page.content()
    assert polls >= 2
    assert re.findall(r"GENERATION = (\d+)", dom) == ["2"], "the page reloaded with the new generation"
