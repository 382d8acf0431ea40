"""One issue from feeds to files: the pipeline that ``build``, ``preview`` and ``send`` share.

feeds -> articles (feeds/load.py) -> issue (rank.py) -> rendered variant (render.py) -> files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digest.config import Settings
from digest.errors import EmptyIssueError, FeedError
from digest.feeds.load import FeedResult, load_articles
from digest.feeds.parse import Candidate, MisreadError
from digest.files import atomic_write
from digest.issue import rank
from digest.issue.message import build_message
from digest.issue.render import Rendered, Renderer, fill
from digest.models import Article, Front, Issue

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("digest.build")


@dataclass(frozen=True, slots=True)
class Build:
    """An issue and its rendering, with every warning met on the way.

    ``feeds_down`` says, one line each, which feeds were down and left out of this issue.
    """

    issue: Issue
    rendered: Rendered
    warnings: tuple[str, ...]
    feeds_down: tuple[str, ...] = ()


def build(
    settings: Settings,
    now: datetime,
    *,
    client: httpx.Client | None = None,
    renderer: Renderer | None = None,
    pins: Sequence[str] = (),
    exclude: Sequence[str] = (),
    order: Sequence[str] = (),
    front: Front | None = None,
) -> Build:
    """Fetch, choose, rank and render the issue for the run time ``now``, opening with the
    editors' ``front`` (subject, preheader, note) and arranged by their pins, exclusions and moves.

    With some feeds down, the issue is built from the others only when they make a full issue;
    a thin or empty week is then a FeedError naming the missing feeds, because their absence,
    not the week, is the likely cause (and the scheduler tries feeds again within its grace).
    """
    # Only the window's articles can be shown, and of those only the ones chosen are read by
    # feedparser, normalised and sanitised (Candidate.made): on a long feed a few dozen of thousands.
    feeds = load_articles(settings, now, window=rank.issue_window(now, settings.issue.window_days), client=client)
    try:
        issue = _choose(feeds, settings, now, pins=pins, exclude=exclude, order=order)
    except MisreadError as exc:
        # Not expected: the pre-filter defers only items it reads as feedparser does. Should
        # they differ, the issue is chosen again from feedparser's reading of every item.
        log.warning("%s; reading the feeds again in full", exc)
        feeds = load_articles(settings, now, client=client)
        issue = _choose(feeds, settings, now, pins=pins, exclude=exclude, order=order)
    if feeds.down and issue.thin:
        short = (
            f"the other feeds make only a thin week ({len(issue.articles)} article(s), "
            f"fewer than [issue] min_items = {settings.issue.min_items})"
        )
        raise _not_without(feeds, short) from feeds.down[0]
    if front is not None:
        issue = replace(issue, subject=front.subject, preheader=front.preheader, note=front.note)
    rendered = (renderer or Renderer(settings)).render(issue)
    return Build(
        issue=issue,
        rendered=rendered,
        warnings=(*feeds.warnings, *rendered.warnings),
        feeds_down=tuple(str(exc) for exc in feeds.down),
    )


def _choose(
    feeds: FeedResult,
    settings: Settings,
    now: datetime,
    *,
    pins: Sequence[str],
    exclude: Sequence[str],
    order: Sequence[str],
) -> Issue:
    """The issue chosen from the feeds' candidates; with feeds down, an empty week names them."""
    try:
        return rank.build_issue(
            feeds.candidates, settings, now, pins=pins, exclude=exclude, order=order, make=Candidate.made
        )
    except EmptyIssueError as exc:
        if feeds.down:
            raise _not_without(feeds, "the other feeds have no article for this issue") from exc
        raise


def _not_without(feeds: FeedResult, why: str) -> FeedError:
    """No issue from what the feeds that answered gave: name the ones that did not."""
    missing = "; ".join(exc.message for exc in feeds.down)
    return FeedError(
        f"{missing}; {why}: no issue without the missing feed(s)",
        hint="build again once the feed is back, or remove it from config.toml",
    )


def preview_values(settings: Settings) -> dict[str, str]:
    """Recipient values for copies nobody subscribed to receive (files, previews).

    The links lead to the web app's pages without a token, which explain that they came from a
    preview; they never unsubscribe anyone.
    """
    base = settings.newsletter.base_url
    return {
        "name": "",
        "email": "",
        "unsubscribe_url": f"{base}/unsubscribe",
        "preferences_url": f"{base}/preferences",
    }


def write_files(result: Build, settings: Settings, out_dir: Path, now: datetime) -> dict[str, Path]:
    """Write ``<issue>.html``, ``.txt`` and ``.eml``; each appears whole or not at all."""
    values = preview_values(settings)
    key = result.issue.key
    message = build_message(settings, result.rendered, values, now=now)
    contents = {
        "html": fill(result.rendered.html, values, "html").encode("utf-8"),
        "txt": fill(result.rendered.text, values, "text").encode("utf-8"),
        "eml": message.as_bytes(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for ext, data in contents.items():
        paths[ext] = out_dir / f"{key}.{ext}"
        atomic_write(paths[ext], data)
    return paths


def summary(result: Build) -> dict[str, Any]:
    """The ``build --json`` object: what was chosen, for scripts and for the editor's checks."""
    issue = result.issue
    return {
        "issue": issue.key,
        "subject": result.rendered.subject,
        "window": {"start": issue.window.start.isoformat(), "end": issue.window.end.isoformat()},
        "thin": issue.thin,
        "lead": issue.lead.url if issue.lead else None,
        "sections": [{"name": s.name, "articles": [_article_json(a) for a in s.articles]} for s in issue.sections],
        "html_bytes": result.rendered.html_bytes,
        "warnings": list(result.warnings),
    }


def _article_json(article: Article) -> dict[str, Any]:
    return {
        "title": article.title,
        "url": article.url,
        "published": article.published.isoformat() if article.published else None,
        "authors": list(article.authors),
        "image": article.image.url if article.image else None,
    }
