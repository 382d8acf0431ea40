"""``POST /webhooks/sendgrid``: SendGrid's Event Webhook, checked and then applied.

Bounces, drops, spam reports and unsubscribes suppress the subscriber (by the ``subscriber_id``
custom arg, else by address); ``sendgrid_events`` reads the posted JSON. SendGrid's ECDSA
signature (``[web] sendgrid_webhook_key``) is checked over the raw body before anything is
parsed, and a request signed more than a day ago is refused (see ``WEBHOOK_MAX_AGE``). It fails
closed: without the key every request is refused (403) and ``serve`` says so at start, because an
unsigned webhook lets anyone empty the list. Answers are JSON, for SendGrid, not pages.
"""

from __future__ import annotations

import binascii
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from digest.delivery.transports.sendgrid_events import Event, EventsError, Kind, parse_events
from digest.errors import ConfigError
from digest.models import SubscriberStatus
from digest.store import Store, Subscriber, email_key
from digest.web.forms import read_body
from digest.web.pages import PageError
from digest.web.site import Site

log = logging.getLogger("digest.web")

WEBHOOK_LIMIT = 8 * 1024 * 1024  # SendGrid posts events in batches far smaller; refuse only the absurd
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
# SendGrid retries a refused POST for up to 24 hours and does not document whether a retry is
# signed afresh. Refusing old timestamps must not turn a retried complaint into a lost one, and
# a replayed request can only repeat suppressions that already happened (they are idempotent and
# never weaken), so the window is SendGrid's retry period, plus some clock skew either way.
WEBHOOK_MAX_AGE = 24 * 3600
CLOCK_SKEW = 300
WEBHOOK_OFF = "the SendGrid webhook is off until [web] sendgrid_webhook_key is set"

# What each kind of event does to the subscriber; nothing here ever makes one active again.
STATUS: dict[Kind, SubscriberStatus] = {
    "bounce": SubscriberStatus.BOUNCED,
    "complaint": SubscriberStatus.COMPLAINED,
    "unsubscribe": SubscriberStatus.UNSUBSCRIBED,
}


# --- the signature -------------------------------------------------------------------------------


def load_webhook_key(text: str) -> Any:
    """SendGrid's verification key (base64 DER SubjectPublicKeyInfo, as its settings page shows
    it; PEM armour and line breaks are tolerated) as a key object, or a ConfigError at start-up
    rather than a 403 on every event later."""
    from sendgrid.helpers.eventwebhook import EventWebhook

    body = "".join(line for line in text.strip().splitlines() if not line.startswith("-----"))
    body = "".join(body.split())
    try:
        return EventWebhook().convert_public_key_to_ecdsa(body)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            "[web] sendgrid_webhook_key is not a valid public key",
            hint="paste the Verification Key from SendGrid's Mail Settings > Event Webhook page",
        ) from exc


def verify_signature(key: Any, body: bytes, signature: str, timestamp: str) -> bool:
    """True when ``signature`` is SendGrid's ECDSA P-256/SHA-256 signature of timestamp + body.

    The official helper does the check (``sendgrid.helpers.eventwebhook``); it takes text, so
    the body must be UTF-8 (SendGrid's always is, and strict UTF-8 round-trips byte for byte),
    and its base64 and DER errors are turned into False here.
    """
    from sendgrid.helpers.eventwebhook import EventWebhook

    try:
        payload = body.decode("utf-8")
        return bool(EventWebhook().verify_signature(payload, signature, timestamp, key))
    except (UnicodeDecodeError, binascii.Error, ValueError, TypeError):
        return False


def signature_problem(key: Any, request: Request, body: bytes, now: float) -> str:
    """Why the request's signature is not acceptable at ``now``, or "" when it is."""
    signature = request.headers.get(SIGNATURE_HEADER, "")
    timestamp = request.headers.get(TIMESTAMP_HEADER, "")
    if not signature or not timestamp:
        return "missing signature headers"
    if not re.fullmatch(r"[0-9]{1,12}", timestamp):
        return "malformed timestamp"
    if not verify_signature(key, body, signature, timestamp):
        return "bad signature"
    age = now - int(timestamp)
    if age > WEBHOOK_MAX_AGE + CLOCK_SKEW or age < -CLOCK_SKEW:
        return "timestamp outside the accepted window"
    return ""


# --- applying the events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookReport:
    applied: int
    ignored: int
    unknown: int


def apply_events(store: Store, events: Sequence[Event]) -> WebhookReport:
    """Suppress the subscribers SendGrid's events name; each at most once, with the strongest
    status its events call for (``Store.subscribers.suppress`` never weakens one anyway)."""
    wanted: dict[int, SubscriberStatus] = {}
    issue_of: dict[int, str | None] = {}  # the issue the strongest event came from (custom_args)
    ignored = unknown = 0
    found: dict[tuple[str, str], Subscriber | None] = {}
    for event in events:
        if event.kind is None:
            ignored += 1
            continue
        subscriber = _event_subscriber(store, event, found)
        if subscriber is None:
            unknown += 1
            continue
        status = STATUS[event.kind]
        if status.strength > wanted.get(subscriber.id, SubscriberStatus.ACTIVE).strength:
            wanted[subscriber.id] = status
            issue_of[subscriber.id] = event.issue
    for subscriber_id, status in wanted.items():
        if store.subscribers.suppress(subscriber_id, status, source="webhook", issue_key=issue_of[subscriber_id]):
            log.info("subscriber %d %s (SendGrid event)", subscriber_id, status)
    return WebhookReport(applied=len(wanted), ignored=ignored, unknown=unknown)


def _event_subscriber(store: Store, event: Event, found: dict[tuple[str, str], Subscriber | None]) -> Subscriber | None:
    """The subscriber an event is about: the ``subscriber_id`` custom arg when it names one whose
    address is the event's (an id from an old message could name someone added later), else the
    address. ``found`` remembers look-ups across one batch."""
    if event.subscriber_id is not None:
        key = ("id", str(event.subscriber_id))
        if key not in found:
            found[key] = store.subscribers.by_id(event.subscriber_id)
        subscriber = found[key]
        if subscriber is not None and (event.email is None or email_key(event.email) == email_key(subscriber.email)):
            return subscriber
    if event.email is None:
        return None
    key = ("email", email_key(event.email))
    if key not in found:
        found[key] = store.subscribers.by_email(event.email)
    return found[key]


# --- the route -------------------------------------------------------------------------------------


class Webhooks:
    def __init__(self, site: Site) -> None:
        self.site = site
        configured = site.settings.web.sendgrid_webhook_key
        self.key = load_webhook_key(configured) if configured else None  # a bad key stops the app at start

    async def sendgrid(self, request: Request) -> Response:
        if self.key is None:  # no unsigned mode: anyone could mark every subscriber as bounced
            return JSONResponse({"error": WEBHOOK_OFF}, status_code=403)
        try:
            body = await read_body(request, WEBHOOK_LIMIT)
        except PageError as problem:
            return JSONResponse({"error": problem.title}, status_code=problem.status)
        refused = signature_problem(self.key, request, body, self.site.clock())
        if refused:
            log.warning("SendGrid webhook refused: %s", refused)
            return JSONResponse({"error": refused}, status_code=403)
        try:
            events = parse_events(body)
        except EventsError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            report = await run_in_threadpool(apply_events, self.site.store, events)
        except Exception:
            log.exception("SendGrid webhook: applying %d event(s) failed; SendGrid will retry", len(events))
            return JSONResponse({"error": "internal error"}, status_code=500)
        return JSONResponse({"applied": report.applied, "ignored": report.ignored, "unknown": report.unknown})


def routes(site: Site) -> list[BaseRoute]:
    return [Route("/webhooks/sendgrid", Webhooks(site).sendgrid, methods=["POST"])]
