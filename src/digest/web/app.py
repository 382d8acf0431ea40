"""``digest serve``: the subscriber's side of the newsletter, as a small Starlette app.

Routes (every page is plain HTML with inline CSS: no JavaScript, nothing fetched from elsewhere):

- ``GET /unsubscribe?t=TOKEN`` shows a confirmation page with one button and changes nothing,
  because mail scanners and link previewers follow every link in a message. Without a token (the
  link in preview and ``[TEST]`` copies) it explains that the link came from a preview.
- ``POST /unsubscribe?t=TOKEN`` unsubscribes at once and answers 200: RFC 8058 one-click
  (``List-Unsubscribe=One-Click``, form-urlencoded or multipart, as mailbox providers send it) and
  the confirmation page's button alike. The signed token is the authority, so the body is not
  required to say anything in particular: an unusual provider's POST is still honoured. Repeating
  it is harmless (``Store.suppress`` is idempotent and never weakens a bounce or a complaint).
- ``GET``/``POST /preferences?t=TOKEN``: the subscriber's sections. None or all ticked is stored as
  the empty choice (everything, including sections added later). A section name the page did not
  offer (the sections changed while the page was open) is refused with 400 and the form shown
  again: saving a silently different choice would be worse than asking again.
- ``POST /webhooks/sendgrid``: SendGrid's Event Webhook. Bounces, drops, spam reports and
  unsubscribes suppress the subscriber (by the ``subscriber_id`` custom arg, else by address).
  SendGrid's ECDSA signature (``[web] sendgrid_webhook_key``) is checked over the raw body
  before anything is parsed, and a request signed more than a day ago is refused (see
  ``WEBHOOK_MAX_AGE``). It fails closed: without the key every request is refused (403) and
  ``serve`` says so at start, because an unsigned webhook lets anyone empty the list.
- ``GET /issues/`` and ``GET /issues/<key>``: the public archive of sent issues, the target of
  the emails' view-in-browser link, with every per-recipient part removed.

Tokens travel in URLs, so every response says ``Referrer-Policy: no-referrer``, token pages are
``no-store`` and ``noindex``, and nothing here logs a query string. Database work runs in
Starlette's thread pool so the event loop never waits on a lock; a database error becomes a plain
500 page (and a log line), never a traceback.
"""

from __future__ import annotations

import binascii
import json
import logging
import re
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.config import Settings
from digest.delivery.runner import stored_variant
from digest.delivery.tokens import BadToken, Signer
from digest.errors import ConfigError
from digest.issue.render import archive_copy, format_dates
from digest.listen import listen
from digest.listen import url as url_for
from digest.models import ALL_SECTIONS, SectionChoice
from digest.store import Store, Subscriber, email_key

log = logging.getLogger("digest.web")

PAGE_TEMPLATES = Path(__file__).resolve().parent / "templates"

# Pages need only their own inline CSS; forms post back to us; nobody may frame them.
CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
# An archived issue is the email as sent: its images (article photos, the logo) are remote.
ARCHIVE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # tokens are in our URLs: never hand them to another site
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Cache-Control": "no-store",
}
TOKEN_PAGE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}
ARCHIVE_CACHE = "public, max-age=300"

FORM_LIMIT = 64 * 1024  # a preferences form or a one-click body is a few hundred bytes
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

# SendGrid event -> subscriber status. Everything else (processed, delivered, open, click,
# deferred, group_resubscribe...) is ignored: nothing here ever makes a subscriber active again.
EVENT_STATUS = {
    "bounce": "bounced",
    "dropped": "bounced",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
_STRENGTH = {"unsubscribed": 1, "bounced": 2, "complained": 3}


# --- pages -------------------------------------------------------------------------------------


class PageError(Exception):
    """A request we answer with a plain page and a status (bad link, gone subscriber...)."""

    def __init__(self, status: int, title: str, *lines: str) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.lines = lines


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(PAGE_TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def mask_email(address: str) -> str:
    """``ana.lima@example.net`` -> ``a•••a@example.net``: recognisable to its owner, little to
    anyone a forwarded email's link reaches."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "•••"
    shown = local[0] + "•••" + local[-1] if len(local) >= 4 else local[:1] + "•••"
    return f"{shown}@{domain}"


def _root(request: Request) -> str:
    """A relative prefix from this page to the app's root, so links keep working behind a proxy
    that mounts the app under a path."""
    return "../" * max(0, request.url.path.count("/") - 1)


# --- the webhook's signature ---------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class WebhookReport:
    applied: int
    ignored: int
    unknown: int


def event_status(event: Mapping[str, Any]) -> str | None:
    """The status an event calls for, or None to ignore it.

    A ``bounce`` of type ``blocked`` is a temporary refusal (SendGrid does not suppress it
    either), so it is ignored. A ``dropped`` event names why: an address already on SendGrid's
    unsubscribe or spam lists keeps that meaning; any other drop is treated as a bounce.
    """
    kind = event.get("event")
    status = EVENT_STATUS.get(kind) if isinstance(kind, str) else None
    if status is None:
        return None
    if kind == "bounce" and str(event.get("type", "")).lower() == "blocked":
        return None
    if kind == "dropped":
        reason = str(event.get("reason", "")).lower()
        if "unsubscribe" in reason:
            return "unsubscribed"
        if "spam" in reason:
            return "complained"
    return status


def apply_events(store: Store, events: Sequence[Any]) -> WebhookReport:
    """Suppress the subscribers SendGrid's events name; each at most once, with the strongest
    status its events call for (``Store.suppress`` never weakens one anyway)."""
    wanted: dict[int, str] = {}
    ignored = unknown = 0
    found: dict[tuple[str, str], Subscriber | None] = {}
    for event in events:
        status = event_status(event) if isinstance(event, Mapping) else None
        if status is None:
            ignored += 1
            continue
        subscriber = _event_subscriber(store, event, found)
        if subscriber is None:
            unknown += 1
            continue
        if _STRENGTH[status] > _STRENGTH.get(wanted.get(subscriber.id, ""), 0):
            wanted[subscriber.id] = status
    for subscriber_id, status in wanted.items():
        if store.suppress(subscriber_id, status):
            log.info("subscriber %d %s (SendGrid event)", subscriber_id, status)
    return WebhookReport(applied=len(wanted), ignored=ignored, unknown=unknown)


def _event_subscriber(
    store: Store, event: Mapping[str, Any], found: dict[tuple[str, str], Subscriber | None]
) -> Subscriber | None:
    """The subscriber an event is about: the ``subscriber_id`` custom arg when it names one whose
    address is the event's (an id from an old message could name someone added later), else the
    address."""
    address = event.get("email")
    address = address if isinstance(address, str) and address.strip() else None
    raw_id = event.get("subscriber_id")
    text_id = str(raw_id).strip() if isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) else ""
    if text_id.isascii() and text_id.isdigit() and len(text_id) < 19:
        key = ("id", text_id)
        if key not in found:
            found[key] = store.subscriber_by_id(int(text_id))
        subscriber = found[key]
        if subscriber is not None and (address is None or email_key(address) == email_key(subscriber.email)):
            return subscriber
    if address is None:
        return None
    key = ("email", email_key(address))
    if key not in found:
        found[key] = store.subscriber(address)
    return found[key]


# --- the app -------------------------------------------------------------------------------------


class SecurityHeaders:
    """Adds the security headers to every response that does not set its own (pure ASGI, so
    the router's 404 and 405 answers get them too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


Handler = Callable[[Request], Awaitable[Response]]


def create_app(
    settings: Settings,
    store: Store,
    signer: Signer,
    *,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The subscriber-facing ASGI app over ``store``; ``clock`` is the webhook's idea of now
    (tests replay SendGrid's published example, signed in 2020)."""
    env = _environment()
    name = settings.newsletter.name
    sections = settings.section_names
    webhook_key = load_webhook_key(settings.web.sendgrid_webhook_key) if settings.web.sendgrid_webhook_key else None
    archived: OrderedDict[str, str] = OrderedDict()  # sent issues never change: keep a few pages
    archive_lock = threading.Lock()

    def render(template: str, request: Request, **values: Any) -> str:
        return env.get_template(template).render(newsletter=name, root=_root(request), **values)

    def page(
        request: Request, template: str, status: int = 200, headers: Mapping[str, str] | None = None, **values: Any
    ) -> HTMLResponse:
        return HTMLResponse(render(template, request, **values), status_code=status, headers=dict(headers or {}))

    def problem_page(request: Request, problem: PageError) -> HTMLResponse:
        return page(request, "message.html.j2", problem.status, TOKEN_PAGE, title=problem.title, lines=problem.lines)

    def guarded(handler: Handler) -> Handler:
        """A PageError becomes its page; anything else (a database down, a bug) a logged 500 page
        that shows nothing of the cause."""

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except PageError as problem:
                return problem_page(request, problem)
            except Exception:
                log.exception("%s %s failed", request.method, request.url.path)  # no query: tokens
                return problem_page(
                    request,
                    PageError(
                        500,
                        "Something went wrong",
                        "We could not complete this just now. Please try again in a few minutes.",
                    ),
                )

        return run

    # --- tokens -----------------------------------------------------------------------------

    def token_of(request: Request) -> str:
        token = request.query_params.get("t", "").strip()
        if not token:
            raise PageError(400, "This link is incomplete", "Please use the link exactly as it is in your email.")
        return token

    def subscriber_id_of(token: str) -> int:
        try:
            return signer.subscriber_id(token)
        except BadToken as exc:
            raise PageError(
                400,
                "This link is not valid",
                "It may have been cut short or changed. Please use the link exactly as it is in your email.",
            ) from exc

    async def subscriber_for(token: str) -> Subscriber:
        subscriber = await run_in_threadpool(store.subscriber_by_id, subscriber_id_of(token))
        if subscriber is None:
            raise gone()
        return subscriber

    def gone() -> PageError:
        return PageError(410, "This address is no longer on our list", f"You will not get any more email from {name}.")

    # --- unsubscribe ------------------------------------------------------------------------

    async def unsubscribe_page(request: Request) -> Response:
        if "t" not in request.query_params:
            return page(request, "preview_link.html.j2", headers=TOKEN_PAGE, what="unsubscribe")
        token = token_of(request)
        subscriber = await subscriber_for(token)
        if subscriber.status != "active":
            return page(request, "unsubscribed.html.j2", headers=TOKEN_PAGE, token=token, already=True)
        return page(request, "unsubscribe.html.j2", headers=TOKEN_PAGE, token=token, email=mask_email(subscriber.email))

    async def unsubscribe(request: Request) -> Response:
        token = token_of(request)
        subscriber_id = subscriber_id_of(token)
        body = await read_body(request, FORM_LIMIT)  # not required to say anything: the token decides
        if not await run_in_threadpool(store.suppress, subscriber_id, "unsubscribed"):
            raise gone()
        how = "one-click" if b"One-Click" in body else "the web page"
        log.info("subscriber %d unsubscribed (%s)", subscriber_id, how)
        return page(request, "unsubscribed.html.j2", headers=TOKEN_PAGE, token=token, already=False)

    # --- preferences ------------------------------------------------------------------------

    def chosen_now(subscriber: Subscriber) -> set[str]:
        """The boxes to tick: the stored choice, or all of them when it is empty (or names
        only sections that no longer exist, which sends everything too)."""
        return set(SectionChoice.of(subscriber.sections, sections).sections)

    def preferences_form(
        request: Request,
        token: str,
        subscriber: Subscriber,
        *,
        status: int = 200,
        notice: str = "",
    ) -> Response:
        return page(
            request,
            "preferences.html.j2",
            status,
            TOKEN_PAGE,
            token=token,
            email=mask_email(subscriber.email),
            sections=sections,
            ticked=chosen_now(subscriber),
            suppressed=subscriber.status != "active",
            notice=notice,
        )

    async def preferences_page(request: Request) -> Response:
        if "t" not in request.query_params:
            return page(request, "preview_link.html.j2", headers=TOKEN_PAGE, what="preferences")
        token = token_of(request)
        return preferences_form(request, token, await subscriber_for(token))

    async def save_preferences(request: Request) -> Response:
        token = token_of(request)
        subscriber = await subscriber_for(token)
        form = await read_form(request)
        posted = [value for key, value in form if key == "section"]
        try:
            picked = SectionChoice.of(posted, sections, strict=True)
        except ValueError:
            return preferences_form(
                request,
                token,
                subscriber,
                status=400,
                notice="The list of sections has changed since this page was opened, so nothing was saved. "
                "Please choose again.",
            )
        choice = list(picked.normalised().names)  # every section (or none) is stored as none: later ones too
        if not await run_in_threadpool(store.set_sections, subscriber.id, choice):
            raise gone()
        log.info("subscriber %d chose %s", subscriber.id, f"{len(choice)} section(s)" if choice else "all sections")
        return page(
            request,
            "preferences_saved.html.j2",
            headers=TOKEN_PAGE,
            token=token,
            choice=choice,
            suppressed=subscriber.status != "active",
        )

    # --- the webhook ------------------------------------------------------------------------

    async def sendgrid_webhook(request: Request) -> Response:
        if webhook_key is None:  # no unsigned mode: anyone could mark every subscriber as bounced
            return JSONResponse({"error": WEBHOOK_OFF}, status_code=403)
        try:
            body = await read_body(request, WEBHOOK_LIMIT)
        except PageError as problem:
            return JSONResponse({"error": problem.title}, status_code=problem.status)
        refused = _check_signature(request, body, webhook_key)
        if refused:
            log.warning("SendGrid webhook refused: %s", refused)
            return JSONResponse({"error": refused}, status_code=403)
        try:
            events = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if not isinstance(events, list):
            return JSONResponse({"error": "the body is not a JSON array of events"}, status_code=400)
        try:
            report = await run_in_threadpool(apply_events, store, events)
        except Exception:
            log.exception("SendGrid webhook: applying %d event(s) failed; SendGrid will retry", len(events))
            return JSONResponse({"error": "internal error"}, status_code=500)
        return JSONResponse({"applied": report.applied, "ignored": report.ignored, "unknown": report.unknown})

    def _check_signature(request: Request, body: bytes, key: Any) -> str:
        """Why the request's signature is not acceptable, or "" when it is."""
        signature = request.headers.get(SIGNATURE_HEADER, "")
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        if not signature or not timestamp:
            return "missing signature headers"
        if not re.fullmatch(r"[0-9]{1,12}", timestamp):
            return "malformed timestamp"
        if not verify_signature(key, body, signature, timestamp):
            return "bad signature"
        age = clock() - int(timestamp)
        if age > WEBHOOK_MAX_AGE + CLOCK_SKEW or age < -CLOCK_SKEW:
            return "timestamp outside the accepted window"
        return ""

    # --- the archive ------------------------------------------------------------------------

    async def archive(request: Request) -> Response:
        issues = await run_in_threadpool(store.sent_issues)
        zone = settings.newsletter.zone
        rows = [
            {
                "key": record.key,
                "subject": record.subject,
                "dates": format_dates(record.window_start.astimezone(zone), record.window_end.astimezone(zone)),
            }
            for record in issues
        ]
        return page(request, "archive.html.j2", headers={"Cache-Control": ARCHIVE_CACHE}, issues=rows)

    def archived_issue(key: str) -> str | None:
        with archive_lock:
            if key in archived:
                archived.move_to_end(key)
                return archived[key]
        record = store.issue(key)
        if record is None or record.status not in ("sending", "sent"):
            return None
        html = archive_copy(stored_variant(store, key, ALL_SECTIONS).html)
        with archive_lock:
            archived[key] = html
            while len(archived) > 16:
                archived.popitem(last=False)
        return html

    async def issue_page(request: Request) -> Response:
        key = request.path_params["key"]
        html = await run_in_threadpool(archived_issue, key) if len(key) <= 64 else None
        if html is None:
            raise PageError(
                404, "No such issue", "There is no sent issue at this address.", "All past issues are in the archive."
            )
        return HTMLResponse(html, headers={"Content-Security-Policy": ARCHIVE_CSP, "Cache-Control": ARCHIVE_CACHE})

    async def home(request: Request) -> Response:
        return RedirectResponse("issues/", status_code=307)

    # --- errors from the router (404, 405) ----------------------------------------------------

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        titles = {404: "Page not found", 405: "Not allowed"}
        response = page(
            request,
            "message.html.j2",
            exc.status_code,
            title=titles.get(exc.status_code, "Something is not right"),
            lines=("There is nothing at this address.",) if exc.status_code == 404 else (),
        )
        for header, value in (exc.headers or {}).items():
            response.headers[header] = value
        return response

    routes = [
        Route("/", guarded(home), methods=["GET"]),
        Route("/unsubscribe", guarded(unsubscribe_page), methods=["GET"]),
        Route("/unsubscribe", guarded(unsubscribe), methods=["POST"]),
        Route("/preferences", guarded(preferences_page), methods=["GET"]),
        Route("/preferences", guarded(save_preferences), methods=["POST"]),
        Route("/webhooks/sendgrid", sendgrid_webhook, methods=["POST"]),
        Route("/issues/", guarded(archive), methods=["GET"]),
        Route("/issues/{key}", guarded(issue_page), methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={HTTPException: http_error},
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) past ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PageError(413, "Request too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PageError(413, "Request too large")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request) -> list[tuple[str, str]]:
    """A form-urlencoded body (what a browser posts for our forms) as (name, value) pairs.

    Parsed with the standard library: Starlette's own form parser needs python-multipart, a
    dependency this one form does not justify.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("", "application/x-www-form-urlencoded"):
        raise PageError(415, "This form could not be read", "Please go back, reload the page and try again.")
    body = await read_body(request, FORM_LIMIT)
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise PageError(400, "This form could not be read", "Please go back, reload the page and try again.") from exc


# --- serving -------------------------------------------------------------------------------------


class _Stopped(Exception):
    """SIGTERM arrived: leave the server loop and return normally."""


@contextmanager
def _sigterm_returns() -> Iterator[None]:
    """Make SIGTERM end ``serve`` normally, like Ctrl-C.

    uvicorn catches SIGINT and SIGTERM itself, shuts down gracefully (requests in flight finish),
    then re-raises the signal to the handler that was there before. Installing this one first
    turns that re-raised SIGTERM into an exception ``serve`` catches, so Docker and systemd see
    exit code 0 instead of a death by signal.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stopped

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(settings: Settings, *, host: str, port: int) -> None:
    """Serve the subscriber-facing app with uvicorn until Ctrl-C or SIGTERM (both return normally).

    One process and one event loop; every database call runs in Starlette's thread pool (40
    threads), so a slow write never stalls other requests, and SQLite's writers queue on its
    busy timeout (``BEGIN IMMEDIATE``) instead of failing. Port 0 picks a free port; the real
    address is printed. No access log: URLs carry tokens.
    """
    import click
    import uvicorn

    signer = Signer.from_env()  # refuse to start without the secret that checks every link
    store = Store.open(settings.database_url)
    try:
        app = create_app(settings, store, signer)
        if not settings.web.sendgrid_webhook_key:
            log.warning("%s: /webhooks/sendgrid refuses every request (403) until then", WEBHOOK_OFF)
        sock = listen(host, port)
        try:
            url = url_for(host, sock.getsockname()[1])
            config = uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                lifespan="off",
                server_header=False,
                timeout_graceful_shutdown=10,
            )
            server = uvicorn.Server(config)
            click.echo(f"Serving {settings.newsletter.name} at {url} (Ctrl-C to stop)")
            log.info("serving at %s", url)
            with _sigterm_returns(), suppress(KeyboardInterrupt, _Stopped):
                server.run(sockets=[sock])
            log.info("stopped")
        finally:
            sock.close()
    finally:
        store.close()
