"""``digest serve``: the subscriber's side of the newsletter, as a small Starlette app.

One module per surface, each with a ``routes(site)`` function, listed once in ``SURFACES``:

- ``unsubscribe``: ``GET``/``POST /unsubscribe?t=TOKEN``, RFC 8058 one-click and the confirmation page.
- ``preferences``: ``GET``/``POST /preferences?t=TOKEN``, the sections a subscriber gets.
- ``webhooks``: ``POST /webhooks/sendgrid``, SendGrid's signed Event Webhook (off without a key).
- ``archive``: ``GET /issues/``, ``GET /issues/<key>`` and ``GET /issues/feed.xml`` (Atom), the
  public archive of sent issues.
- ``signup``: ``GET``/``POST /subscribe`` and ``GET``/``POST /confirm?t=TOKEN``, readers signing
  themselves up with double opt-in.
- ``desk``: ``/desk/``, the editors' desk (signed-in editors only; see ``web/desk``).

What they share (settings, store, link signer, pages, clock) is one ``Site``, passed to each.
``security`` sets the headers every answer carries (tokens travel in URLs: no referrer, no
caching, no URL in any log line); ``pages`` renders every HTML answer, errors included. Database
work runs in Starlette's thread pool so the event loop never waits on a lock; a database error
becomes a plain 500 page (and a log line), never a traceback.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from digest.config import Settings
from digest.delivery.tokens import Signer
from digest.listen import listen
from digest.listen import url as url_for
from digest.store import Store
from digest.web import archive, desk, preferences, signup, unsubscribe, webhooks
from digest.web.pages import Pages
from digest.web.security import SecurityHeaders
from digest.web.site import Site, Surface
from digest.web.webhooks import WEBHOOK_OFF

log = logging.getLogger("digest.web")

SURFACES: tuple[Surface, ...] = (
    unsubscribe.routes,
    preferences.routes,
    webhooks.routes,
    archive.routes,
    signup.routes,
    desk.routes,
)


def create_app(
    settings: Settings,
    store: Store,
    signer: Signer,
    *,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The subscriber-facing ASGI app over ``store``; ``clock`` is the webhook's idea of now
    (tests replay SendGrid's published example, signed in 2020). A bad ``[web]`` setting is a
    ConfigError here, at start, not an error on every request later."""
    site = Site(settings, store, signer, Pages(settings.newsletter.name), clock)
    return Starlette(
        routes=[route for surface in SURFACES for route in surface(site)],
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={HTTPException: site.pages.router_error},
    )


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
