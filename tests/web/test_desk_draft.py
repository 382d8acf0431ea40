"""The draft at the desk: what it shows is what `digest preview` shows and `digest send` sends,
and each change an editor makes there (pin, move, exclude, restore, subject, preheader, note)
goes through the function the CLI uses and rebuilds the draft. On the bundled sample, with the
scheduler's review job building the draft, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from desking import EDITOR, KEY, SEND_AT, Desk, open_desk
from digest.delivery import shown, weekly

SITE = "https://responsiblestatecraft.example/2026/11"
TAIWAN, JAPAN, CAMP_DAVID, INDIA = (
    f"{SITE}/25/strategic-ambiguity-taiwan",
    f"{SITE}/25/japan-counterstrike-missiles",
    f"{SITE}/23/camp-david-trilateral",
    f"{SITE}/21/india-global-south",
)
LEAD = f"{SITE}/21/nationalize-defense-primes"


@pytest.fixture
def desk(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Desk]:
    with open_desk(tmp_path, database_url, monkeypatch) as opened:
        yield opened


def test_the_draft_page_shows_the_issue_as_preview_does(desk):
    page = desk.page()
    expected = shown.snapshot(desk.settings, weekly.outgoing(desk.settings, desk.store, SEND_AT), SEND_AT)
    assert f'<div class="subject" id="subject">{expected.subject}</div>' in page
    assert expected.preheader and expected.preheader[:40] in page
    assert f"{expected.from_name} <span>&lt;{expected.from_email}&gt;</span>" in page
    assert 'width="680"' in page and 'width="375"' in page  # the desktop and phone frames
    assert page.count(f'src="../../desk/issues/{KEY}/frame?variant=all"') == 2
    assert f"{expected.html_bytes / 1024:.1f} KB of 90 KB" in page
    frame = desk.client.get(f"/desk/issues/{KEY}/frame?variant=all")
    assert frame.status_code == 200 and frame.text == expected.html
    assert "frame-ancestors 'self'" in frame.headers["content-security-policy"]
    assert desk.client.get(f"/desk/issues/{KEY}/text").text == expected.text
    assert EDITOR in page


def test_excluding_leaves_an_article_out_of_the_rebuilt_draft_and_restoring_brings_it_back(desk):
    assert JAPAN in desk.section("Asia-Pacific")
    desk.change("exclude", JAPAN)
    assert JAPAN not in desk.section("Asia-Pacific")
    assert "japan-counterstrike-missiles" not in desk.stored()[1]
    page = desk.page("?done=exclude")
    assert "Excluded; the draft is rebuilt." in page
    assert re.search(r"<h3>Excluded</h3>\s*<ul class=\"articles\">\s*<li>\s*<span class=\"title\">" + JAPAN, page)
    assert desk.store.issues.edits(KEY) == ([], [JAPAN])  # recorded as `digest exclude` records it
    desk.change("restore", JAPAN)
    assert desk.section("Asia-Pacific") == [TAIWAN, JAPAN, CAMP_DAVID, INDIA]
    assert desk.store.issues.edits(KEY) == ([], [])


def test_moving_an_article_changes_its_place_in_its_section_and_keeps_it_through_rebuilds(desk):
    assert desk.section("Asia-Pacific") == [TAIWAN, JAPAN, CAMP_DAVID, INDIA]
    desk.change("up", INDIA)
    desk.change("up", INDIA)
    assert desk.section("Asia-Pacific") == [TAIWAN, INDIA, JAPAN, CAMP_DAVID]
    html = desk.stored()[1]
    assert html.index("india-global-south") < html.index("japan-counterstrike-missiles")
    weekly.rebuild(desk.settings, desk.store, KEY)  # as the next change, or `digest pin`, would
    assert desk.section("Asia-Pacific") == [TAIWAN, INDIA, JAPAN, CAMP_DAVID]
    assert desk.lead() == LEAD  # moving within a section never makes a new lead
    assert '<span class="tag">moved</span>' in desk.page()
    desk.change("down", TAIWAN)
    assert desk.section("Asia-Pacific") == [INDIA, TAIWAN, JAPAN, CAMP_DAVID]


def test_moves_and_pins_agree(desk):
    desk.change("pin", CAMP_DAVID)  # pinned: first in its section
    assert desk.section("Asia-Pacific") == [CAMP_DAVID, TAIWAN, JAPAN, INDIA]
    desk.change("up", JAPAN)  # among the unpinned: stays below the pin
    assert desk.section("Asia-Pacific") == [CAMP_DAVID, JAPAN, TAIWAN, INDIA]
    desk.change("up", JAPAN)  # above the pin: pinned too, first
    assert desk.section("Asia-Pacific") == [JAPAN, CAMP_DAVID, TAIWAN, INDIA]
    assert desk.store.issues.edits(KEY)[0] == [JAPAN, CAMP_DAVID]
    desk.change("down", CAMP_DAVID)  # below the unpinned one: no longer pinned
    assert desk.section("Asia-Pacific") == [JAPAN, TAIWAN, CAMP_DAVID, INDIA]
    assert desk.store.issues.edits(KEY)[0] == [JAPAN]


def test_moving_the_first_article_up_is_refused_with_the_reason_and_changes_nothing(desk):
    page = desk.change("up", TAIWAN, code=400)
    assert f"{TAIWAN} is already first in Asia-Pacific" in page
    assert desk.section("Asia-Pacific") == [TAIWAN, JAPAN, CAMP_DAVID, INDIA]


def test_subject_preheader_and_a_markdown_note_open_both_parts(desk):
    note = "A **busy** week in Asia.\n\n<script>alert(1)</script> Read [the brief](https://example.org/brief)."
    desk.front(subject="Taiwan, Japan and the Gulf", preheader="Five things to read this week", note=note)
    subject, html, text = desk.stored()
    assert subject == "Taiwan, Japan and the Gulf"
    assert "Five things to read this week" in html
    assert "<strong>busy</strong>" in html and "<script>" not in html
    assert '<a href="https://example.org/brief"' in html
    assert "A **busy** week in Asia." in text
    page = desk.page()
    assert '<div class="subject" id="subject">Taiwan, Japan and the Gulf</div>' in page
    assert 'id="preheader">Five things to read this week</div>' in page
    assert desk.store.issues.front(KEY).note == note.strip()
    weekly.rebuild(desk.settings, desk.store, KEY)
    assert desk.stored()[0] == "Taiwan, Japan and the Gulf"  # kept through a rebuild
    desk.front(subject="", preheader="", note="")
    assert desk.stored()[0] != "Taiwan, Japan and the Gulf" and "<strong>busy</strong>" not in desk.stored()[1]


def test_a_subject_too_long_is_refused_and_nothing_is_saved(desk):
    page = desk.front(subject="x" * 201, preheader="", note="", code=400)
    assert "the subject is longer than 200 characters; shorten it" in page
    assert desk.store.issues.front(KEY).subject == ""


def test_an_approved_issue_is_shown_but_not_changed(desk):
    weekly.approve(desk.store, KEY)
    page = desk.page()
    assert "This issue is approved: its articles are as recorded." in page
    assert 'value="exclude"' not in page
    refused = desk.change("up", INDIA, code=400)
    assert f"{KEY} is not a draft: only a draft&#39;s articles can be moved" in refused


def test_an_issue_that_is_not_recorded_is_a_plain_404(desk):
    answer = desk.client.get("/desk/issues/2026-W49")
    assert answer.status_code == 404 and "No issue 2026-W49 to show" in answer.text
    assert desk.client.get("/desk/issues/2026-W99").status_code == 404
