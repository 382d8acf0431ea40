"""The window first: a long RSS feed's old items taken out before feedparser builds them.

On a long feed nearly all of feedparser's time goes into items an issue can never show. Here
lxml streams the document and takes out each RSS 2.0 item whose every date, read by
feedparser's own date parser, lies well outside the window; feedparser then reads the rest,
re-serialised. An item taken out still counts for duplicates (in ``load`` the first copy of an
item wins, even from outside the window), so its link and guid are kept exactly as feedparser
would have stored them, for ``parse`` to make its id and canonical URL the usual way.

Only items of a plainly simple form are taken out: the elements listed below, no attributes
but a guid's ``isPermaLink``, ASCII links and dates, no ``xml:base``. Any other item stays for
feedparser, whole. A document lxml cannot read strictly (feedparser is lenient: bozo feeds,
HTML entities, a DOCTYPE), one not in UTF-8 or not RSS 2.0, gets ``None``: the caller reads it
as it is, exactly as without this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from feedparser.datetimes import _parse_date
from feedparser.urls import _urljoin, make_safe_absolute_uri
from lxml import etree

from digest.models import Window

__all__ = ["Dropped", "Filtered", "drop_outside", "parsed_time"]

# Items dated this close to the window are left to the usual path, whatever their date says.
MARGIN = timedelta(hours=1)
# Below this size feedparser is quick anyway and the pass over the document would cost more.
MIN_BYTES = 256 * 1024
_CHUNK = 1 << 20

_DC = "{http://purl.org/dc/elements/1.1/}"
_MEDIA = "{http://search.yahoo.com/mrss/}"
_DATES = frozenset({"pubDate", f"{_DC}date"})
# The other children an item taken out may have, besides its <link>, <guid>, dates and media:*
# elements: none gives feedparser a link, an id or a date (each is checked to set no base and
# to hold only text).
_PLAIN = frozenset(
    {
        "title",
        "description",
        "author",
        "category",
        "comments",
        "enclosure",
        f"{_DC}creator",
        f"{_DC}subject",
        "{http://purl.org/rss/1.0/modules/content/}encoded",
    }
)
# How feedparser stores a link: "&amp;" and anything like an entity lose their escaping.
_ENTITY_LIKE = re.compile("&([A-Za-z0-9_]+);")


@dataclass(frozen=True, slots=True)
class Dropped:
    """An item taken out: its place among the document's items, its link and guid as feedparser
    would have stored them (``entry.link``, ``entry.id``)."""

    position: int
    link: str
    id: str | None


@dataclass(frozen=True, slots=True)
class Filtered:
    """The document without the items taken out (UTF-8), those items, and how many it had."""

    body: bytes
    dropped: tuple[Dropped, ...]
    items: int


def parsed_time(parsed: Any) -> datetime | None:
    """feedparser's UTC ``time.struct_time`` as an aware datetime; None if it is not a real time."""
    try:
        return datetime(*parsed[:6]).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def drop_outside(body: bytes, window: Window, base_url: str) -> Filtered | None:
    """The UTF-8 document ``body`` without its items plainly outside ``window``, or None.

    None means "read the document as it is": it is not RSS 2.0 that lxml reads strictly,
    nothing could be taken out, or ``base_url`` is one feedparser would rewrite (so the base an
    item's link is resolved against would not be plainly ``base_url``).
    """
    if len(body) < MIN_BYTES or _feedparser_base(base_url) != base_url:
        return None
    parser = etree.XMLPullParser(
        events=("end",), tag="item", huge_tree=True, resolve_entities=False, no_network=True, load_dtd=False
    )
    span = (window.start - MARGIN, window.end + MARGIN)
    dropped: list[Dropped] = []
    items = 0
    channels = _Channels()
    try:
        for offset in range(0, len(body), _CHUNK):
            parser.feed(body[offset : offset + _CHUNK])
            for _, item in parser.read_events():
                taken = _taken_out(item, items, span, base_url) if channels.plain(item.getparent()) else None
                if taken is not None:
                    dropped.append(taken)
                    item.getparent().remove(item)  # and its memory with it
                items += 1
        root = parser.close()
    except etree.LxmlError:  # not well-formed, an undefined entity...: feedparser's call
        return None
    tree = root.getroottree()
    if not dropped or tree.docinfo.doctype or root.tag != "rss" or _has_base(root):
        return None
    return Filtered(etree.tostring(tree, encoding="UTF-8", xml_declaration=True), tuple(dropped), items)


def _feedparser_base(base_url: str) -> str:
    """The base feedparser resolves an item's links against, when no element sets ``xml:base``."""
    base = make_safe_absolute_uri("", base_url) or make_safe_absolute_uri(base_url) or ""
    return (make_safe_absolute_uri(base, base) or base) if base else _urljoin(base, base)


def _has_base(element: Any) -> bool:
    """Whether the element sets a base for feedparser: ``xml:base``, or any attribute named base."""
    names: list[str] = element.keys()  # attribute names, as lxml lists them
    return bool(names) and any(name.rpartition("}")[2].lower() == "base" for name in names)


class _Channels:
    """Whether an item's parent is the <channel> right under the root, setting no base (remembered)."""

    def __init__(self) -> None:
        self._last: Any = None
        self._plain = False

    def plain(self, parent: Any) -> bool:
        if parent is not self._last:
            above = parent.getparent() if parent is not None else None
            self._last = parent
            self._plain = (
                parent.tag == "channel" and above is not None and above.getparent() is None and not _has_base(parent)
            )
        return self._plain


def _taken_out(item: Any, position: int, span: tuple[datetime, datetime], base: str) -> Dropped | None:
    """The item as taken out, if it is of the simple form and dated only outside ``span``."""
    if item.keys():
        return None
    link: Any = None
    guid: Any = None
    dates: list[Any] = []
    for child in item:
        tag = child.tag
        if tag in _PLAIN:
            if len(child) or _has_base(child):
                return None
        elif tag == "link":
            if link is not None or len(child) or child.keys():
                return None
            link = child
        elif tag == "guid":
            if guid is not None or len(child) or set(child.keys()) - {"isPermaLink"}:
                return None
            guid = child
        elif tag in _DATES:
            if len(child):
                return None
            dates.append(child)
        elif not isinstance(tag, str):  # a comment or processing instruction: feedparser skips them
            continue
        elif not (tag.startswith(_MEDIA) and _only_media(child)):
            return None
    if link is None or not dates or not all(_outside(date, span) for date in dates):
        return None
    return _as_feedparser_reads(position, link, guid, base)


def _only_media(element: Any) -> bool:
    """Whether the subtree holds nothing but media:* elements (setting no base), comments and text."""
    for node in element.iter():
        if isinstance(node.tag, str) and (not node.tag.startswith(_MEDIA) or _has_base(node)):
            return False
    return True


def _text(element: Any) -> str | None:
    """The element's ASCII text, stripped as feedparser strips it; None if not ASCII."""
    text = (element.text or "").strip()
    return text if text.isascii() else None


def _outside(element: Any, span: tuple[datetime, datetime]) -> bool:
    """Whether feedparser reads the date element as a time outside ``span`` (unreadable: no)."""
    text = _text(element)
    when = parsed_time(_parse_date(text)) if text else None
    return when is not None and not span[0] < when <= span[1]


def _as_feedparser_reads(position: int, link: Any, guid: Any, base: str) -> Dropped | None:
    """The link and guid as feedparser's ``pop`` stores them for ASCII text and a plain base.

    The link is resolved against the base and loses its "&amp;" escaping; a guid is resolved
    only when it is a permalink (``isPermaLink`` absent or "true"). A <link> element always wins
    over a permalink guid as the item's link, whichever comes first.
    """
    link_text = _text(link)
    if not link_text:
        return None
    stored = _urljoin(base, link_text)
    if "&" in stored:
        stored = _ENTITY_LIKE.sub(r"&\g<1>", stored.replace("&amp;", "&"))
    if guid is None:
        return Dropped(position, stored, None)
    guid_text = _text(guid)
    if guid_text is None:
        return None
    is_link = guid.get("isPermaLink", "true") == "true"
    return Dropped(position, stored, _urljoin(base, guid_text) if is_link and guid_text else guid_text)
