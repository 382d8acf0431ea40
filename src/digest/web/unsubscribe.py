"""Unsubscribing: RFC 8058 one-click and the confirmation page.

- ``GET /unsubscribe?t=TOKEN`` shows a confirmation page with one button and changes nothing,
  because mail scanners and link previewers follow every link in a message. Without a token (the
  link in preview and ``[TEST]`` copies) it explains that the link came from a preview.
- ``POST /unsubscribe?t=TOKEN`` unsubscribes at once and answers 200: RFC 8058 one-click
  (``List-Unsubscribe=One-Click``, form-urlencoded or multipart, as mailbox providers send it) and
  the confirmation page's button alike. The signed token is the authority, so the body is not
  required to say anything in particular: an unusual provider's POST is still honoured. Repeating
  it is harmless (``Store.subscribers.suppress`` is idempotent and never weakens a bounce or a complaint).
  An issue's link also names the issue (``&i=KEY``): the unsubscribe is counted in that issue's
  report on the desk when the issue was sent to that subscriber.
"""

from __future__ import annotations

import logging
from functools import partial

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from digest.models import IssueKey, SubscriberStatus
from digest.web.forms import FORM_LIMIT, read_body
from digest.web.pages import mask_email
from digest.web.security import TOKEN_PAGE
from digest.web.site import Site, token_of

log = logging.getLogger("digest.web")


class Unsubscribe:
    def __init__(self, site: Site) -> None:
        self.site = site

    async def confirm_page(self, request: Request) -> Response:
        pages = self.site.pages
        if "t" not in request.query_params:
            return pages.page(request, "preview_link.html.j2", headers=TOKEN_PAGE, what="unsubscribe")
        token = token_of(request)
        subscriber = await self.site.subscriber_for(token)
        if subscriber.status != SubscriberStatus.ACTIVE:
            return pages.page(request, "unsubscribed.html.j2", headers=TOKEN_PAGE, token=token, already=True)
        return pages.page(
            request, "unsubscribe.html.j2", headers=TOKEN_PAGE, token=token, email=mask_email(subscriber.email)
        )

    async def unsubscribe(self, request: Request) -> Response:
        token = token_of(request)
        subscriber_id = self.site.subscriber_id_of(token)
        body = await read_body(request, FORM_LIMIT)  # not required to say anything: the token decides
        how = "one-click" if b"One-Click" in body else "web page"
        if not await run_in_threadpool(
            partial(
                self.site.store.subscribers.suppress,
                subscriber_id,
                SubscriberStatus.UNSUBSCRIBED,
                source=how,
                issue_key=issue_of(request),
            )
        ):
            raise self.site.gone()
        log.info("subscriber %d unsubscribed (%s)", subscriber_id, how)
        return self.site.pages.page(request, "unsubscribed.html.j2", headers=TOKEN_PAGE, token=token, already=False)


def issue_of(request: Request) -> str | None:
    """The issue an unsubscribe link names (``&i=2026-W48``), or None (none, or not a key)."""
    try:
        return str(IssueKey.parse(request.query_params.get("i", "")))
    except ValueError:
        return None


def routes(site: Site) -> list[BaseRoute]:
    surface = Unsubscribe(site)
    guarded = site.pages.guarded
    return [
        Route("/unsubscribe", guarded(surface.confirm_page), methods=["GET"]),
        Route("/unsubscribe", guarded(surface.unsubscribe), methods=["POST"]),
    ]
