"""A feed item's lead image: the candidates a feed offers, in order of preference, and its credit.

Feeds describe images in many ways (media:content, media:thumbnail, enclosures, <img> in the
text) and pad them with tracking pixels; the first real image wins, with alt text and a
photographer's credit taken from what the feed says about it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from digest.feeds.sanitize import plain_text
from digest.feeds.urls import absolute_url
from digest.models import Image
from digest.text import excerpt, one_line

_IMAGE_EXTENSIONS = re.compile(r"\.(?:jpe?g|png|gif|webp|avif)$", re.I)
_IMG_TAG = re.compile(r"<img\b[^>]*>", re.I)
_ATTRIBUTE = re.compile(r"""([^\s=/>"']+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""")
_PIXEL_URL = re.compile(
    r"feedburner\.com/~r/|feeds\.feedburner\.com/~ff/|pixel\.wp\.com/|stats\.wordpress\.com/"
    r"|doubleclick\.net/|google-analytics\.com/|pixel\.quantserve\.com/|feedsportal\.com/"
    r"|/(?:tracking[-_]?)?pixel(?:\.(?:gif|png))?(?:[/?]|$)|/(?:1x1|spacer|blank|transparent|beacon)\.(?:gif|png)"
    r"|/open\.(?:gif|png)(?:\?|$)|/__?utm\.gif",
    re.I,
)
_CREDIT = re.compile(
    r"©|\(c\)|\bcopyright\b|\b(?:photo(?:graph)?|image|picture|credit)s?\s*(?:by\b|:)|\bcourtesy\b"
    r"|\b(?:getty images|reuters|ap photo|afp|shutterstock|unsplash|alamy|epa)\b",
    re.I,
)
ALT_MAX = 250


@dataclass(frozen=True, slots=True)
class _Candidate:
    url: str
    width: int | None
    height: int | None
    alt: str = ""


def lead_image(entry: Any, base: str, title: str, summary_raw: str, summary_base: str) -> Image | None:
    """The lead image: media:content, media:thumbnail, an image enclosure, else the first real <img>.

    Tracking pixels (tiny, or from known counters) are never chosen. Credit comes from
    media:credit, or media:description when it reads like one; alt text from the description,
    media:title, the <img> alt, else the article title.
    """
    chosen = next(_candidates(entry, base, summary_raw, summary_base), None)
    if chosen is None:
        return None
    credits = (one_line((c or {}).get("content") or "") for c in entry.get("media_credit") or ())
    credit = excerpt(next((c for c in credits if c), ""), ALT_MAX)
    description = plain_text(entry.get("media_description") or "", is_html=True)
    if description and not credit and len(description) <= 120 and _CREDIT.search(description):
        credit, description = description, ""
    media_title = plain_text(entry.get("media_title") or "", is_html=True)
    alt = description or media_title or chosen.alt or title
    return Image(
        url=chosen.url,
        alt=excerpt(alt, ALT_MAX),
        credit=credit,
        width=chosen.width,
        height=chosen.height,
    )


def _candidates(entry: Any, base: str, summary_raw: str, summary_base: str) -> Iterator[_Candidate]:
    """Image candidates in order of preference, lazily: the <img> scan only runs if needed."""
    for media in entry.get("media_content") or ():
        medium = (media.get("medium") or "").lower()
        kind = (media.get("type") or "").lower()
        url = media.get("url") or ""
        if medium == "image" or kind.startswith("image/") or (not medium and not kind and _looks_like_image(url)):
            yield from _usable(url, media, base)
    for thumb in entry.get("media_thumbnail") or ():
        yield from _usable(thumb.get("url") or "", thumb, base)
    for enclosure in entry.get("enclosures") or ():
        kind = (enclosure.get("type") or "").lower()
        href = enclosure.get("href") or ""
        if kind.startswith("image/") or (not kind and _looks_like_image(href)):
            yield from _usable(href, {}, base)
    if summary_raw:
        yield from _inline_images(summary_raw, summary_base)
    for content in entry.get("content") or ():
        value = content.get("value") or ""
        if value and value != summary_raw:
            yield from _inline_images(value, content.get("base") or base)


def _looks_like_image(url: str) -> bool:
    return bool(_IMAGE_EXTENSIONS.search(urlsplit(url).path))


def _usable(url: str, attrs: Mapping[str, Any], base: str, alt: str = "") -> Iterator[_Candidate]:
    """Yield the candidate if its URL resolves to http(s) and it is not a tracking pixel."""
    absolute = absolute_url(html.unescape(url), base)
    width, height = _pixels(attrs.get("width")), _pixels(attrs.get("height"))
    if not absolute or _is_pixel(absolute, width, height):
        return
    yield _Candidate(absolute, width, height, alt)


def _inline_images(fragment: str, base: str) -> Iterator[_Candidate]:
    for tag in _IMG_TAG.findall(fragment):
        attrs = {m.group(1).lower(): m.group(2) or m.group(3) or m.group(4) or "" for m in _ATTRIBUTE.finditer(tag)}
        src = next(
            (
                v
                for k in ("src", "data-src", "data-lazy-src", "data-original")
                if (v := attrs.get(k, "").strip()) and not v.startswith("data:")
            ),
            "",
        )
        if src:
            yield from _usable(src, attrs, base, alt=plain_text(attrs.get("alt", ""), is_html=True))


_PIXELS = re.compile(r"\s*(\d{1,6})(?:\.\d+)?\s*(?:px)?\s*")


def _pixels(value: Any) -> int | None:
    """An attribute like "800" or "800px" as an int; None for "100%", "", junk."""
    match = _PIXELS.fullmatch(str(value)) if value is not None else None
    return int(match.group(1)) if match else None


def _is_pixel(url: str, width: int | None, height: int | None) -> bool:
    if (width is not None and width <= 2) or (height is not None and height <= 2):
        return True
    return bool(_PIXEL_URL.search(url))
