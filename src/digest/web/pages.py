"""The web app's HTML pages: one jinja2 environment, plain error pages, masked addresses.

Every page is plain HTML with inline CSS (``templates/``): no JavaScript, nothing fetched from
elsewhere. A surface answers a bad request by raising ``PageError``; ``Pages.guarded`` turns it
into its page, and anything unexpected (a database down, a bug) into a logged 500 page that shows
nothing of the cause.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from digest.pages import page_environment
from digest.web.security import TOKEN_PAGE

log = logging.getLogger("digest.web")

PAGE_TEMPLATES = Path(__file__).resolve().parent / "templates"
ROUTER_TITLES = {404: "Page not found", 405: "Not allowed"}

Handler = Callable[[Request], Awaitable[Response]]


class PageError(Exception):
    """A request we answer with a plain page and a status (bad link, gone subscriber...)."""

    def __init__(self, status: int, title: str, *lines: str) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.lines = lines


def mask_email(address: str) -> str:
    """``ana.lima@example.net`` -> ``a•••a@example.net``: recognisable to its owner, little to
    anyone a forwarded email's link reaches."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "•••"
    shown = local[0] + "•••" + local[-1] if len(local) >= 4 else local[:1] + "•••"
    return f"{shown}@{domain}"


def root_of(request: Request) -> str:
    """A relative prefix from this page to the app's root, so links keep working behind a proxy
    that mounts the app under a path."""
    return "../" * max(0, request.url.path.count("/") - 1)


class Pages:
    """Renders the app's pages, each with the newsletter's name and the relative root."""

    def __init__(self, newsletter: str) -> None:
        self.newsletter = newsletter
        self.env = page_environment(PAGE_TEMPLATES)

    def page(
        self,
        request: Request,
        template: str,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        **values: Any,
    ) -> HTMLResponse:
        html = self.env.get_template(template).render(newsletter=self.newsletter, root=root_of(request), **values)
        return HTMLResponse(html, status_code=status, headers=dict(headers or {}))

    def problem(self, request: Request, problem: PageError) -> HTMLResponse:
        """The plain page for a PageError (token-page headers: the URL may carry a token)."""
        return self.page(
            request, "message.html.j2", problem.status, TOKEN_PAGE, title=problem.title, lines=problem.lines
        )

    def guarded(self, handler: Handler) -> Handler:
        """``handler`` with a PageError turned into its page and anything else into a logged 500
        page that shows nothing of the cause."""

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except PageError as problem:
                return self.problem(request, problem)
            except Exception:
                log.exception("%s %s failed", request.method, request.url.path)  # no query: tokens
                return self.problem(
                    request,
                    PageError(
                        500,
                        "Something went wrong",
                        "We could not complete this just now. Please try again in a few minutes.",
                    ),
                )

        return run

    async def router_error(self, request: Request, exc: Exception) -> Response:
        """The router's own answers (404, 405) as plain pages, keeping their headers (``Allow``)."""
        assert isinstance(exc, HTTPException)
        response = self.page(
            request,
            "message.html.j2",
            exc.status_code,
            title=ROUTER_TITLES.get(exc.status_code, "Something is not right"),
            lines=("There is nothing at this address.",) if exc.status_code == 404 else (),
        )
        for header, value in (exc.headers or {}).items():
            response.headers[header] = value
        return response
