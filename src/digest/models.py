"""The data that flows forward through the pipeline: feeds -> articles -> issue.

Plain frozen dataclasses with no behaviour beyond derived values, so every step can be tested
with hand-built values and nothing here imports the rest of the package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


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

    @property
    def articles(self) -> tuple[Article, ...]:
        """Every article in the issue, in display order."""
        return tuple(a for s in self.sections for a in s.articles)
