"""``digest preview``: this week's issue served locally, rebuilt whenever one of its inputs changes.

The preview shows exactly what ``digest send`` would send: it goes through the same code
(``weekly.outgoing``), so editors' pins and exclusions apply, articles an earlier issue sent are
left out, and an issue already recorded (a draft, an approved issue) is shown as its recorded
snapshot, with every variant subscribers' choices of sections call for.

Three small parts, each testable on its own:

- ``PreviewState`` re-reads the config and rebuilds the issue (``rebuild()``). It keeps the last
  good build and the last error side by side, so an editor mid-edit (a typo'd key, a template
  syntax error, a broken feed) sees the error line above the last issue that did build, never a
  blank page or a traceback. Every rebuild, good or bad, bumps ``generation``: that is what the
  editor's page polls to know when to reload.
- ``create_app(state)`` is the Starlette app: the editor's page ``/``, the issue as the reader gets
  it (``/issue.html``, ``/issue.txt``, ``/issue.eml``, each with ``?variant=``) and ``/api/state``.
- ``Watcher`` runs watchfiles in a thread over the config file, the template directories and the
  local feed files (the set is recomputed from the config after each rebuild, so adding a feed or
  a ``[render] templates`` folder is picked up) and calls ``rebuild()`` on a change, or when the
  database changed what goes out (``digest pin``, ``exclude``, ``approve`` in another terminal).

``serve`` wires them together with uvicorn. It binds 127.0.0.1 unless told otherwise, prints one
line with the real address (``--port 0`` picks a free port) and one line per rebuild, and returns
normally on Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import html as html_lib
import logging
import secrets
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from watchfiles import Change, DefaultFilter, watch

from digest.config import Settings, load
from digest.delivery import shown, weekly
from digest.delivery.shown import DESKTOP_WIDTH, GMAIL_CLIP_BYTES, PHONE_WIDTH, Snapshot, Variant
from digest.errors import ConfigError, DigestError
from digest.feeds.load import local_feed_path
from digest.issue.lint import ENHANCEMENTS, LintReport, LintUnavailable, lint
from digest.issue.render import bundled_templates, template_dirs
from digest.listen import listen
from digest.listen import url as url_for
from digest.models import ALL_SECTIONS, IssueKey
from digest.pages import page_environment
from digest.store import Store

log = logging.getLogger(__name__)

PAGE_TEMPLATES = Path(__file__).resolve().parent / "templates"
NO_STORE = {"Cache-Control": "no-store"}


# --- State ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Status:
    """What the preview shows right now. Replaced whole on every change, never mutated."""

    generation: int = 0
    good: Snapshot | None = None
    error: str | None = None
    error_at: datetime | None = None
    key: str | None = None
    building: bool = False

    @property
    def ok(self) -> bool:
        return self.generation > 0 and self.error is None

    def as_json(self, instance: str) -> dict[str, Any]:
        good = self.good
        return {
            "instance": instance,
            "generation": self.generation,
            "building": self.building,
            "ok": self.ok,
            "error": self.error,
            "error_at": self.error_at.isoformat() if self.error_at else None,
            "issue": self.key,
            "stale": bool(self.error and good),
            "subject": good.subject if good else None,
            "built_at": good.built_at.isoformat() if good else None,
            "articles": good.count if good else None,
            "html_bytes": good.html_bytes if good else None,
            "warnings": list(good.warnings) if good else [],
            "recorded": good.recorded if good else None,
            "lint": (
                {c.client: {"errors": c.problems, "enhancements": c.accepted} for c in good.lint.clients}
                if good and good.lint
                else None
            ),
            "lint_unavailable": good.lint_unavailable if good else None,
            "variants": [v.name for v in good.variants] if good else [],
        }


@dataclass(frozen=True, slots=True)
class WatchSet:
    """The inputs of a build: files whose change matters, and directories whose every file does."""

    files: frozenset[Path] = frozenset()
    trees: frozenset[Path] = frozenset()

    def directories(self) -> list[Path]:
        """Existing directories to watch (non-recursively) so every input's change is seen, even
        when an editor saves by writing a new file and renaming it over the old one."""
        dirs: set[Path] = {f.parent for f in self.files}
        for tree in self.trees:
            if tree.is_dir():
                dirs.add(tree)
                dirs.update(p for p in tree.rglob("*") if p.is_dir() and not p.name.startswith("."))
            else:
                dirs.add(tree.parent)  # e.g. a [render] templates folder not created yet
        return sorted(d for d in dirs if d.is_dir())

    def matches(self, path: str | Path) -> bool:
        p = Path(path)
        return p in self.files or any(p == t or p.is_relative_to(t) for t in self.trees)


def watch_set(settings: Settings) -> WatchSet:
    """The config file, every template directory and every local feed file of ``settings``."""
    files = {settings.source.resolve()} if settings.source else set()
    for feed in settings.feeds:
        if not feed.is_remote:
            files.add(local_feed_path(settings, feed.url).resolve())
    try:
        trees = {d.resolve() for d in template_dirs(settings)}
    except DigestError:  # [render] templates names a missing folder: watch for it to appear
        trees = {bundled_templates().resolve(), settings.path(settings.render.templates).resolve()}
    return WatchSet(frozenset(files), frozenset(trees))


Builder = Callable[[Settings, datetime], weekly.Outgoing]


class PreviewState:
    """The preview's model: rebuilds on demand and remembers the last good issue and last error.

    ``now`` is the run time to build for; None means the real time at each rebuild, and a time
    without an offset is in the newsletter's zone (as configured at each rebuild).
    ``rebuild`` is thread-safe (the watcher calls it from its thread); readers take ``status``,
    an immutable value, without locking. The default builder is ``weekly.outgoing`` on the
    configured database, which stays open between rebuilds (``close()`` closes it).
    """

    def __init__(
        self,
        config_path: str | Path,
        *,
        now: datetime | None = None,
        builder: Builder | None = None,
        linter: Callable[[str], LintReport] = lint,
    ) -> None:
        self.config_path = Path(config_path)
        self._linter = linter
        self.now = now
        self.instance = secrets.token_hex(6)  # a restarted server is a new page, whatever the generation
        self.status = Status()
        self.last_exception: BaseException | None = None
        self._builder: Builder = builder or self._outgoing
        self._lock = threading.RLock()
        self._watch = WatchSet(files=frozenset({self.config_path.resolve()}))
        self._store: Store | None = None
        self._store_url = ""
        self._ledger: tuple[Any, ...] | None = None  # the ledger the shown issue was built from

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def ledger_changed(self) -> bool:
        """True when the database changed what goes out since the last build: an editor pinned,
        excluded or approved, an issue was sent, a subscriber chose other sections."""
        with self._lock:
            key, seen, store = self.status.key, self._ledger, self._store
            if key is None or seen is None or store is None:
                return False
            try:
                return weekly.ledger_mark(store, key) != seen
            except Exception:  # the database went away: a rebuild shows the error
                log.debug("reading the ledger failed", exc_info=True)
                return True

    def _outgoing(self, settings: Settings, now: datetime) -> weekly.Outgoing:
        """What `send` would send at ``now``, noting the ledger it was worked out from."""
        self._ledger = None
        url = settings.database_url
        if self._store is None or self._store_url != url:
            self.close()
            self._store, self._store_url = Store.open(url), url
        mark = weekly.ledger_mark(self._store, str(IssueKey.at(now, settings.newsletter.zone)))
        result = weekly.outgoing(settings, self._store, now)
        self._ledger = mark
        return result

    def watch_set(self) -> WatchSet:
        """What to watch: from the last config that loaded (the config file alone before that)."""
        return self._watch

    def rebuild(self) -> Status:
        """Re-read the config and rebuild the issue; returns the new status, never raises for a
        problem the editor can fix (it becomes ``status.error``)."""
        with self._lock:
            self.status = dataclasses.replace(self.status, building=True)
            key = self.status.key
            try:
                settings = load(self.config_path)
                self._watch = watch_set(settings)
                now = self._run_time(settings)
                key = str(IssueKey.at(now, settings.newsletter.zone))
                snapshot = self._linted(shown.snapshot(settings, self._builder(settings, now), now))
            except DigestError as exc:
                return self._failed(str(exc), key, exc)
            except Exception as exc:  # a bug, not the editor's doing: still no traceback on the page
                log.debug("preview rebuild failed", exc_info=True)
                return self._failed(f"unexpected error: {type(exc).__name__}: {exc}", key, exc)
            self.last_exception = None
            self.status = Status(generation=self.status.generation + 1, good=snapshot, key=snapshot.key)
            return self.status

    def _failed(self, message: str, key: str | None, exc: BaseException) -> Status:
        self.last_exception = exc
        self.status = Status(
            generation=self.status.generation + 1,
            good=self.status.good,
            error=" ".join(message.split()),
            error_at=datetime.now(UTC),
            key=key,
        )
        return self.status

    def _linted(self, snapshot: Snapshot) -> Snapshot:
        """The snapshot with the client lint of its whole issue, or the one line saying why there is none."""
        try:
            return dataclasses.replace(snapshot, lint=self._linter(snapshot.html))
        except LintUnavailable as exc:
            return dataclasses.replace(snapshot, lint_unavailable=str(exc))

    def _run_time(self, settings: Settings) -> datetime:
        if self.now is None:
            return datetime.now(UTC)
        return self.now if self.now.tzinfo else self.now.replace(tzinfo=settings.newsletter.zone)


# --- Watching ---------------------------------------------------------------------------------


class Watcher:
    """Calls ``state.rebuild()`` when an input of the issue changes, from a background thread.

    Directories are watched non-recursively and events filtered against the state's ``WatchSet``,
    so the feed cache the build itself writes (or anything else beside the config) never
    triggers a rebuild. When a rebuild changes the watch set (a feed or template folder added),
    watching restarts with the new set.
    """

    def __init__(
        self,
        state: PreviewState,
        *,
        on_rebuild: Callable[[Status], None] | None = None,
        step_ms: int = 50,
        debounce_ms: int = 1_600,
    ) -> None:
        self.state = state
        self.on_rebuild = on_rebuild
        self.step_ms = step_ms
        self.debounce_ms = debounce_ms
        self.ready = threading.Event()  # set once the current watch set is being watched
        self._idle = threading.Condition()
        self._quiet_spells = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="digest-preview-watcher", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wait_quiet(self, timeout: float = 10.0) -> bool:
        """Wait for the watcher's next quiet spell (``rust_timeout`` with no wanted change and an
        unchanged ledger): every change made before the call has been handled by then, rebuilt
        or ignored. False if none came within ``timeout`` seconds."""
        with self._idle:
            seen = self._quiet_spells
            return self._idle.wait_for(lambda: self._quiet_spells > seen, timeout)

    def _quiet(self) -> None:
        with self._idle:
            self._quiet_spells += 1
            self._idle.notify_all()

    def _run(self) -> None:
        default = DefaultFilter()
        while not self._stop.is_set():
            current = self.state.watch_set()

            def wanted(change: Change, path: str, current: WatchSet = current) -> bool:
                return default(change, path) and current.matches(path)

            try:
                changes_seen = watch(
                    *current.directories(),
                    watch_filter=wanted,
                    stop_event=self._stop,
                    recursive=False,
                    step=self.step_ms,
                    debounce=self.debounce_ms,
                    rust_timeout=500,
                    yield_on_timeout=True,
                    raise_interrupt=False,
                )
                for changes in changes_seen:
                    self.ready.set()
                    if not changes and not self.state.ledger_changed():
                        self._quiet()
                        continue
                    status = self.state.rebuild()
                    if self.on_rebuild:
                        self.on_rebuild(status)
                    if self.state.watch_set() != current:
                        break
            except Exception:  # an unwatchable directory must not end the preview
                log.warning("watching for changes failed; retrying", exc_info=True)
                self._stop.wait(1.0)


# --- The web app ------------------------------------------------------------------------------


def create_app(state: PreviewState) -> Starlette:
    """The preview's ASGI app; it only reads ``state``, so it never builds anything itself."""
    env = page_environment(PAGE_TEMPLATES)

    async def index(request: Request) -> Response:
        status = state.status
        good = status.good
        shown = good and (good.variant(request.query_params.get("variant")) or good.whole)
        page = env.get_template("editor.html.j2").render(
            status=status,
            good=good,
            shown=shown,
            instance=state.instance,
            config=str(state.config_path),
            desktop_width=DESKTOP_WIDTH,
            phone_width=PHONE_WIDTH,
            clip_bytes=GMAIL_CLIP_BYTES,
            enhancements=ENHANCEMENTS,
            clock=_clock,
        )
        return HTMLResponse(page, headers=NO_STORE)

    def chosen(request: Request) -> tuple[Snapshot, Variant] | Response:
        """The variant ``?variant=`` names (the whole issue without it), or the error response."""
        status = state.status
        if status.good is None:
            return PlainTextResponse(_no_issue_text(status), status_code=503, headers=NO_STORE)
        name = request.query_params.get("variant")
        found = status.good.variant(name)
        if found is None:
            return PlainTextResponse(f"{status.good.key} has no variant {name!r}\n", status_code=404, headers=NO_STORE)
        return status.good, found

    async def issue_html(request: Request) -> Response:
        if state.status.good is None:
            return HTMLResponse(_no_issue_page(state.status), status_code=503, headers=NO_STORE)
        found = chosen(request)
        return found if isinstance(found, Response) else HTMLResponse(found[1].html, headers=NO_STORE)

    async def issue_txt(request: Request) -> Response:
        found = chosen(request)
        return found if isinstance(found, Response) else PlainTextResponse(found[1].text, headers=NO_STORE)

    async def issue_eml(request: Request) -> Response:
        found = chosen(request)
        if isinstance(found, Response):
            return found
        good, variant = found
        suffix = "" if variant.name == ALL_SECTIONS else f"-{variant.name.replace(',', '-')}"
        return Response(
            variant.eml,
            media_type="message/rfc822",
            headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{good.key}{suffix}.eml"'},
        )

    async def api_state(request: Request) -> Response:
        return JSONResponse(state.status.as_json(state.instance), headers=NO_STORE)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/issue.html", issue_html),
            Route("/issue.txt", issue_txt),
            Route("/issue.eml", issue_eml),
            Route("/api/state", api_state),
        ]
    )


def _clock(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%H:%M:%S") if moment else ""


def _no_issue_text(status: Status) -> str:
    return f"No issue has been built yet: {status.error or 'building...'}\n"


def _no_issue_page(status: Status) -> str:
    message = html_lib.escape(status.error or "building...")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>No issue yet</title></head>'
        '<body style="font-family:system-ui,sans-serif;margin:0;padding:32px 20px;color:#444;background:#fff">'
        f"<p><strong>No issue has been built yet.</strong></p><p>{message}</p></body></html>"
    )


# --- Serving ----------------------------------------------------------------------------------


def serve(config_path: Path, *, host: str, port: int, now: datetime | None, open_browser: bool) -> None:
    """Build, serve and keep rebuilding the issue until Ctrl-C (which returns normally)."""
    import uvicorn

    config_path = Path(config_path)
    if not config_path.is_file():
        raise ConfigError(f"{config_path}: no such config file", hint="pass --config with the path to config.toml")
    state = PreviewState(config_path, now=now)
    try:
        status = state.rebuild()
        sock = listen(host, port)
        url = url_for(host, sock.getsockname()[1])
        click.echo(f"Previewing {status.key or 'the issue'} at {url} (Ctrl-C to stop)")
        _report(status, first=True)
        watcher = Watcher(state, on_rebuild=_report).start()
        config = uvicorn.Config(
            create_app(state),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        if open_browser:
            threading.Timer(0.5, webbrowser.open, args=(url,)).start()
        try:
            server.run(sockets=[sock])
        finally:
            watcher.stop()
            sock.close()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a preview ends: not an error
    finally:
        state.close()


def _report(status: Status, *, first: bool = False) -> None:
    """One line per rebuild on the terminal; the page shows the details."""
    if status.error:
        click.echo(f"digest: rebuild failed: {status.error}", err=True)
        return
    good = status.good
    if good is None:
        return
    if not first:
        click.echo(f"Rebuilt {good.key}: {good.count} article(s) (generation {status.generation})")
    for line in good.warnings:
        click.echo(f"digest: warning: {line}", err=True)
