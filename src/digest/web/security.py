"""The headers every answer of ``digest serve`` carries, and why.

Subscribers' tokens travel in our URLs (``?t=``), so: every response says ``Referrer-Policy:
no-referrer`` (a click away never hands the token to another site); token pages are ``no-store``
and ``noindex``; and nothing in the web app logs a URL's query string (``serve`` runs uvicorn
without an access log, and an error is logged with the path only). Pages need only their own
inline CSS and post forms back to us, which the Content-Security-Policy says; nobody may frame them.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
