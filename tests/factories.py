"""Hand-built values for tests of the pure steps (rank, render, message)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from digest.config import Settings, parse
from digest.feeds.urls import canonical_url
from digest.models import Article, Image

NOW = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)  # Friday 09:00 in New York, ISO week 48


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    """A valid configuration; ``overrides`` replace whole top-level tables."""
    raw: dict[str, Any] = {
        "newsletter": {
            "name": "Statecraft Weekly",
            "from": "Statecraft Weekly <news@example.org>",
            "reply_to": "editors@example.org",
            "timezone": "America/New_York",
            "base_url": "https://news.example.org",
            "postal_address": "1 Main St, Springfield",
        },
        "feeds": [{"url": "feed.xml"}],
        "sections": [
            {"name": "Asia-Pacific", "categories": ["Asia-Pacific"], "limit": 3},
            {"name": "Military Industrial Complex", "categories": ["Military Industrial Complex"], "limit": 3},
        ],
        "issue": {"min_items": 2},
        "store": {"data_dir": str(tmp_path / "state")},
    }
    raw.update(overrides)
    return parse(raw, source=tmp_path / "config.toml")


def article(
    slug: str,
    *,
    hours_ago: float = 24,
    categories: tuple[str, ...] = ("Asia-Pacific",),
    image: bool = True,
    authors: tuple[str, ...] = ("Ana Author",),
    summary: str = "",
    published: bool = True,
) -> Article:
    """An article published ``hours_ago`` before NOW at https://example.org/<slug>."""
    from datetime import timedelta

    url = f"https://example.org/{slug}"
    when = NOW - timedelta(hours=hours_ago)
    return Article(
        id=f"id-{slug}",
        url=url,
        canonical_url=canonical_url(url),
        title=f"Title of {slug}",
        published=when if published else None,
        seen=when,
        authors=authors,
        categories=categories,
        summary_html=f"<p>{summary or 'Summary of ' + slug}</p>",
        summary_text=summary or f"Summary of {slug}",
        image=Image(
            url=f"https://example.org/{slug}.jpg", alt=f"Alt {slug}", credit=f"Credit {slug}", width=1200, height=675
        )
        if image
        else None,
    )
