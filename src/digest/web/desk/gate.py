"""Who is at the desk: sign-in, sign-out, and the guard every other desk route is wrapped in.

- The session cookie holds a random token (``delivery.desk`` keeps only its hash). It is
  HttpOnly, SameSite=Lax, Secure when ``newsletter.base_url`` is https, and lasts
  ``[desk] session_hours``; the server refuses it after that whatever the browser keeps.
- Every POST carries a CSRF token in the form field ``csrf``: the session's own, or, on the
  sign-in form (no session yet), the value of a short-lived cookie the form was served with
  (double submit). A POST without the right one is refused (403) before it does anything.
- ``guard`` refuses a request without a live session: a page (GET) answers 303 to the sign-in
  page, anything else 401. Only the sign-in page itself is open.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from digest.delivery import desk
from digest.store import DeskSession
from digest.web.forms import read_form
from digest.web.pages import Handler, PageError, root_of
from digest.web.site import Site

log = logging.getLogger("digest.web")

COOKIE = "digest_desk"
LOGIN_COOKIE = "digest_desk_login"
LOGIN_COOKIE_SECONDS = 3600
# The desk's own pages: frames of the draft from this site, one script of ours (the live counts).
DESK_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
DESK_HEADERS = {"Content-Security-Policy": DESK_CSP, "Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}
NOT_SIGNED_IN = "Please sign in to the desk first."
FORM_EXPIRED = "This form has expired. Please reload the page and try again."


@dataclass(frozen=True, slots=True)
class Visit:
    """A signed-in request: the editor's session and, for a POST, its form (already checked)."""

    session: DeskSession
    form: dict[str, list[str]] = field(default_factory=dict)

    @property
    def editor(self) -> str:
        return self.session.email

    def value(self, name: str) -> str:
        """A posted field's first value, '' when absent."""
        return (self.form.get(name) or [""])[0]

    def values(self, name: str) -> list[str]:
        return self.form.get(name, [])


DeskHandler = Callable[[Request, Visit], Awaitable[Response]]


def redirect(request: Request, path: str) -> RedirectResponse:
    """303 to ``path`` (from the app's root), relative so it works behind a proxy's prefix."""
    return RedirectResponse(root_of(request) + path, status_code=303, headers=DESK_HEADERS)


class Gate:
    """Signs editors in and out, and wraps the desk's handlers in the session and CSRF checks."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.throttle = desk.Throttle()
        self.secure = site.settings.newsletter.base_url.startswith("https://")
        self.hours = site.settings.desk.session_hours

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.site.clock(), UTC)

    async def session(self, request: Request) -> DeskSession | None:
        token = request.cookies.get(COOKIE, "")
        return await run_in_threadpool(desk.session_of, self.site.store, token, self.now()) if token else None

    def guard(self, handler: DeskHandler) -> Handler:
        """``handler`` for signed-in editors only, its POSTs only with the session's CSRF token."""

        async def run(request: Request) -> Response:
            session = await self.session(request)
            if session is None:
                if request.method in ("GET", "HEAD"):
                    return redirect(request, "desk/login")
                raise PageError(401, "Not signed in", NOT_SIGNED_IN)
            form: dict[str, list[str]] = {}
            if request.method == "POST":
                for name, value in await read_form(request):
                    form.setdefault(name, []).append(value)
                if not desk.csrf_ok(session, (form.get("csrf") or [""])[0]):
                    raise PageError(403, "Not accepted", FORM_EXPIRED)
            response = await handler(request, Visit(session, form))
            for name, value in DESK_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return self.site.pages.guarded(run)

    # --- the sign-in page --------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        if await self.session(request) is not None:
            return redirect(request, "desk/")
        return self._login_form(request)

    def _login_form(self, request: Request, *, status: int = 200, error: str = "", email: str = "") -> Response:
        nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
        response = self.site.pages.page(
            request, "desk/login.html.j2", status, DESK_HEADERS, csrf=nonce, error=error, email=email, session=None
        )
        self._cookie(response, LOGIN_COOKIE, nonce, LOGIN_COOKIE_SECONDS)
        return response

    async def login(self, request: Request) -> Response:
        posted = dict(await read_form(request))
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not nonce or not secrets.compare_digest(nonce.encode(), posted.get("csrf", "").encode()):
            raise PageError(403, "Not accepted", FORM_EXPIRED)
        email, password = posted.get("email", "").strip(), posted.get("password", "")
        ip = request.client.host if request.client else ""
        try:
            signed = await run_in_threadpool(
                desk.sign_in,
                self.site.store,
                self.throttle,
                email,
                password,
                ip=ip,
                now=self.now(),
                hours=self.hours,
            )
        except desk.Throttled as exc:
            response = self._login_form(request, status=429, error=exc.message, email=email)
            response.headers["Retry-After"] = str(exc.retry_after)
            return response
        except desk.SignInRefused as exc:
            log.info("desk sign-in refused")
            return self._login_form(request, status=401, error=exc.message, email=email)
        log.info("editor %s signed in to the desk", signed.session.email)
        await run_in_threadpool(self.site.store.audit.record, signed.session.email, "sign in")
        response = redirect(request, "desk/")
        self._cookie(response, COOKIE, signed.token, self.hours * 3600)
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    async def logout(self, request: Request, visit: Visit) -> Response:
        await run_in_threadpool(desk.sign_out, self.site.store, request.cookies.get(COOKIE, ""))
        log.info("editor %s signed out of the desk", visit.editor)
        await run_in_threadpool(self.site.store.audit.record, visit.editor, "sign out")
        response = redirect(request, "desk/login")
        response.delete_cookie(COOKIE, path="/", secure=self.secure, httponly=True, samesite="lax")
        return response

    def _cookie(self, response: Response, name: str, value: str, seconds: int) -> None:
        response.set_cookie(name, value, max_age=seconds, path="/", secure=self.secure, httponly=True, samesite="lax")
