"""SendGrid's Event Webhook: the posted JSON read into typed events that say what happened to whom.

SendGrid posts a JSON array of event objects, in batches, and retries a refused post for a day.
The ``custom_args`` the SendGrid transport puts on every message (``subscriber_id`` per recipient,
``issue`` per request) come back as top-level keys of each event, so an event names the
subscriber even after an address changed case. The parsing lives here, beside the transport that
sets those arguments; ``digest.web.webhooks`` checks the request's signature and applies the
events. Everything is read defensively: a value of an unexpected type is treated as absent,
never as an error, because one odd event must not make SendGrid retry the whole batch for a day.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

# What an event means for the list. Anything else (processed, delivered, deferred, open, click,
# group_resubscribe...) has no kind: nothing SendGrid reports ever makes a subscriber active again.
Kind = Literal["bounce", "complaint", "unsubscribe"]
KINDS: dict[str, Kind] = {
    "bounce": "bounce",
    "dropped": "bounce",
    "spamreport": "complaint",
    "unsubscribe": "unsubscribe",
    "group_unsubscribe": "unsubscribe",
}
MAX_ID_DIGITS = 18  # a subscriber id fits a signed 64-bit integer; longer is not one of ours


class EventsError(ValueError):
    """The posted body is not SendGrid's JSON array of events (the message says which)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One SendGrid event, normalised.

    ``kind`` is what happened as far as the list is concerned, or None when it calls for nothing;
    ``name`` is SendGrid's own event name (``dropped``, ``group_unsubscribe``...), "" if missing.
    """

    kind: Kind | None
    name: str
    email: str | None
    subscriber_id: int | None
    issue: str | None
    at: datetime | None


def parse_events(body: bytes) -> list[Event]:
    """The events of one webhook post, in order, one per array element (odd elements included,
    with no kind, so a caller can count them), or an EventsError."""
    try:
        posted = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise EventsError("the body is not JSON") from exc
    if not isinstance(posted, list):
        raise EventsError("the body is not a JSON array of events")
    return [parse_event(item) for item in posted]


def parse_event(item: Any) -> Event:
    """One element of the posted array as an Event (anything but an object is an empty one)."""
    if not isinstance(item, Mapping):
        return Event(kind=None, name="", email=None, subscriber_id=None, issue=None, at=None)
    name = item.get("event")
    name = name if isinstance(name, str) else ""
    email = item.get("email")
    issue = item.get("issue")
    return Event(
        kind=event_kind(item, name),
        name=name,
        email=email if isinstance(email, str) and email.strip() else None,
        subscriber_id=_subscriber_id(item.get("subscriber_id")),
        issue=issue if isinstance(issue, str) and issue else None,
        at=_moment(item.get("timestamp")),
    )


def event_kind(item: Mapping[str, Any], name: str) -> Kind | None:
    """What an event named ``name`` means for the list, or None.

    A ``bounce`` of type ``blocked`` is a temporary refusal (SendGrid does not suppress it
    either), so it has no kind. A ``dropped`` event says why: an address already on SendGrid's
    unsubscribe or spam lists keeps that meaning; any other drop is a bounce.
    """
    kind = KINDS.get(name)
    if kind is None:
        return None
    if name == "bounce" and str(item.get("type", "")).lower() == "blocked":
        return None
    if name == "dropped":
        reason = str(item.get("reason", "")).lower()
        if "unsubscribe" in reason:
            return "unsubscribe"
        if "spam" in reason:
            return "complaint"
    return kind


def _subscriber_id(raw: Any) -> int | None:
    """The ``subscriber_id`` custom arg (sent as a string; a number is accepted) as an id, or None."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        return None
    text = str(raw).strip()
    if text.isascii() and text.isdigit() and len(text) <= MAX_ID_DIGITS:
        return int(text)
    return None


def _moment(raw: Any) -> datetime | None:
    """SendGrid's ``timestamp`` (Unix seconds) as an aware datetime, or None if it is not one."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return None
    try:
        return datetime.fromtimestamp(raw, UTC)
    except (OverflowError, OSError, ValueError):
        return None
