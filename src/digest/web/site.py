"""What every surface of the web app shares, passed to each explicitly: the ``Site``.

A surface is one module (``unsubscribe``, ``preferences``, ``webhooks``, ``archive``...) with a
``routes(site)`` function; ``app.create_app`` builds one Site and collects every surface's routes.
The subscriber-link helpers live here too, because every page a subscriber's token opens reads
it the same way and refuses a bad one with the same words.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import BaseRoute

from digest.config import Settings
from digest.delivery.tokens import BadToken, Signer
from digest.store import Store, Subscriber
from digest.web.pages import PageError, Pages

USE_THE_LINK = "Please use the link exactly as it is in your email."


@dataclass(frozen=True)
class Site:
    """The request context of the app: settings, the store, the link signer, the page renderer,
    and the clock (tests of the webhook replay requests signed long ago).

    Database work goes through ``run_in_threadpool`` so the event loop never waits on a lock.
    """

    settings: Settings
    store: Store
    signer: Signer
    pages: Pages
    clock: Callable[[], float] = time.time

    def subscriber_id_of(self, token: str) -> int:
        """The subscriber a signed link names, or the page that says the link is not valid."""
        try:
            return self.signer.subscriber_id(token)
        except BadToken as exc:
            raise PageError(
                400,
                "This link is not valid",
                f"It may have been cut short or changed. {USE_THE_LINK}",
            ) from exc

    async def subscriber_for(self, token: str) -> Subscriber:
        """The subscriber a signed link names, or the page that says they are no longer on the list."""
        subscriber = await run_in_threadpool(self.store.subscribers.by_id, self.subscriber_id_of(token))
        if subscriber is None:
            raise self.gone()
        return subscriber

    def gone(self) -> PageError:
        """The answer for a link whose subscriber was deleted (``digest subscribers forget``)."""
        return PageError(
            410,
            "This address is no longer on our list",
            f"You will not get any more email from {self.settings.newsletter.name}.",
        )


Surface = Callable[[Site], list[BaseRoute]]


def token_of(request: Request) -> str:
    """The ``?t=`` token of a subscriber's link, or the page that says the link is incomplete."""
    token = request.query_params.get("t", "").strip()
    if not token:
        raise PageError(400, "This link is incomplete", USE_THE_LINK)
    return token
