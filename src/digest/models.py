"""The data that flows forward through the pipeline: feeds -> articles -> issue.

Plain frozen dataclasses with no behaviour beyond derived values, so every step can be tested
with hand-built values and nothing here imports the rest of the package.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, tzinfo
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
    note: str = ""  # the editor's note, Markdown source; empty for none
    subject: str = ""  # the editors' subject line; empty: [newsletter] subject
    preheader: str = ""  # the editors' preheader; empty: the first article's excerpt

    @property
    def articles(self) -> tuple[Article, ...]:
        """Every article in the issue, in display order."""
        return tuple(a for s in self.sections for a in s.articles)


@dataclass(frozen=True, slots=True)
class Front:
    """What opens an issue, as its editors wrote it: a subject line and a preheader (each empty
    for the one worked out from the articles) and the editor's note (Markdown; empty for none).
    Kept per issue apart from the build, so every (re)build of that issue opens with it."""

    subject: str = ""
    preheader: str = ""
    note: str = ""


# --- naming an issue and choosing sections ----------------------------------------------------

_ISSUE_KEY = re.compile(r"(\d{4})-W(\d{2})", re.IGNORECASE)


@dataclass(frozen=True, slots=True, order=True)
class IssueKey:
    """An issue's name: the ISO week of its run time in the newsletter's zone, e.g. ``2026-W48``.

    One week, one issue: the ledger, the archive's URLs, file names and editors' commands all name
    an edition by this key, so it is worked out here and nowhere else. The ISO year is used (not the
    calendar year), so 29 December 2025 is ``2026-W01``. Keys order by week, as their text does.
    """

    year: int
    week: int

    @classmethod
    def at(cls, moment: datetime, zone: tzinfo) -> IssueKey:
        """The key of the issue that a run at ``moment`` (aware) builds or sends."""
        year, week, _ = moment.astimezone(zone).isocalendar()
        return cls(year, week)

    @classmethod
    def parse(cls, text: str) -> IssueKey:
        """A key as a person types it (``2026-W48``, any case); a ValueError saying what is wrong.

        Checked, not just matched: a mistyped key would otherwise be taken as an issue that is
        merely not built yet (an editor's pin recorded for a week that never comes).
        """
        match = _ISSUE_KEY.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not an issue key; issue keys are ISO weeks like 2026-W48")
        year, week = int(match.group(1)), int(match.group(2))
        try:
            date.fromisocalendar(year, week, 1)
        except ValueError as exc:
            raise ValueError(f"{text!r} is not an issue key: {year} has no ISO week {week}") from exc
        return cls(year, week)

    def __str__(self) -> str:
        return f"{self.year}-W{self.week:02d}"


ALL_SECTIONS = "all"  # the variant every subscriber gets until they choose sections
SECTION_SEPARATORS = (";", "|")  # between section names in a CSV cell; "|" for spreadsheets that split on ";"


@dataclass(frozen=True, slots=True)
class SectionChoice:
    """Which of the configured sections a subscriber reads, normalised against the config.

    ``names`` are configured names in their configured spelling, in the order they were chosen
    (that is how they are stored and exported); none means every section. Names are compared
    without regard to case. A stored choice may name sections renamed or removed since: they are
    ignored, and a choice of every section, or of none that still exists, is every section. Each
    distinct choice is one variant of the issue, rendered once, named by its sections' positions.
    """

    names: tuple[str, ...]
    configured: tuple[str, ...]

    @classmethod
    def of(cls, names: Iterable[str], configured: Sequence[str], *, strict: bool = False) -> SectionChoice:
        """The choice of ``names``; an unknown name is dropped (a stored choice), or with
        ``strict`` (a choice being made now) a ValueError naming it and the known ones."""
        by_key = {name.casefold(): name for name in configured}
        chosen: list[str] = []
        for name in names:
            known = by_key.get(name.strip().casefold())
            if known is None and strict:
                raise ValueError(f"unknown section {name.strip()!r} (known: {', '.join(configured)})")
            if known is not None:
                chosen.append(known)
        return cls(tuple(dict.fromkeys(chosen)), tuple(configured))

    @classmethod
    def parse(cls, text: str, configured: Sequence[str]) -> SectionChoice:
        """``"Asia-Pacific; Europe"`` (or ``|`` between names) -> the choice; an unknown name is a ValueError."""
        for sep in SECTION_SEPARATORS[1:]:
            text = text.replace(sep, SECTION_SEPARATORS[0])
        parts = (part for part in text.split(SECTION_SEPARATORS[0]) if part.strip())
        return cls.of(parts, configured, strict=True)

    @classmethod
    def of_variant(cls, variant: str, configured: Sequence[str]) -> SectionChoice:
        """The choice a variant name (``all``, or positions like ``1,3``) stands for."""
        if variant == ALL_SECTIONS:
            return cls((), tuple(configured))
        return cls(tuple(configured[int(i) - 1] for i in variant.split(",")), tuple(configured))

    @property
    def positions(self) -> tuple[int, ...]:
        """The chosen sections' places in config order, counting from 1; empty for every section."""
        picked = tuple(i for i, name in enumerate(self.configured, start=1) if name in self.names)
        return () if len(picked) == len(self.configured) else picked

    @property
    def everything(self) -> bool:
        """Whether this reader gets every section (including any added later)."""
        return not self.positions

    @property
    def sections(self) -> tuple[str, ...]:
        """The sections this reader gets, in config order."""
        return tuple(self.configured[i - 1] for i in self.positions) if self.positions else self.configured

    @property
    def variant(self) -> str:
        """The name of the variant this reader is sent: ``all``, or positions like ``1,3``."""
        return ",".join(map(str, self.positions)) if self.positions else ALL_SECTIONS

    def normalised(self) -> SectionChoice:
        """The same choice in canonical form: no names for every section, else config order."""
        return replace(self, names=() if self.everything else self.sections)


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
    # Each section's order, when editors' moves made it other than the rank order.
    arranged = {s.name: [a.id for a in s.articles] for s in issue.sections}
    by_rank = {s.name: [a.id for a in ranked if home[a.id] == s.name] for s in issue.sections}
    return {
        "key": issue.key,
        "window": [issue.window.start.isoformat(), issue.window.end.isoformat()],
        "sections": [s.name for s in issue.sections],
        **({"arranged": arranged} if arranged != by_rank else {}),
        "ranked": [{"section": home[a.id], **article_to_data(a)} for a in ranked],
        "lead": issue.lead.id if issue.lead else None,
        **({"note": issue.note} if issue.note else {}),
        **({"subject": issue.subject} if issue.subject else {}),
        **({"preheader": issue.preheader} if issue.preheader else {}),
    }


def issue_from_data(d: dict[str, Any]) -> Issue:
    ranked = [(item["section"], article_from_data(item)) for item in d["ranked"]]
    articles = tuple(a for _, a in ranked)
    if "arranged" in d:
        by_id = {a.id: a for a in articles}
        sections = tuple(Section(name, tuple(by_id[i] for i in d["arranged"][name])) for name in d["sections"])
    else:
        sections = tuple(Section(name, tuple(a for home, a in ranked if home == name)) for name in d["sections"])
    lead = next((a for a in articles if a.id == d.get("lead")), None)
    start, end = (datetime.fromisoformat(v) for v in d["window"])
    return Issue(
        key=d["key"],
        window=Window(start, end),
        sections=sections,
        lead=lead,
        ranked=articles,
        note=d.get("note", ""),
        subject=d.get("subject", ""),
        preheader=d.get("preheader", ""),
    )


def issue_record(issue: Issue, warnings: Sequence[str]) -> dict[str, object]:
    """What the ledger keeps of an issue beside its rendered variants: the issue itself (so a
    variant first asked for later is rendered from the same articles) and the build's warnings.

    Its own shape, not the ``build --json`` object a script reads: that one may change for its
    readers without touching what is stored.
    """
    return {"issue": issue_to_data(issue), "warnings": list(warnings)}


def issue_of_record(record: Mapping[str, Any]) -> Issue | None:
    """The issue kept by ``issue_record``; None for an issue recorded without its articles.

    Issues recorded before this shape kept the ``build --json`` object, with the issue's data
    under ``issue_data`` (and ``issue`` the bare key): those are read too."""
    data = record.get("issue")
    if not isinstance(data, dict):
        data = record.get("issue_data")
    return issue_from_data(data) if isinstance(data, dict) else None


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
