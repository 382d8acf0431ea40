"""Choosing and ranking: pure functions from articles and settings to an ``Issue``.

Nothing here does I/O, so the editorial rules (window, sections, pins, featured, lead) are
tested with hand-made articles and the same rules serve build, preview and send.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from digest.config import Settings
from digest.errors import EmptyIssueError
from digest.feeds.urls import canonical_url
from digest.models import Article, Issue, IssueKey, Section, Window


class Rankable(Protocol):
    """What choosing and ranking read of an article: an ``Article``, or a feed's ``Candidate``
    whose article is made only once it is chosen."""

    @property
    def canonical_url(self) -> str: ...

    @property
    def categories(self) -> tuple[str, ...]: ...

    @property
    def when(self) -> datetime: ...


R = TypeVar("R", bound=Rankable)


def issue_window(now: datetime, days: int) -> Window:
    """The ``days`` before the run time, up to and including the run time itself."""
    return Window(start=now - timedelta(days=days), end=now)


def _matches(article: Rankable, categories: Iterable[str]) -> bool:
    wanted = {c.casefold() for c in categories}
    return any(c.casefold() in wanted for c in article.categories)


def assign_sections(articles: Sequence[R], settings: Settings) -> dict[str, list[R]]:
    """Put each article in the first configured section it matches, else the catch-all (if any).

    Returns every section name (in display order, catch-all last) mapped to its articles; an
    article is never in two sections.
    """
    groups: dict[str, list[R]] = {s.name: [] for s in settings.sections}
    catch_all = settings.issue.catch_all
    if catch_all:
        groups[catch_all] = []
    for article in articles:
        home = next((s.name for s in settings.sections if _matches(article, s.categories)), catch_all)
        if home:
            groups[home].append(article)
    return groups


RankKey = Callable[[Rankable], tuple[int, int, int, float]]


def rank_key(pins: Sequence[str], featured: str, order: Sequence[str] = ()) -> RankKey:
    """Sort key: editor pins first (in pin order), then the articles editors moved (in the order
    they left them), then featured articles, then newest first."""
    pin_order = {canonical_url(url): i for i, url in enumerate(pins)}
    moved = {canonical_url(url): i for i, url in enumerate(order)}
    featured_cf = featured.casefold()
    unpinned, unmoved = len(pin_order), len(moved)

    def key(article: Rankable) -> tuple[int, int, int, float]:
        pinned = pin_order.get(article.canonical_url, unpinned)
        place = moved.get(article.canonical_url, unmoved)
        is_featured = 0 if featured_cf and any(c.casefold() == featured_cf for c in article.categories) else 1
        return (pinned, place, is_featured, -article.when.timestamp())

    return key


def build_issue(
    articles: Sequence[R],
    settings: Settings,
    now: datetime,
    *,
    pins: Sequence[str] = (),
    exclude: Iterable[str] = (),
    order: Sequence[str] = (),
    make: Callable[[Sequence[R]], Sequence[Article]] | None = None,
) -> Issue:
    """Select the window's articles, group them into sections, rank, cap and pick the lead.

    ``articles`` are Articles, or candidates that ``make`` turns into their Articles: only
    those the issue shows are made, all at once after they are chosen (choosing reads only
    ``Rankable``), so that ``make`` can read them together.

    ``pins``, ``exclude`` and ``order`` (the articles editors moved, in the order they left them)
    are editors' choices for this issue (URLs, compared canonically); the config's ``[issue]
    pins`` come first. Raises EmptyIssueError when nothing is left: an
    empty issue is never built.
    """
    cfg = settings.issue
    window = issue_window(now, cfg.window_days)
    excluded = {canonical_url(u) for u in exclude}
    published = [a for a in articles if a.when in window]
    in_window = [a for a in published if a.canonical_url not in excluded]
    if not in_window:
        raise _nothing_new(window, settings, left_out=len(published))
    key = rank_key([*cfg.pins, *pins], cfg.featured_category)
    # Moves arrange a section; they do not make an article the lead (pins may: "first").
    arranged = rank_key([*cfg.pins, *pins], cfg.featured_category, order) if order else key
    limits = {s.name: s.limit for s in settings.sections}
    if cfg.catch_all:
        limits[cfg.catch_all] = cfg.catch_all_limit
    chosen = {
        name: sorted(group, key=arranged)[: limits[name]]
        for name, group in assign_sections(in_window, settings).items()
        if group
    }
    made = iter((make or _as_articles)([a for group in chosen.values() for a in group]))
    sections = tuple(Section(name, tuple(next(made) for _ in group)) for name, group in chosen.items())
    if not sections:
        raise EmptyIssueError(
            f"{len(in_window)} article(s) in the window but none matches a section's categories",
            hint="add their categories to a [[sections]] entry or set [issue] catch_all",
        )
    count = sum(len(s.articles) for s in sections)
    ranked = tuple(sorted((a for s in sections for a in s.articles), key=key))
    thin = count < cfg.min_items
    warnings = (
        (f"thin week: {count} article(s), fewer than [issue] min_items = {cfg.min_items}; it will not be sent",)
        if thin
        else ()
    )
    return Issue(
        key=str(IssueKey.at(now, settings.newsletter.zone)),
        window=window,
        sections=sections,
        lead=next((a for a in ranked if a.image is not None), None),
        thin=thin,
        warnings=warnings,
        ranked=ranked,
    )


def _as_articles(articles: Sequence[Rankable]) -> Sequence[Article]:
    """Articles given as such: the default of ``build_issue``'s ``make``."""
    assert all(isinstance(a, Article) for a in articles), "build_issue needs make= for anything but Articles"
    return articles  # type: ignore[return-value]  # checked just above


def _nothing_new(window: Window, settings: Settings, *, left_out: int) -> EmptyIssueError:
    """Why a window has nothing to build, with its times in the newsletter's zone (named)."""
    zone = settings.newsletter.zone
    start, end = window.start.astimezone(zone), window.end.astimezone(zone)
    span = f"between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} ({zone.key})"
    if left_out:
        return EmptyIssueError(
            f"no new articles published {span}: all {left_out} were already sent in an earlier issue "
            "or excluded by an editor; nothing to build",
            hint="see `digest issues`, or pass --now for the week you mean",
        )
    return EmptyIssueError(
        f"no articles published {span} in {len(settings.feeds)} feed(s): nothing to build",
        hint="check the feeds, or pass --now for the week you mean",
    )


def restrict(issue: Issue, names: Sequence[str]) -> Issue | None:
    """The issue as a subscriber who chose ``names`` gets it: only those sections, and the lead
    the top-ranked article with an image among them. None when none of them has an article."""
    chosen = {n.casefold() for n in names}
    sections = tuple(s for s in issue.sections if s.name.casefold() in chosen)
    if not sections:
        return None
    kept = {a.id for s in sections for a in s.articles}
    ranked = tuple(a for a in (issue.ranked or issue.articles) if a.id in kept)
    lead = next((a for a in ranked if a.image is not None), None)
    return replace(issue, sections=sections, ranked=ranked, lead=lead, warnings=())
