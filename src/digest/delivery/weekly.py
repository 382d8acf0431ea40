"""The weekly run, one code path for `digest send` and the scheduler: what goes out, or why not.

An issue moves draft -> approved -> sending -> sent, or ends as skipped with a reason. The rules
that keep an empty, stale, unapproved or repeated issue from going out live here:

- a thin week is recorded as skipped, never sent;
- an article already carried by an issue that was sent is never chosen again;
- when editors review (``[schedule] review_hours``), only an approved draft is sent, and what
  is sent is the approved snapshot, not a fresh build;
- editors' pins, exclusions and moves for an issue, and the subject, preheader and note they
  wrote for it (its ``Front``), apply to every (re)build of it;
- an issue built without some feeds (down, but the others make a full issue; see build.py) is
  recorded and sent like any other, and the editors are told which feeds are missing. Unless
  ``[fetch] require_all`` is set, a full issue is not held back for a missing feed: the
  scheduler's retries within the grace are for when no full issue can be built at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from digest.config import Settings
from digest.delivery import variants
from digest.errors import DeliveryError
from digest.feeds.urls import canonical_url
from digest.issue.build import Build, build
from digest.issue.render import Rendered
from digest.models import Front, Issue, IssueKey, IssueStatus, issue_of_record
from digest.store import IssueRecord, Store

log = logging.getLogger("digest.weekly")


class NotSent(DeliveryError):
    """The issue is not sent this time, on purpose; ``reason`` is what editors are told."""

    def __init__(self, key: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"{key}: {reason}", hint=hint)
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Ready:
    """An issue recorded and ready to send (pending deliveries may be queued)."""

    key: str
    subject: str
    built: Build | None  # None when an earlier run recorded it


def build_for(settings: Settings, store: Store, now: datetime) -> Build:
    """Build the issue for run time ``now`` with its editors' pins, exclusions, moves and front,
    leaving out every article an earlier issue already sent."""
    key = str(IssueKey.at(now, settings.newsletter.zone))
    pins, excluded = store.issues.edits(key)
    already = store.issues.sent_articles(besides=key)
    return build(
        settings,
        now,
        pins=pins,
        exclude=[*excluded, *already],
        order=store.issues.order(key),
        front=store.issues.front(key),
    )


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What `send` sends for a run time, worked out the way it does; nothing recorded or sent.

    ``whole`` is the ``all`` variant; ``variants`` maps each other variant that subscribers'
    choices of sections call for to its rendering, or to None when those sections have no
    article (those readers are sent nothing).
    """

    issue: Issue
    whole: Rendered
    variants: dict[str, Rendered | None]
    warnings: tuple[str, ...]
    recorded: str | None  # the recorded issue's status (draft, approved...); None: built afresh


def outgoing(settings: Settings, store: Store, now: datetime) -> Outgoing:
    """The issue ``send`` would send at ``now``, each variant as its readers get it.

    A recorded issue (draft, approved, sending, sent) goes out as its recorded snapshot, so that
    is what this returns; otherwise the build ``send`` would make, with editors' edits and
    without articles already sent.
    """
    key = str(IssueKey.at(now, settings.newsletter.zone))
    record = store.issues.get(key)
    if record is None or record.status == IssueStatus.SKIPPED:
        result = build_for(settings, store, now)
        fresh = variants.render_chosen(store, settings, result.issue)
        return Outgoing(result.issue, result.rendered, fresh, result.warnings, None)
    return recorded_outgoing(settings, store, key)


def recorded_outgoing(settings: Settings, store: Store, key: str) -> Outgoing:
    """What goes out for the recorded issue ``key``: its snapshot, each variant as its readers
    get it (a DeliveryError for an issue not recorded, or recorded without its articles)."""
    record = store.issues.get(key)
    if record is None or record.status == IssueStatus.SKIPPED:
        raise DeliveryError(f"no issue {key} is recorded", hint="a draft is built by the scheduler's review job")
    snapshot = variants.Variants(store, settings, key)
    issue = snapshot.stored_issue()
    if issue is None:
        raise DeliveryError(
            f"{key} was recorded by an older digest without its articles: it cannot be shown",
            hint=f"`digest status {key}` shows its deliveries",
        )
    warnings = tuple(store.issues.summary(key).get("warnings", ()))
    return Outgoing(issue, variants.stored_variant(store, key), snapshot.render_chosen(), warnings, record.status)


def ledger_mark(store: Store, key: str) -> tuple[Any, ...]:
    """Everything in the ledger that decides what goes out for ``key``. When it changes (a pin,
    a rebuilt or approved draft, an issue sent, a new choice of sections), ``outgoing`` may
    return something else: the preview compares marks to know when to rebuild."""
    return (
        store.issues.get(key),
        store.issues.edits(key),
        store.issues.order(key),
        store.issues.front(key),
        store.issues.summary(key),
        store.issues.sent_articles(besides=key),
        store.subscribers.section_choices(),
        store.issues.variant_names(key),
    )


def _tell_feeds_down(settings: Settings, result: Build, *, draft: bool) -> None:
    """Tell the editors which feeds were down; the mail transports load only when there is news."""
    from digest.delivery import notify

    notify.tell_feeds_down(settings, result.issue.key, result.feeds_down, draft=draft)


def _refuse_thin(settings: Settings, store: Store, result: Build, send_at: datetime | None) -> None:
    issue = result.issue
    if not issue.thin:
        return
    reason = (
        f"thin week: {len(issue.articles)} new article(s), fewer than [issue] min_items = "
        f"{settings.issue.min_items}; not sent"
    )
    store.issues.skip(issue.key, reason, window=(issue.window.start, issue.window.end), send_at=send_at)
    raise NotSent(issue.key, reason, hint="lower min_items or wait for more articles")


def draft(settings: Settings, store: Store, send_at: datetime) -> Build:
    """Build (or rebuild) the issue that goes out at ``send_at`` and record it as a draft."""
    result = build_for(settings, store, send_at)
    _refuse_thin(settings, store, result, send_at)
    record = store.issues.get(result.issue.key)
    if record is not None and record.status not in (IssueStatus.DRAFT, IssueStatus.SKIPPED):
        raise NotSent(result.issue.key, f"is already {record.status}; a draft cannot replace it")
    variants.record(store, settings, result, status=IssueStatus.DRAFT, send_at=send_at)
    log.info("draft built: %s", result.rendered.subject, extra={"issue": result.issue.key})
    if result.feeds_down:
        _tell_feeds_down(settings, result, draft=True)
    return result


def rebuild(settings: Settings, store: Store, key: str) -> Build:
    """Rebuild a draft after editors pinned or excluded articles; same window, same send time."""
    record = store.issues.get(key)
    if record is None:
        raise DeliveryError(f"no issue {key} is recorded", hint="a draft is built by the scheduler or `digest draft`")
    if record.status != IssueStatus.DRAFT:
        raise DeliveryError(f"{key} is {record.status}, not a draft: only a draft can be rebuilt")
    return draft(settings, store, record.send_at or record.window_end)


def _editable(store: Store, key: str) -> IssueRecord | None:
    """The issue's record (None if not recorded yet), or a DeliveryError once it is going out."""
    record = store.issues.get(key)
    if record is not None and record.status in (IssueStatus.SENDING, IssueStatus.SENT):
        raise DeliveryError(f"{key} is already {record.status}; editors' changes no longer apply")
    return record


def edit(store: Store, key: str, url: str, action: str) -> None:
    """Record an editor's pin or exclusion for an issue that has not started sending."""
    _editable(store, key)
    store.issues.add_edit(key, canonical_url(url), action)


def restore(store: Store, key: str, url: str) -> None:
    """Take back editors' word on one article (its pin, exclusion or move): it is ranked as the
    rules rank it again."""
    _editable(store, key)
    if not store.issues.forget_edit(key, canonical_url(url)):
        raise DeliveryError(f"{url} is neither pinned, excluded nor moved in {key}")


def move(store: Store, key: str, url: str, step: int) -> None:
    """Move an article of a recorded draft one place up (``step`` -1) or down (+1) in its section.

    The draft's section order is what editors see, so it is recorded whole: the pinned articles
    at its top stay pins (in their new order), the rest become moves, which keep that order in
    every rebuild (articles new since go below them). An article moved above the last pin
    becomes a pin; a pin moved below the first unpinned article stops being one.
    """
    record = _editable(store, key)
    issue = issue_of_record(store.issues.summary(key)) if record and record.status == IssueStatus.DRAFT else None
    if issue is None:
        raise DeliveryError(f"{key} is not a draft: only a draft's articles can be moved")
    target = canonical_url(url)
    section = next((s for s in issue.sections if any(a.canonical_url == target for a in s.articles)), None)
    if section is None:
        raise DeliveryError(f"{url} is not in {key}")
    order = [a.canonical_url for a in section.articles]
    here, there = order.index(target), order.index(target) + step
    if step not in (-1, 1) or not 0 <= there < len(order):
        raise DeliveryError(f"{url} is already {'first' if step < 0 else 'last'} in {section.name}")
    pinned = set(store.issues.edits(key)[0])
    pins = sum(1 for u in order if u in pinned)  # pins sort first: they are the section's top
    order[here], order[there] = order[there], order[here]
    if target not in pinned and there < pins:
        pins += 1  # moved up among the pins: pinned too
    elif target in pinned and there >= pins:
        pins -= 1  # moved down past them: no longer pinned
    store.issues.arrange(key, order[:pins], order[pins:])


FRONT_LIMITS = {"subject": 200, "preheader": 200, "note": 4000}


def set_front(store: Store, key: str, front: Front) -> Front:
    """Record the subject, preheader and note editors wrote for an issue (each empty for the
    default), checked: the subject and preheader one line each, none past its length."""
    cleaned = Front(" ".join(front.subject.split()), " ".join(front.preheader.split()), front.note.strip())
    for name, limit in FRONT_LIMITS.items():
        if len(getattr(cleaned, name)) > limit:
            raise DeliveryError(f"the {name} is longer than {limit} characters; shorten it")
    _editable(store, key)
    store.issues.set_front(key, cleaned)
    return cleaned


def revised(settings: Settings, store: Store, key: str) -> Build | None:
    """After an editor's change: the draft rebuilt with it, or None when ``key`` is not a draft
    (the change applies when it is built)."""
    record = store.issues.get(key)
    if record is None or record.status != IssueStatus.DRAFT:
        return None
    return rebuild(settings, store, key)


def approve(store: Store, key: str, *, by: str = "") -> None:
    """Approve a draft ``by`` an editor: its recorded snapshot is what goes out at its send time."""
    record = store.issues.get(key)
    if record is None:
        raise DeliveryError(f"no issue {key} is recorded", hint="see `digest issues`")
    if record.status == IssueStatus.APPROVED:
        return
    if not store.issues.set_status(key, IssueStatus.APPROVED, expect=(IssueStatus.DRAFT,), by=by):
        raise DeliveryError(f"{key} is {record.status}; only a draft can be approved")


def withdraw(store: Store, key: str) -> None:
    """Take back an approval before the issue starts going out: it is a draft again, to change
    and approve anew (or, unapproved at its send time, not sent)."""
    record = store.issues.get(key)
    if record is None:
        raise DeliveryError(f"no issue {key} is recorded", hint="see `digest issues`")
    if not store.issues.set_status(key, IssueStatus.DRAFT, expect=(IssueStatus.APPROVED,)):
        raise DeliveryError(f"{key} is {record.status}; only an approved issue can be withdrawn")


def ready_to_send(settings: Settings, store: Store, now: datetime, *, scheduled: bool = False) -> Ready:
    """Make sure the issue for ``now`` is recorded and approved to send, or raise NotSent.

    ``scheduled`` is True for the scheduler's send: with ``review_hours`` set and no
    ``auto_approve``, only an approved draft may go out then.
    """
    cfg = settings.schedule
    review = cfg.review_hours > 0 and not cfg.auto_approve
    key = str(IssueKey.at(now, settings.newsletter.zone))
    record = store.issues.get(key)
    if record is None or record.status == IssueStatus.SKIPPED:
        if review and scheduled:
            raise NotSent(key, "no draft was built and approved for review; not sent")
        result = build_for(settings, store, now)
        _refuse_thin(settings, store, result, now)
        variants.record(store, settings, result, status=IssueStatus.SENDING, send_at=now)
        if result.feeds_down:
            _tell_feeds_down(settings, result, draft=False)
        return Ready(key, result.rendered.subject, result)
    if record.status == IssueStatus.DRAFT:
        if review or not scheduled:
            raise NotSent(key, "the draft was not approved; not sent", hint=f"approve it with `digest approve {key}`")
        store.issues.set_status(key, IssueStatus.APPROVED, expect=(IssueStatus.DRAFT,))
        record = store.issues.get(key) or record
    if record.status == IssueStatus.APPROVED:
        store.issues.set_status(key, IssueStatus.SENDING, expect=(IssueStatus.APPROVED,))
    return Ready(key, record.subject, None)
