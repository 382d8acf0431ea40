"""The desk's history: subscribers week by week (counted from join and suppression times) as a
server-rendered SVG chart, and every issue with its state and figures. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from desking import KEY, SEND_AT, Desk, open_desk
from digest.delivery.desk import Week, subscriber_weeks
from digest.delivery.send import send_issue
from digest.models import SubscriberStatus
from digest.store import NewSubscriber, Store
from digest.store.schema import subscribers, suppressions
from digest.web.desk.chart import line_chart

ZONE = ZoneInfo("America/New_York")


@pytest.fixture
def desk(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Desk]:
    with open_desk(tmp_path, database_url, monkeypatch) as opened:
        yield opened


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZONE)


def test_subscribers_are_counted_week_by_week_from_their_join_and_suppression_times(database_url):
    store = Store.open(database_url)
    try:
        store.subscribers.merge([NewSubscriber(f"r{i}@example.org", f"R{i}") for i in range(4)])
        ids = {s.email: s.id for s in store.subscribers.every()}
        joined = {
            "r0": "2026-11-03 10:00",
            "r1": "2026-11-10 10:00",
            "r2": "2026-11-17 10:00",
            "r3": "2026-11-24 10:00",
        }
        with store.engine.begin() as conn:
            for who, when in joined.items():
                conn.execute(
                    subscribers.update()
                    .where(subscribers.c.id == ids[f"{who}@example.org"])
                    .values(created_at=at(when))
                )
        store.subscribers.suppress(ids["r1@example.org"], SubscriberStatus.UNSUBSCRIBED, source="web page")
        with store.engine.begin() as conn:  # it took effect in W48, before r3 joined
            conn.execute(suppressions.update().values(at=at("2026-11-23 12:00")))
        weeks = subscriber_weeks(store, at("2026-11-27 09:00"), ZONE, weeks=5)
        assert weeks == [
            Week("2026-W44", 0),
            Week("2026-W45", 1),  # r0 (Tue 3 Nov)
            Week("2026-W46", 2),  # r1
            Week("2026-W47", 3),  # r2; r1 left on Monday 23 Nov, in W48
            Week("2026-W48", 3),  # r1 gone, r3 joined: counted at "now", Friday
        ]
    finally:
        store.close()


def test_the_chart_puts_each_week_on_a_round_scale():
    chart = line_chart([Week("2026-W45", 0), Week("2026-W46", 130), Week("2026-W47", 260), Week("2026-W48", 310)])
    assert [v for _, v in chart.y_ticks] == [0, 100, 200, 300, 400]
    ys = [p.y for p in chart.points]
    assert ys[0] == chart.baseline and ys == sorted(ys, reverse=True)  # up the page as the count grows
    assert [round(p.x) for p in chart.points] == [56, 272, 488, 704]
    assert chart.summary == "Active subscribers from 2026-W45 (0) to 2026-W48 (310)."
    single = line_chart([Week("2026-W48", 0)])
    assert [v for _, v in single.y_ticks] == [0, 1] and len(single.points) == 1


def test_the_history_page_lists_issues_with_their_figures_and_draws_the_chart(desk):
    desk.post("approve")
    send_issue(desk.settings, desk.store, SEND_AT)
    dev = desk.store.subscribers.by_email("dev.patel@example.net")
    desk.store.subscribers.suppress(dev.id, SubscriberStatus.UNSUBSCRIBED, source="one-click", issue_key=KEY)
    page = desk.client.get("/desk/history")
    assert page.status_code == 200
    row = re.search(rf'<th scope="row"><a href="../desk/issues/{KEY}">{KEY}</a></th>(.*?)</tr>', page.text, re.S)
    assert row is not None
    cells = re.findall(r'<td class="num">(\d+)</td>', row.group(1))
    assert cells == ["5", "0", "0", "0", "0", "1"]  # delivered, failed, unknown, bounces, complaints, unsubscribes
    assert '<span class="status sent">sent</span>' in row.group(1)
    svg = re.search(r'<svg viewBox="0 0 720 240" role="img".*?</svg>', page.text, re.S)
    assert svg is not None and "<polyline" in svg.group(0)
    assert svg.group(0).count('<circle class="dot"') == 26
    assert re.search(r"<title>\d{4}-W\d\d: 4</title></circle>\s*</svg>", svg.group(0))  # now: 4 active


def test_the_history_of_an_empty_desk_says_so(tmp_path, database_url):
    from desking import add_editor, desk_client, signed_in
    from factories import settings as make_settings

    store = Store.open(database_url)
    try:
        add_editor(store)
        client = desk_client(make_settings(tmp_path), store)
        signed_in(client)
        page = client.get("/desk/history").text
        assert "No issue is recorded yet." in page
        assert "Active subscribers from" in page
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(subscribers)).scalar() == 0
    finally:
        store.close()
