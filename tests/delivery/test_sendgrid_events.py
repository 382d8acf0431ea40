"""SendGrid's Event Webhook posts read into normalised events (``sendgrid_events``): what happened
to whom, for which issue, when; odd values are absent rather than errors, and only a body that is
not a JSON array is refused. Applying them to the list is tested end to end in test_web.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from digest.delivery.transports.sendgrid_events import Event, EventsError, parse_event, parse_events


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ({"event": "bounce"}, "bounce"),
        ({"event": "bounce", "type": "bounce"}, "bounce"),
        ({"event": "bounce", "type": "blocked"}, None),  # temporary: SendGrid does not suppress it either
        ({"event": "bounce", "type": "BLOCKED"}, None),
        ({"event": "dropped", "reason": "Invalid"}, "bounce"),
        ({"event": "dropped", "reason": "Bounced Address"}, "bounce"),
        ({"event": "dropped", "reason": "Spam Reporting Address"}, "complaint"),
        ({"event": "dropped", "reason": "Unsubscribed Address"}, "unsubscribe"),
        ({"event": "spamreport"}, "complaint"),
        ({"event": "unsubscribe"}, "unsubscribe"),
        ({"event": "group_unsubscribe"}, "unsubscribe"),
        ({"event": "group_resubscribe"}, None),  # nothing SendGrid says makes a subscriber active again
        ({"event": "delivered"}, None),
        ({"event": "click"}, None),
        ({"event": ["bounce"]}, None),
        ({}, None),
    ],
)
def test_what_each_event_means_for_the_list(event: dict[str, Any], kind: str | None) -> None:
    assert parse_event(event).kind == kind


def test_an_event_as_sendgrid_posts_it_names_subscriber_issue_and_moment() -> None:
    posted = [
        {
            "email": "Ben.Okafor@Example.org",
            "event": "group_unsubscribe",
            "timestamp": 1795770000,
            "issue": "2026-W48",
            "subscriber_id": "42",
            "asm_group_id": 7,
            "sg_event_id": "e1",
        }
    ]
    assert parse_events(json.dumps(posted).encode()) == [
        Event(
            kind="unsubscribe",
            name="group_unsubscribe",
            email="Ben.Okafor@Example.org",
            subscriber_id=42,
            issue="2026-W48",
            at=datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
        )
    ]


@pytest.mark.parametrize(
    ("raw", "subscriber_id"),
    [("42", 42), (" 42 ", 42), (42, 42), ("not-a-number", None), ("-1", None), ("٤٢", None), (True, None),
     ("9" * 18, int("9" * 18)), ("9" * 19, None), (4.2, None), (None, None)],
)  # fmt: skip
def test_a_subscriber_id_that_is_not_one_of_ours_is_absent(raw: Any, subscriber_id: int | None) -> None:
    assert parse_event({"event": "bounce", "subscriber_id": raw}).subscriber_id == subscriber_id


def test_odd_values_are_absent_and_odd_elements_are_events_of_no_kind() -> None:
    odd = parse_event({"event": "bounce", "email": "  ", "issue": 7, "timestamp": "yesterday"})
    assert (odd.kind, odd.email, odd.issue, odd.at) == ("bounce", None, None, None)
    assert parse_event({"event": "bounce", "timestamp": 10**20}).at is None
    assert parse_event({"event": "bounce", "timestamp": True}).at is None
    # An element that is not an object is still counted by whoever reads the batch: one per element.
    events = parse_events(b'[1, "bounce", null, [], {"event": "spamreport", "email": "a@example.org"}]')
    assert [e.kind for e in events] == [None, None, None, None, "complaint"]
    assert events[0] == Event(kind=None, name="", email=None, subscriber_id=None, issue=None, at=None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'[{"event": "bounce", "email": ', "the body is not JSON"),
        (b"", "the body is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "the body is not JSON"),
        (b'{"event": "bounce"}', "the body is not a JSON array of events"),
        (b'"bounce"', "the body is not a JSON array of events"),
    ],
)
def test_a_body_that_is_not_an_array_of_events_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(EventsError, match=message):
        parse_events(body)
