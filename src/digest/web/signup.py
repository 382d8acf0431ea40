"""``/subscribe`` and ``/confirm``: readers sign themselves up, and confirm by the emailed link.

- ``GET /subscribe`` is the sign-up page: email, an optional name, a choice of sections.
- ``POST /subscribe`` takes the same fields form-encoded (a browser's form, ours or the
  publication's own box) or as JSON (the publication's script; CORS only from
  ``[web] allowed_origins``), plus an optional ``source``. A form gets the "check your inbox"
  page, JSON ``202 {"status": "pending"}``: the same answer whatever the address's state.
- ``GET /confirm?t=TOKEN`` shows one button and changes nothing (mail scanners open links);
  ``POST /confirm?t=TOKEN`` makes the address active; a second time changes nothing more.

The rules (limits, pending, the mail, consent, welcome) are ``delivery.signup``'s; this module
reads requests and writes answers. The per-IP limit counts ``request.client.host``: the peer's
address, or behind a proxy the one uvicorn takes from ``X-Forwarded-For`` when the proxy is in
``$FORWARDED_ALLOW_IPS`` (uvicorn's default: 127.0.0.1).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from digest.delivery.signup import BadSignup, MailNotSent, SignupDesk, check_form, describe
from digest.delivery.tokens import BadToken, ExpiredToken
from digest.web.forms import FORM_LIMIT, TRY_AGAIN, UNREADABLE, read_body
from digest.web.pages import PageError, mask_email
from digest.web.security import TOKEN_PAGE
from digest.web.site import Site, token_of

log = logging.getLogger("digest.web")

SIGNUP_LIMIT = 8 * 1024  # an address, a name, a few section names: far less than this
HONEYPOT = "website"  # a field people never see or fill; bots that fill every field do
FORM_TYPES = ("", "application/x-www-form-urlencoded")
PENDING = {"status": "pending"}
TOO_MANY = "Too many sign-ups from here just now. Please try again later."
NOT_SENT = "We could not send the confirmation email just now. Please try again in a few minutes."


@dataclass(frozen=True, slots=True)
class Posted:
    """The fields of one sign-up post, as text, before they are checked."""

    email: str = ""
    name: str = ""
    sections: tuple[str, ...] = ()
    source: str = ""
    honeypot: str = ""


class Signup:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.sections = site.settings.section_names
        self.desk = SignupDesk(
            site.settings, site.store, site.signer, clock=lambda: datetime.fromtimestamp(site.clock(), UTC)
        )

    # --- the sign-up page and its post -----------------------------------------------------------

    async def page(self, request: Request) -> Response:
        source = request.query_params.get("source", "")[:100]
        return self.form(request, Posted(source=source))

    def form(self, request: Request, posted: Posted, *, status: int = 200, error: BadSignup | None = None) -> Response:
        return self.site.pages.page(
            request,
            "subscribe.html.j2",
            status,
            sections=self.sections,
            posted=posted,
            error=error,
            honeypot=HONEYPOT,
        )

    async def subscribe(self, request: Request) -> Response:
        if request.method == "OPTIONS":  # a preflight CORS did not answer: its origin is not allowed
            return Response(status_code=204, headers={"Allow": "GET, POST, OPTIONS"})
        as_json = _media_type(request) == "application/json"
        ip = request.client.host if request.client else ""
        if not self.desk.limits.ip_allowed(ip):
            return self.refuse(request, as_json, PageError(429, TOO_MANY))
        try:
            posted = await (_read_json(request) if as_json else _read_form(request))
        except PageError as problem:
            return self.refuse(request, as_json, problem)
        if posted.honeypot:
            log.info("sign-up with the hidden field filled in: answered, not taken")
            return self.accepted(request, as_json, posted.email)
        try:
            form = check_form(posted.email, posted.name, posted.sections, posted.source, self.sections)
        except BadSignup as bad:
            if as_json:
                return JSONResponse({"error": bad.message, "field": bad.field}, status_code=400)
            return self.form(request, posted, status=400, error=bad)
        if not self.desk.limits.address_allowed(form.email):
            return self.refuse(request, as_json, PageError(429, TOO_MANY))
        user_agent = request.headers.get("user-agent", "")
        try:
            await run_in_threadpool(self.desk.request, form, ip=ip, user_agent=user_agent)
        except MailNotSent as exc:
            log.error("%s", exc)
            return self.refuse(request, as_json, PageError(503, NOT_SENT))
        return self.accepted(request, as_json, form.email)

    def accepted(self, request: Request, as_json: bool, email: str) -> Response:
        """The one answer to every sign-up taken, whatever became of it."""
        if as_json:
            return JSONResponse(PENDING, status_code=202)
        return self.site.pages.page(
            request, "subscribe_sent.html.j2", email=email, valid_for=describe(self.desk.ttl), status=200
        )

    def refuse(self, request: Request, as_json: bool, problem: PageError) -> Response:
        headers = {"Retry-After": str(self.desk.limits.retry_after())} if problem.status == 429 else {}
        if as_json:
            return JSONResponse({"error": " ".join((problem.title, *problem.lines))}, problem.status, headers)
        response = self.site.pages.problem(request, problem)
        response.headers.update(headers)
        return response

    # --- confirming ------------------------------------------------------------------------------

    async def confirm_page(self, request: Request) -> Response:
        token = token_of(request)
        try:
            pending = await run_in_threadpool(self.desk.pending_for, token)
        except BadToken as exc:
            raise _bad_link(exc) from exc
        if pending.confirmed_at is not None:
            return await self.confirmed(request, already=True)
        return self.site.pages.page(
            request, "confirm.html.j2", headers=TOKEN_PAGE, token=token, email=mask_email(pending.email)
        )

    async def confirm(self, request: Request) -> Response:
        token = token_of(request)
        await read_body(request, FORM_LIMIT)  # the button posts nothing the token does not say
        try:
            done = await run_in_threadpool(self.desk.confirm, token)
        except BadToken as exc:
            raise _bad_link(exc) from exc
        return await self.confirmed(request, already=done.already)

    async def confirmed(self, request: Request, *, already: bool) -> Response:
        latest = await run_in_threadpool(self.desk.latest_issue)
        return self.site.pages.page(request, "confirmed.html.j2", headers=TOKEN_PAGE, latest=latest, already=already)


def _bad_link(exc: BadToken) -> PageError:
    if isinstance(exc, ExpiredToken):
        return PageError(410, "This link has expired", "Please sign up again to get a new one.")
    return PageError(
        400,
        "This link is not valid",
        "It may have been cut short, changed, or replaced by a newer one. Please use the link in the latest "
        "email we sent you, or sign up again.",
    )


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_form(request: Request) -> Posted:
    if _media_type(request) not in FORM_TYPES:
        raise PageError(415, UNREADABLE, "Send the form as a browser does, or as JSON.")
    body = await read_body(request, SIGNUP_LIMIT)
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError as exc:
        raise PageError(400, UNREADABLE, TRY_AGAIN) from exc
    first: dict[str, str] = {}
    for key, value in fields:
        first.setdefault(key, value)
    return Posted(
        email=first.get("email", ""),
        name=first.get("name", ""),
        sections=tuple(value for key, value in fields if key == "section"),
        source=first.get("source", ""),
        honeypot=first.get(HONEYPOT, ""),
    )


async def _read_json(request: Request) -> Posted:
    """``{"email", "name"?, "sections"?: [...], "source"?}``; anything else is a 400 saying so."""
    body = await read_body(request, SIGNUP_LIMIT)
    try:
        data: Any = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PageError(400, "The body is not JSON.") from exc
    if not isinstance(data, dict):
        raise PageError(400, 'The body must be a JSON object like {"email": "ana@example.org"}.')
    text = {key: data.get(key, "") for key in ("email", "name", "source", HONEYPOT)}
    sections = data.get("sections", [])
    if not all(isinstance(v, str) for v in text.values()) or not (
        isinstance(sections, list) and all(isinstance(s, str) for s in sections)
    ):
        raise PageError(400, '"email", "name" and "source" must be strings, "sections" a list of strings.')
    return Posted(text["email"], text["name"], tuple(sections), text["source"], text[HONEYPOT])


def routes(site: Site) -> list[BaseRoute]:
    surface = Signup(site)
    guarded = site.pages.guarded
    origins = site.settings.web.allowed_origins
    cors = (
        [Middleware(CORSMiddleware, allow_origins=origins, allow_methods=["POST"], allow_headers=["Content-Type"])]
        if origins
        else []
    )
    return [
        Route("/subscribe", guarded(surface.page), methods=["GET"]),
        Route("/subscribe", guarded(surface.subscribe), methods=["POST", "OPTIONS"], middleware=cors),
        Route("/confirm", guarded(surface.confirm_page), methods=["GET"]),
        Route("/confirm", guarded(surface.confirm), methods=["POST"]),
    ]
