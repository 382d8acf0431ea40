"""``GET /issues/``, ``GET /issues/<key>`` and ``GET /issues/feed.xml``: the public archive of
sent issues, and its Atom feed.

It is the target of the emails' view-in-browser link. An archived issue is the issue's stored
whole variant (what subscribers who chose no sections were sent), with every per-recipient part
removed (``render.archive_copy``); the list shows each sent issue's record. Only issues that went
out (sending or sent) are public: a draft is not. ``/`` leads here. The feed (written by
feedgen, so it is valid Atom: ids, dates and escaping as the RFC wants) lists the same issues.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from digest.config import Settings
from digest.issue.render import archive_copy, format_dates
from digest.models import ALL_SECTIONS, IssueStatus
from digest.store import IssueRecord, Store
from digest.web.pages import PageError
from digest.web.security import ARCHIVE_CSP
from digest.web.site import Site

ARCHIVE_CACHE = "public, max-age=300"
KEPT_PAGES = 16  # sent issues never change, and readers mostly open the latest few
MAX_KEY = 64  # longer is no issue key of ours: answered 404 without asking the database
FEED_ENTRIES = 50  # a year of weekly issues; the archive page lists them all
ATOM = "application/atom+xml; charset=utf-8"
PUBLIC = (IssueStatus.SENDING, IssueStatus.SENT)


class ArchivedPages:
    """The archive copies of the issues read most recently, built once each (parsing an issue's
    HTML to strip it takes longer than the request should)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pages: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()  # requests run in a thread pool

    def get(self, key: str) -> str | None:
        """The archive copy of issue ``key``, or None when no such issue went out."""
        with self._lock:
            if key in self._pages:
                self._pages.move_to_end(key)
                return self._pages[key]
        record = self.store.issues.get(key)
        if record is None or record.status not in PUBLIC:
            return None
        _subject, html, _text = self.store.issues.variant(key, ALL_SECTIONS)
        page = archive_copy(html)
        with self._lock:
            self._pages[key] = page
            while len(self._pages) > KEPT_PAGES:
                self._pages.popitem(last=False)
        return page


class Archive:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.pages = ArchivedPages(site.store)

    async def index(self, request: Request) -> Response:
        issues = await run_in_threadpool(self.site.store.issues.went_out)
        zone = self.site.settings.newsletter.zone
        rows = [
            {
                "key": record.key,
                "subject": record.subject,
                "dates": format_dates(record.window_start.astimezone(zone), record.window_end.astimezone(zone)),
            }
            for record in issues
        ]
        return self.site.pages.page(request, "archive.html.j2", headers={"Cache-Control": ARCHIVE_CACHE}, issues=rows)

    async def issue(self, request: Request) -> Response:
        key = request.path_params["key"]
        html = await run_in_threadpool(self.pages.get, key) if len(key) <= MAX_KEY else None
        if html is None:
            raise PageError(
                404, "No such issue", "There is no sent issue at this address.", "All past issues are in the archive."
            )
        return HTMLResponse(html, headers={"Content-Security-Policy": ARCHIVE_CSP, "Cache-Control": ARCHIVE_CACHE})

    async def feed(self, request: Request) -> Response:
        issues = await run_in_threadpool(self.site.store.issues.went_out)
        return Response(
            atom_feed(self.site.settings, issues[:FEED_ENTRIES]),
            media_type=ATOM,
            headers={"Cache-Control": ARCHIVE_CACHE},
        )


def atom_feed(settings: Settings, issues: Sequence[IssueRecord]) -> bytes:
    """The Atom document of ``issues`` (newest first): one entry per issue, linking to its page."""
    from feedgen.feed import FeedGenerator  # imported here: only this route needs it

    newsletter = settings.newsletter
    archive = f"{newsletter.base_url}/issues/"
    zone = newsletter.zone
    feed = FeedGenerator()
    feed.id(archive)
    feed.title(newsletter.name)
    feed.author({"name": newsletter.name})
    feed.link(href=archive, rel="alternate", type="text/html")
    feed.link(href=f"{archive}feed.xml", rel="self", type="application/atom+xml")
    feed.subtitle(f"Every issue of {newsletter.name} as it was sent.")
    feed.updated(_when(issues[0]) if issues else datetime(2000, 1, 1).astimezone())
    for record in reversed(issues):  # feedgen puts the entry added last first
        entry = feed.add_entry()
        url = f"{archive}{record.key}"
        entry.id(url)
        entry.title(record.subject or record.key)
        entry.link(href=url, rel="alternate", type="text/html")
        entry.updated(_when(record))
        entry.published(_when(record))
        dates = format_dates(record.window_start.astimezone(zone), record.window_end.astimezone(zone))
        entry.summary(f"{record.key}, {dates}: {record.article_count} articles.")
    return bytes(feed.atom_str(pretty=True))


def _when(record: IssueRecord) -> datetime:
    """When an issue went out: its send finished, else the time it was due, else its window's end."""
    return record.sent_at or record.send_at or record.window_end


async def home(request: Request) -> Response:
    return RedirectResponse("issues/", status_code=307)


def routes(site: Site) -> list[BaseRoute]:
    surface = Archive(site)
    guarded = site.pages.guarded
    return [
        Route("/", guarded(home), methods=["GET"]),
        Route("/issues/", guarded(surface.index), methods=["GET"]),
        Route("/issues/feed.xml", guarded(surface.feed), methods=["GET"]),
        Route("/issues/{key}", guarded(surface.issue), methods=["GET"]),
    ]
