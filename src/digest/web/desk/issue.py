"""One issue at the desk: its inbox card, desktop and phone frames, size and warnings, and the
editors' changes to a draft (pin, move, exclude, restore; subject, preheader, note).

What is shown is ``shown.snapshot`` of ``weekly.recorded_outgoing``: what `digest preview` shows
and what `digest send` sends. Every change goes through the ``weekly`` function the CLI uses and
then ``weekly.revised`` rebuilds the draft, so the next page shows the rebuilt issue. Snapshots
are kept per issue until the ledger's mark for it changes (``weekly.ledger_mark``), so the page
and its two frames render the issue once.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from digest.delivery import send, shown, weekly
from digest.delivery.shown import Snapshot
from digest.errors import DigestError
from digest.models import Front, Issue, IssueKey, IssueStatus
from digest.store import IssueRecord
from digest.subscribers import check_email
from digest.web.desk.gate import Visit, redirect
from digest.web.pages import PageError
from digest.web.site import Site

# The email in a frame of the desk: its remote images, nothing else, framed only by the desk.
FRAME_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
    "X-Frame-Options": "SAMEORIGIN",
    "Cache-Control": "no-store",
}
DONE = {
    "pin": "Pinned; the draft is rebuilt.",
    "exclude": "Excluded; the draft is rebuilt.",
    "restore": "Restored; the draft is rebuilt.",
    "up": "Moved up; the draft is rebuilt.",
    "down": "Moved down; the draft is rebuilt.",
    "front": "Saved; the draft is rebuilt.",
    "test": "The [TEST] copies are on their way (nothing is recorded in the ledger).",
    "approve": "Approved: this snapshot goes out at the send time, exactly as shown.",
    "withdraw": "The approval is withdrawn: it is a draft again.",
}
MOVES = {"up": -1, "down": 1}
ADDRESS_SEPARATORS = re.compile(r"[\s,;]+")


# The report's columns: the ledger's states of a copy, then what readers did with it.
DELIVERY_COLUMNS = (
    ("submitted", "Delivered"),
    ("failed", "Failed"),
    ("unknown", "Unknown"),
    ("pending", "Waiting"),
    ("skipped", "Skipped"),
)
SUPPRESSION_COLUMNS = (("bounced", "Bounces"), ("complained", "Complaints"), ("unsubscribed", "Unsubscribes"))


@dataclass(frozen=True, slots=True)
class Report:
    """How an issue went out: its deliveries per state, and the bounces, complaints and
    unsubscribes that came from it, in all and per variant."""

    status: str
    counts: dict[str, int]
    per_variant: dict[str, dict[str, int]]
    labels: dict[str, str]

    @property
    def total(self) -> int:
        return sum(n for state, n in self.counts.items() if state not in dict(SUPPRESSION_COLUMNS))

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "counts": self.counts, "total": self.total, "done": self.status == "sent"}


def report_of(site: Site, record: IssueRecord) -> Report:
    store, key = site.store, record.key
    per_variant: dict[str, dict[str, int]] = {}
    for source in (store.ledger.counts_by_variant(key), store.subscribers.suppressed_by(key)):
        for variant, found in source.items():
            per_variant.setdefault(variant, {}).update(found)
    counts: dict[str, int] = {}
    for variant_counts in per_variant.values():
        for state, n in variant_counts.items():
            counts[state] = counts.get(state, 0) + n
    labels = {name: shown.label(site.settings, name) for name in per_variant}
    return Report(str(record.status), counts, dict(sorted(per_variant.items())), labels)


@dataclass(frozen=True, slots=True)
class Draft:
    """An issue as the desk shows it: its record, the snapshot, the issue and editors' marks."""

    record: IssueRecord
    snapshot: Snapshot
    issue: Issue
    pinned: frozenset[str]
    moved: frozenset[str]
    excluded: tuple[str, ...]
    front: Front

    @property
    def editable(self) -> bool:
        return self.record.status == IssueStatus.DRAFT


class Drafts:
    """The last snapshot of each issue, made again only when the ledger's mark for it changes."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[tuple[Any, ...], Draft]] = {}

    def get(self, key: str) -> Draft:
        """The desk's view of recorded issue ``key`` (run in a worker thread: it may render)."""
        store, settings = self.site.store, self.site.settings
        with self._lock:
            mark = weekly.ledger_mark(store, key)
            kept = self._kept.get(key)
            if kept is not None and kept[0] == mark:
                return kept[1]
            record = store.issues.get(key)
            if record is None or record.status == IssueStatus.SKIPPED:
                why = record.note if record else "the scheduler builds a draft `schedule.review_hours` before the send"
                raise PageError(404, f"No issue {key} to show", why)
            out = weekly.recorded_outgoing(settings, store, key)
            now = record.send_at or datetime.now(UTC)
            pins, excluded = store.issues.edits(key)
            draft = Draft(
                record=record,
                snapshot=shown.snapshot(settings, out, now),
                issue=out.issue,
                pinned=frozenset(pins),
                moved=frozenset(store.issues.order(key)),
                excluded=tuple(excluded),
                front=store.issues.front(key),
            )
            self._kept[key] = (mark, draft)
            return draft


def key_of(request: Request) -> str:
    """The issue key in the path, as the ledger writes it, or 404."""
    try:
        return str(IssueKey.parse(request.path_params["key"]))
    except ValueError as exc:
        raise PageError(404, "No such issue", str(exc)) from exc


class IssuePage:
    """The issue page and the changes editors make on it."""

    def __init__(self, site: Site, page: Callable[..., Response]) -> None:
        self.site = site
        self.page = page
        self.drafts = Drafts(site)

    async def show(self, request: Request, visit: Visit, *, status: int = 200, error: str = "") -> Response:
        key = key_of(request)
        draft = await run_in_threadpool(self.drafts.get, key)
        variant = draft.snapshot.variant(request.query_params.get("variant")) or draft.snapshot.whole
        return self.page(
            request,
            visit,
            "desk/issue.html.j2",
            status,
            draft=draft,
            shown=variant,
            done=DONE.get(request.query_params.get("done", ""), ""),
            error=error,
            desktop_width=shown.DESKTOP_WIDTH,
            phone_width=shown.PHONE_WIDTH,
            clip_bytes=shown.GMAIL_CLIP_BYTES,
            budget_bytes=self.site.settings.render.size_warning_kb * 1024,
            log=await run_in_threadpool(self.site.store.audit.recent, issue_key=key, limit=50),
            report=await run_in_threadpool(report_of, self.site, draft.record),
            delivery_columns=DELIVERY_COLUMNS,
            suppression_columns=SUPPRESSION_COLUMNS,
        )

    async def progress(self, request: Request, visit: Visit) -> Response:
        """The issue's counts by state, polled by the page while it goes out (``desk.js``)."""
        key = key_of(request)
        record = await run_in_threadpool(self.site.store.issues.get, key)
        if record is None:
            raise PageError(404, f"No issue {key}")
        report = await run_in_threadpool(report_of, self.site, record)
        return JSONResponse(report.as_json(), headers={"Cache-Control": "no-store"})

    async def frame(self, request: Request, visit: Visit) -> Response:
        """The email's HTML, for the desk's desktop and phone frames."""
        draft = await run_in_threadpool(self.drafts.get, key_of(request))
        variant = draft.snapshot.variant(request.query_params.get("variant"))
        if variant is None:
            raise PageError(404, "No such variant")
        return HTMLResponse(variant.html, headers=FRAME_HEADERS)

    async def text(self, request: Request, visit: Visit) -> Response:
        draft = await run_in_threadpool(self.drafts.get, key_of(request))
        variant = draft.snapshot.variant(request.query_params.get("variant")) or draft.snapshot.whole
        return PlainTextResponse(variant.text)

    async def arrange(self, request: Request, visit: Visit) -> Response:
        """Pin, exclude, restore, or move an article up or down; the draft is rebuilt."""
        key, action, url = key_of(request), visit.value("action"), visit.value("url")
        store, settings = self.site.store, self.site.settings

        def change() -> str:
            if action in ("pin", "exclude"):
                weekly.edit(store, key, url, action)
            elif action == "restore":
                weekly.restore(store, key, url)
            elif action in MOVES:
                weekly.move(store, key, url, MOVES[action])
            else:
                raise PageError(400, "Unknown change", f"{action!r} is not a change the desk makes.")
            weekly.revised(settings, store, key)
            return url

        return await self._change(request, visit, key, action, change)

    async def introduce(self, request: Request, visit: Visit) -> Response:
        """Save the subject, preheader and editor's note; the draft is rebuilt."""
        key = key_of(request)
        store, settings = self.site.store, self.site.settings
        front = Front(visit.value("subject"), visit.value("preheader"), visit.value("note"))

        def change() -> str:
            saved = weekly.set_front(store, key, front)
            weekly.revised(settings, store, key)
            return f"subject {saved.subject!r}, preheader {saved.preheader!r}, note of {len(saved.note)} characters"

        return await self._change(request, visit, key, "front", change)

    async def test_send(self, request: Request, visit: Visit) -> Response:
        """[TEST] copies of the recorded issue to the signed-in editor and the addresses listed."""
        key = key_of(request)
        listed = [a for a in ADDRESS_SEPARATORS.split(visit.value("to")) if a]

        def change() -> str:
            addresses = list(dict.fromkeys(check_email(a) for a in [visit.editor, *listed]))
            proof = send.recorded_proof(self.site.store, key)
            send.send_proofs(self.site.settings, proof.rendered, key, addresses)
            return ", ".join(addresses)

        return await self._change(request, visit, key, "test", change)

    async def approve(self, request: Request, visit: Visit) -> Response:
        key = key_of(request)
        return await self._change(
            request, visit, key, "approve", lambda: weekly.approve(self.site.store, key, by=visit.editor)
        )

    async def withdraw(self, request: Request, visit: Visit) -> Response:
        key = key_of(request)
        return await self._change(request, visit, key, "withdraw", lambda: weekly.withdraw(self.site.store, key))

    async def _change(
        self, request: Request, visit: Visit, key: str, action: str, change: Callable[[], str | None]
    ) -> Response:
        """Do ``change`` (in a worker thread) and put it in the audit log, then show the issue
        again; a refusal is shown on the page with its reason, and not logged."""

        def done() -> None:
            detail = change()
            self.site.store.audit.record(visit.editor, action, key, detail or "")

        try:
            await run_in_threadpool(done)
        except DigestError as exc:
            return await self.show(request, visit, status=400, error=str(exc))
        return redirect(request, f"desk/issues/{key}?done={action}")
