"""An issue going out, at the desk: its counts by state as the page polls them (the JSON the
page's script reads), and afterwards its report, delivered, failed and unknown, and the bounces,
complaints and unsubscribes that came from this issue, in all and per variant. On SQLite and
PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from desking import KEY, SEND_AT, Desk, open_desk
from digest.delivery import queueing, weekly
from digest.delivery.send import send_issue
from digest.delivery.transports.sendgrid_events import Event
from digest.store import email_key
from digest.web.webhooks import apply_events

ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def desk(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Desk]:
    with open_desk(tmp_path, database_url, monkeypatch) as opened:
        yield opened


def progress(desk: Desk) -> dict:
    answer = desk.client.get(f"/desk/issues/{KEY}/progress")
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    return answer.json()


def unsubscribe_link(desk: Desk, address: str) -> str:
    """The List-Unsubscribe link of the copy ``address`` was sent, as a mailbox provider reads it."""
    for path in (desk.config.parent / ".digest" / "outbox" / KEY).glob("*.eml"):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        if email_key(message["To"].addresses[0].addr_spec) == email_key(address):
            return str(message["List-Unsubscribe"]).strip("<>")
    raise AssertionError(f"no copy went to {address}")


def test_the_counts_move_from_waiting_to_delivered_and_the_page_reads_them_live(desk):
    desk.post("approve")
    assert progress(desk) == {"status": "approved", "counts": {}, "total": 0, "done": False}
    page = desk.page()
    assert 'id="progress"' in page and 'data-live="true"' in page
    assert '<script src="../../desk/desk.js" defer></script>' in page
    script = desk.client.get("/desk/desk.js")
    assert script.headers["content-type"].startswith("text/javascript") and "/progress" not in script.text
    weekly.ready_to_send(desk.settings, desk.store, SEND_AT)  # as `digest send` starts: recorded, queued
    queueing.enqueue(desk.store, desk.settings, KEY)
    assert progress(desk) == {"status": "sending", "counts": {"pending": 5}, "total": 5, "done": False}
    send_issue(desk.settings, desk.store, SEND_AT)
    assert progress(desk) == {"status": "sent", "counts": {"submitted": 5}, "total": 5, "done": True}
    page = desk.page()
    assert 'data-live="false"' in page  # sent: nothing more to poll
    assert re.search(r'<strong data-count="submitted">5</strong> of <strong data-total>5</strong>', page)


def test_the_report_counts_what_came_from_this_issue_in_all_and_per_variant(desk):
    desk.post("approve")
    send_issue(desk.settings, desk.store, SEND_AT)
    # Dev unsubscribes with one click from this issue's mail; Ben's address bounces, Chloé complains
    # (SendGrid's events name the issue); Eve's unsubscribe names an issue she was never sent.
    link = unsubscribe_link(desk, "dev.patel@example.net")
    assert link.endswith(f"&i={KEY}")
    one_click = desk.client.post(
        link.removeprefix(desk.settings.newsletter.base_url), content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK
    )
    assert one_click.status_code == 200
    eve = unsubscribe_link(desk, "eve@example.org").replace(KEY, "2026-W40")
    assert (
        desk.client.post(
            eve.removeprefix(desk.settings.newsletter.base_url), content=b"x", headers=ONE_CLICK
        ).status_code
        == 200
    )
    ben, chloe = (desk.store.subscribers.by_email(a) for a in ("ben.okafor@example.org", "chloe@example.com"))
    assert ben is not None and chloe is not None
    apply_events(
        desk.store,
        [
            Event("bounce", "bounce", ben.email, ben.id, KEY, None),
            Event("complaint", "spamreport", chloe.email, chloe.id, KEY, None),
        ],
    )
    report = progress(desk)["counts"]
    assert report == {"submitted": 5, "unsubscribed": 1, "bounced": 1, "complained": 1}
    assert desk.store.subscribers.by_email("eve@example.org").status == "unsubscribed"  # suppressed all the same
    page = desk.page()
    rows = dict(re.findall(r'<tr><th scope="row">([^<]+)</th>((?:<td>\d+</td>)+)</tr>', page))
    cells = {label: [int(n) for n in re.findall(r"<td>(\d+)</td>", tds)] for label, tds in rows.items()}
    # Delivered, Failed, Unknown, Waiting, Skipped, Bounces, Complaints, Unsubscribes
    assert cells["All sections"] == [2, 0, 0, 0, 0, 0, 0, 1]
    assert cells["Asia-Pacific + Middle East"] == [1, 0, 0, 0, 0, 1, 0, 0]
    assert cells["Europe"] == [1, 0, 0, 0, 0, 0, 1, 0]
    assert cells["Military Industrial Complex"] == [1, 0, 0, 0, 0, 0, 0, 0]


def test_an_issue_in_draft_has_no_progress_panel(desk):
    page = desk.page()
    assert 'id="progress"' not in page
    assert progress(desk)["status"] == "draft"
