"""The data that flows forward through the pipeline: feeds -> articles -> issue.

Plain frozen dataclasses with no behaviour beyond derived values, so every step can be tested
with hand-built values and nothing here imports the rest of the package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


@dataclass(frozen=True, slots=True)
class Image:
    """A lead image as the feed described it; width/height are the source's pixels if known."""

    url: str
    alt: str = ""
    credit: str = ""
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class Article:
    """One feed item, normalised and sanitised; nothing in it is trusted HTML except ``summary_html``.

    ``published`` is None when the feed gave no date; ``seen`` is then when digest first saw the
    item (remembered between runs), so undated items still land in exactly one week's issue.
    """

    id: str
    url: str
    canonical_url: str
    title: str
    published: datetime | None
    seen: datetime
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    summary_html: str = ""
    summary_text: str = ""
    image: Image | None = None
    feed: str = ""

    @property
    def when(self) -> datetime:
        """The time the article counts as published for windows and ranking."""
        return self.published or self.seen


@dataclass(frozen=True, slots=True)
class Window:
    """The interval (start, end] an issue covers, in aware datetimes.

    Open at the start and closed at the end, so weekly windows tile without overlap and an item
    first seen at the very moment of a run (an undated item on its first fetch) is in that run.
    """

    start: datetime
    end: datetime

    def __contains__(self, moment: datetime) -> bool:
        return self.start < moment <= self.end


@dataclass(frozen=True, slots=True)
class Section:
    """A named group of ranked articles in an issue, in the order they are shown."""

    name: str
    articles: tuple[Article, ...]


@dataclass(frozen=True, slots=True)
class Issue:
    """One edition: its key (ISO week), window, sections and lead story.

    The lead also stays in its section's ``articles`` (it is that section's top story); the
    templates show it once, at the top, and skip it inside its section.
    """

    key: str
    window: Window
    sections: tuple[Section, ...]
    lead: Article | None
    thin: bool = False
    warnings: tuple[str, ...] = field(default=())
    ranked: tuple[Article, ...] = field(default=())  # every article, best first, across sections

    @property
    def articles(self) -> tuple[Article, ...]:
        """Every article in the issue, in display order."""
        return tuple(a for s in self.sections for a in s.articles)


# --- JSON form ---------------------------------------------------------------------------------
# An issue is stored with its articles so a variant for a choice of sections first met after the
# issue was recorded (a new subscriber) is rendered from exactly the same articles.


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def article_to_data(a: Article) -> dict[str, object]:
    image = a.image
    return {
        "id": a.id,
        "url": a.url,
        "canonical_url": a.canonical_url,
        "title": a.title,
        "published": a.published.isoformat() if a.published else None,
        "seen": a.seen.isoformat(),
        "authors": list(a.authors),
        "categories": list(a.categories),
        "summary_html": a.summary_html,
        "summary_text": a.summary_text,
        "feed": a.feed,
        "image": None
        if image is None
        else {
            "url": image.url,
            "alt": image.alt,
            "credit": image.credit,
            "width": image.width,
            "height": image.height,
        },
    }


def article_from_data(d: dict[str, Any]) -> Article:
    image = d.get("image")
    return Article(
        id=d["id"],
        url=d["url"],
        canonical_url=d["canonical_url"],
        title=d["title"],
        published=_when(d.get("published")),
        seen=_when(d["seen"]) or datetime.min,
        authors=tuple(d.get("authors", ())),
        categories=tuple(d.get("categories", ())),
        summary_html=d.get("summary_html", ""),
        summary_text=d.get("summary_text", ""),
        feed=d.get("feed", ""),
        image=Image(**image) if image else None,
    )


def issue_to_data(issue: Issue) -> dict[str, object]:
    """The issue as JSON-ready data: sections in order, articles in rank order."""
    ranked = issue.ranked or issue.articles
    home = {a.id: s.name for s in issue.sections for a in s.articles}
    return {
        "key": issue.key,
        "window": [issue.window.start.isoformat(), issue.window.end.isoformat()],
        "sections": [s.name for s in issue.sections],
        "ranked": [{"section": home[a.id], **article_to_data(a)} for a in ranked],
        "lead": issue.lead.id if issue.lead else None,
    }


def issue_from_data(d: dict[str, Any]) -> Issue:
    ranked = [(item["section"], article_from_data(item)) for item in d["ranked"]]
    sections = tuple(Section(name, tuple(a for home, a in ranked if home == name)) for name in d["sections"])
    articles = tuple(a for _, a in ranked)
    lead = next((a for a in articles if a.id == d.get("lead")), None)
    start, end = (datetime.fromisoformat(v) for v in d["window"])
    return Issue(key=d["key"], window=Window(start, end), sections=sections, lead=lead, ranked=articles)


# --- States ------------------------------------------------------------------------------------
# The states the database records, each named once. StrEnums: a member *is* its stored string
# (``SubscriberStatus.ACTIVE == "active"``), so stored values, log lines and CLI output keep
# their words, and a row read back compares equal to the member.


class SubscriberStatus(StrEnum):
    """Whether a subscriber is mailed. Every state but ``active`` is a suppression, declared in
    increasing strength: a stronger one is never replaced by a weaker (a complaint stays one)."""

    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"

    @property
    def strength(self) -> int:
        """0 for active, then 1, 2, 3 for ever stronger suppressions (the declaration order)."""
        return list(SubscriberStatus).index(self)


class IssueStatus(StrEnum):
    """Where an issue is on its way out.

    draft: built for review, not yet approved; approved: may be sent at its send time; sending:
    deliveries recorded and going out; sent: nothing left to send; skipped: not sent on purpose
    (thin week, feeds down, not approved in time), with the reason in its note.
    """

    DRAFT = "draft"
    APPROVED = "approved"
    SENDING = "sending"
    SENT = "sent"
    SKIPPED = "skipped"

    @property
    def went_out(self) -> bool:
        """Whether readers have (or are getting) this issue: its articles are never sent again,
        and it is in the web archive."""
        return self in (IssueStatus.SENDING, IssueStatus.SENT)


class DeliveryStatus(StrEnum):
    """One subscriber's copy of one issue.

    pending: recorded, not yet claimed; submitting: claimed and handed to a transport; submitted:
    the transport accepted it; failed: refused, may be retried with --retry-failed; unknown: the
    outcome is unknown (crash or timeout mid-request), never re-sent on its own: a transport's
    evidence settles it as submitted or back to pending, or --resend-unknown queues it again;
    skipped: not sent on purpose (suppressed after it was recorded, or no article in the
    subscriber's sections).
    """

    PENDING = "pending"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    FAILED = "failed"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"


class BatchStatus(StrEnum):
    """One claimed batch: the delivery states a batch can end in, plus ``retried`` (its failed
    or unknown recipients were queued again; the batch stays as history)."""

    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    FAILED = "failed"
    UNKNOWN = "unknown"
    RETRIED = "retried"
