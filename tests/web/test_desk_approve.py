"""Test copies, approval and its withdrawal, and the audit log at the desk: a [TEST] copy goes to
the editor and the listed addresses and nowhere in the ledger; the approved snapshot, with who
approved it and when, is exactly what `digest send` then sends; every desk action is logged
with who, what, when and which issue. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner

from desking import EDITOR, KEY, SEND_AT, Desk, open_desk
from digest.cli import cli
from digest.delivery.send import send_issue

NOTE = "A **busy** week: read [the brief](https://example.org/brief)."


@pytest.fixture
def desk(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Desk]:
    with open_desk(tmp_path, database_url, monkeypatch) as opened:
        yield opened


def outbox(desk: Desk, folder: str) -> list[EmailMessage]:
    found = sorted((desk.config.parent / ".digest" / "outbox" / folder).glob("*.eml"))
    messages = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in found]
    assert all(isinstance(m, EmailMessage) for m in messages)
    return messages  # type: ignore[return-value]


def body(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None
    return part.get_content()


def test_a_test_copy_goes_to_the_editor_and_the_listed_addresses_and_nowhere_in_the_ledger(desk):
    desk.front(subject="", preheader="", note=NOTE)
    desk.post("test", to="chief@example.org, copy@example.net")
    copies = outbox(desk, f"test-{KEY}")
    assert sorted(m["To"] for m in copies) == ["chief@example.org", "copy@example.net", EDITOR]
    subject = desk.stored()[0]
    assert {m["Subject"] for m in copies} == {f"[TEST] {subject}"}
    assert "<strong>busy</strong>" in body(copies[0], "html") and "A **busy** week" in body(copies[0], "plain")
    assert desk.store.ledger.counts(KEY) == {}  # recorded nowhere
    assert "The [TEST] copies are on their way" in desk.page("?done=test")


def test_a_bad_test_address_is_refused_with_the_reason_and_nothing_is_sent(desk):
    page = desk.post("test", to="chief@example.org not-an-address", code=400)
    assert "&#39;not-an-address&#39; is not a valid email address" in page
    assert outbox(desk, f"test-{KEY}") == []
    assert [e.action for e in desk.store.audit.recent()] == ["sign in"]  # a refusal is not an action


def test_the_approved_snapshot_with_who_and_when_is_what_digest_send_sends(desk):
    desk.front(subject="Taiwan, Japan and the Gulf", preheader="", note=NOTE)
    desk.post("approve")
    record = desk.store.issues.get(KEY)
    assert record is not None and record.status == "approved"
    assert record.approved_by == EDITOR and record.approved_at is not None
    page = desk.page()
    assert re.search(rf"Approved by <strong>{EDITOR}</strong> on \w{{3}} \d{{4}}-\d\d-\d\d \d\d:\d\d", page)
    approved = desk.stored()
    sent = send_issue(desk.settings, desk.store, SEND_AT)
    assert sent.report.counts == {"submitted": 5}
    mails = outbox(desk, KEY)
    assert len(mails) == 5 and {m["Subject"] for m in mails} == {approved[0]} == {"Taiwan, Japan and the Gulf"}
    assert all("<strong>busy</strong>" in body(m, "html") for m in mails)
    assert desk.store.issues.get(KEY).approved_by == EDITOR  # still shown once sent


def test_withdrawing_an_approval_makes_it_a_draft_again_that_is_not_sent(desk):
    desk.post("approve")
    desk.post("withdraw")
    record = desk.store.issues.get(KEY)
    assert record is not None and record.status == "draft" and record.approved_by == ""
    assert "The approval is withdrawn" in desk.page("?done=withdraw")
    refused = desk.post("withdraw", code=400)
    assert f"{KEY} is draft; only an approved issue can be withdrawn" in refused
    desk.change("exclude", "https://responsiblestatecraft.example/2026/11/23/camp-david-trilateral")  # editable again


def test_the_command_line_approves_and_withdraws_through_the_same_functions(desk):
    config = str(desk.config)
    approved = CliRunner().invoke(cli, ["approve", "--config", config, KEY])
    assert approved.exit_code == 0, approved.output
    record = desk.store.issues.get(KEY)
    assert record is not None and record.approved_by.endswith("(digest approve)")
    assert f"approved by {record.approved_by} on" in desk.page()
    withdrawn = CliRunner().invoke(cli, ["withdraw", "--config", config, KEY])
    assert withdrawn.exit_code == 0 and withdrawn.stdout == f"Withdrew the approval of {KEY}; it is a draft again\n"
    assert desk.store.issues.get(KEY).status == "draft"


def test_every_desk_action_is_in_the_audit_log_with_who_what_when_and_which_issue(desk):
    camp_david = "https://responsiblestatecraft.example/2026/11/23/camp-david-trilateral"
    desk.change("exclude", camp_david)
    desk.change("restore", camp_david)
    desk.front(subject="", preheader="", note=NOTE)
    desk.post("test", to="")
    desk.post("approve")
    desk.post("withdraw")
    entries = desk.store.audit.recent()
    assert [(e.action, e.issue_key) for e in entries] == [
        ("withdraw", KEY),
        ("approve", KEY),
        ("test", KEY),
        ("front", KEY),
        ("restore", KEY),
        ("exclude", KEY),
        ("sign in", None),
    ]
    assert {e.editor for e in entries} == {EDITOR}
    assert entries[2].detail == EDITOR and entries[5].detail == camp_david
    log = desk.client.get("/desk/audit").text
    assert log.count(f"<td>{EDITOR}</td><td>") == 7  # who, then what
    assert f'<td>exclude</td><td><a href="../desk/issues/{KEY}">{KEY}</a></td><td>{camp_david}</td>' in log
    assert desk.page().count(f"<td>{EDITOR}</td><td>") == 6  # the issue's own entries on its page
    desk.client.post("/desk/logout", data={"csrf": desk.csrf})
    assert desk.store.audit.recent()[0].action == "sign out"
