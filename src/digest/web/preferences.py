"""``GET``/``POST /preferences?t=TOKEN``: the sections a subscriber gets.

None or all ticked is stored as the empty choice (everything, including sections added later). A
section name the page did not offer (the sections changed while the page was open) is refused
with 400 and the form shown again: saving a silently different choice would be worse than asking
again.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from digest.models import SectionChoice, SubscriberStatus
from digest.store import Subscriber
from digest.web.forms import read_form
from digest.web.pages import mask_email
from digest.web.security import TOKEN_PAGE
from digest.web.site import Site, token_of

log = logging.getLogger("digest.web")

SECTIONS_CHANGED = (
    "The list of sections has changed since this page was opened, so nothing was saved. Please choose again."
)


class Preferences:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.sections = site.settings.section_names

    def chosen_now(self, subscriber: Subscriber) -> set[str]:
        """The boxes to tick: the stored choice, or all of them when it is empty (or names
        only sections that no longer exist, which sends everything too)."""
        return set(SectionChoice.of(subscriber.sections, self.sections).sections)

    def choice_of(self, posted: list[str]) -> list[str] | None:
        """The choice to store for the ticked boxes, in the config's order ([] for none or all
        of them: every section, including sections added later), or None when a box names a
        section the page did not offer."""
        try:
            picked = SectionChoice.of(posted, self.sections, strict=True)
        except ValueError:
            return None
        return list(picked.normalised().names)

    def form(
        self, request: Request, token: str, subscriber: Subscriber, *, status: int = 200, notice: str = ""
    ) -> Response:
        return self.site.pages.page(
            request,
            "preferences.html.j2",
            status,
            TOKEN_PAGE,
            token=token,
            email=mask_email(subscriber.email),
            sections=self.sections,
            ticked=self.chosen_now(subscriber),
            suppressed=subscriber.status != SubscriberStatus.ACTIVE,
            notice=notice,
        )

    async def show(self, request: Request) -> Response:
        if "t" not in request.query_params:
            return self.site.pages.page(request, "preview_link.html.j2", headers=TOKEN_PAGE, what="preferences")
        token = token_of(request)
        return self.form(request, token, await self.site.subscriber_for(token))

    async def save(self, request: Request) -> Response:
        token = token_of(request)
        subscriber = await self.site.subscriber_for(token)
        form = await read_form(request)
        choice = self.choice_of([value for key, value in form if key == "section"])
        if choice is None:
            return self.form(request, token, subscriber, status=400, notice=SECTIONS_CHANGED)
        if not await run_in_threadpool(self.site.store.subscribers.set_sections, subscriber.id, choice):
            raise self.site.gone()
        log.info("subscriber %d chose %s", subscriber.id, f"{len(choice)} section(s)" if choice else "all sections")
        return self.site.pages.page(
            request,
            "preferences_saved.html.j2",
            headers=TOKEN_PAGE,
            token=token,
            choice=choice,
            suppressed=subscriber.status != SubscriberStatus.ACTIVE,
        )


def routes(site: Site) -> list[BaseRoute]:
    surface = Preferences(site)
    guarded = site.pages.guarded
    return [
        Route("/preferences", guarded(surface.show), methods=["GET"]),
        Route("/preferences", guarded(surface.save), methods=["POST"]),
    ]
