"""The editors' desk at ``/desk/``: review, arrange, introduce, test and approve the week's issue.

Every route but the sign-in page is behind ``Gate.guard`` (a live session, and on a POST its
CSRF token). The pages only read requests and write answers: each action is a function of
``delivery.weekly``, ``delivery.send`` or ``delivery.desk``, the same one the CLI calls.
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from digest.delivery import desk
from digest.web.desk.chart import line_chart
from digest.web.desk.gate import DESK_HEADERS, Gate, Visit
from digest.web.desk.issue import IssuePage
from digest.web.pages import PAGE_TEMPLATES
from digest.web.site import Site

SCRIPT = PAGE_TEMPLATES / "desk" / "desk.js"


class Desk:
    """The desk's pages over one ``Site``."""

    def __init__(self, site: Site, gate: Gate) -> None:
        self.site = site
        self.gate = gate
        self.zone = site.settings.newsletter.zone

    def page(self, request: Request, visit: Visit, template: str, status: int = 200, **values: object) -> Response:
        return self.site.pages.page(
            request, template, status, DESK_HEADERS, session=visit.session, when=self.when, **values
        )

    def when(self, moment: datetime | None) -> str:
        """A stored time as the newsletter's zone shows it: ``Fri 2026-11-27 09:00 EST``."""
        return f"{moment.astimezone(self.zone):%a %Y-%m-%d %H:%M %Z}" if moment else ""

    async def script(self, request: Request, visit: Visit) -> Response:
        """The desk's one script (the live counts), served from here: nothing from elsewhere."""
        return Response(SCRIPT.read_bytes(), media_type="text/javascript", headers={"Cache-Control": "no-store"})

    async def history(self, request: Request, visit: Visit) -> Response:
        """The issues with their state and figures, and subscribers week by week."""
        store = self.site.store
        issues = await run_in_threadpool(store.issues.recent)
        suppressed = await run_in_threadpool(store.subscribers.suppressions_per_issue)
        now = datetime.fromtimestamp(self.site.clock(), UTC)
        weeks = await run_in_threadpool(desk.subscriber_weeks, store, now, self.zone)
        return self.page(
            request,
            visit,
            "desk/history.html.j2",
            issues=issues,
            suppressed=suppressed,
            chart=line_chart(weeks),
        )

    async def audit(self, request: Request, visit: Visit) -> Response:
        entries = await run_in_threadpool(self.site.store.audit.recent, limit=500)
        return self.page(request, visit, "desk/audit.html.j2", entries=entries)

    async def index(self, request: Request, visit: Visit) -> Response:
        rows = await run_in_threadpool(self.site.store.issues.recent)
        return self.page(request, visit, "desk/index.html.j2", issues=[record for record, _ in rows])


def routes(site: Site) -> list[BaseRoute]:
    gate = Gate(site)
    pages = Desk(site, gate)
    issue = IssuePage(site, pages.page)
    guarded, open_ = gate.guard, site.pages.guarded
    return [
        Route("/desk/login", open_(gate.login_page), methods=["GET"]),
        Route("/desk/login", open_(gate.login), methods=["POST"]),
        Route("/desk/logout", guarded(gate.logout), methods=["POST"]),
        Route("/desk/", guarded(pages.index), methods=["GET"]),
        Route("/desk/issues/{key}", guarded(issue.show), methods=["GET"]),
        Route("/desk/issues/{key}/frame", guarded(issue.frame), methods=["GET"]),
        Route("/desk/issues/{key}/text", guarded(issue.text), methods=["GET"]),
        Route("/desk/issues/{key}/articles", guarded(issue.arrange), methods=["POST"]),
        Route("/desk/issues/{key}/front", guarded(issue.introduce), methods=["POST"]),
        Route("/desk/issues/{key}/test", guarded(issue.test_send), methods=["POST"]),
        Route("/desk/issues/{key}/approve", guarded(issue.approve), methods=["POST"]),
        Route("/desk/issues/{key}/withdraw", guarded(issue.withdraw), methods=["POST"]),
        Route("/desk/issues/{key}/progress", guarded(issue.progress), methods=["GET"]),
        Route("/desk/audit", guarded(pages.audit), methods=["GET"]),
        Route("/desk/history", guarded(pages.history), methods=["GET"]),
        Route("/desk/desk.js", guarded(pages.script), methods=["GET"]),
    ]
