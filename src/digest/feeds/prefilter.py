"""The window first: a long RSS feed's items cut out before feedparser builds them.

On a long feed nearly all of feedparser's time goes into items an issue never shows. Here one
pass of expat (the parser feedparser itself reads XML with) finds each RSS 2.0 item whose every
date, read by feedparser's own date parser, lies well outside the window, and cuts its bytes
out of the document; feedparser then reads the rest, every other byte as it was. An item cut
out still counts for duplicates (in ``load`` the first copy of an item wins, even from outside
the window), so its link and guid are kept exactly as feedparser would have stored them, for
``parse`` to make its id and canonical URL the usual way.

An item with one date, inside the window or near it, is cut out too when what choosing an
issue reads of it (link, guid, date and categories) is as plain to read here as for feedparser:
it is ``Deferred``, its bytes kept, and feedparser reads it only if the issue shows it (``parse``
gives it the document's ``head`` to be read after, and checks that feedparser read the same).
A week of a busy feed is hundreds of items, of which an issue shows a few dozen.

Only items of a plainly simple form are cut: the elements listed below, no attributes but a
guid's ``isPermaLink``, ASCII links and dates, no base set anywhere on their way. Any other item
stays for feedparser. A document expat cannot read strictly (feedparser is lenient: bozo feeds,
HTML entities), one with a DOCTYPE, or not RSS 2.0, gets ``None``: the caller reads it as it
is, exactly as without this module. The document is read a piece at a time (a local feed
straight from its file): nothing is held but the bytes kept (the deferred items' included), the
item being read and its predecessors' links and guids, so a 100 MB feed never sits in memory
whole.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO
from xml.parsers import expat

from feedparser.datetimes import _parse_date
from feedparser.urls import _urljoin, make_safe_absolute_uri

from digest.feeds.urls import is_plain
from digest.models import Window

__all__ = ["TAIL", "Deferred", "Dropped", "Filtered", "drop_outside", "item_time", "parsed_time"]

# Items dated this close to the window are left to the usual path, whatever their date says.
MARGIN = timedelta(hours=1)
# Below this size feedparser is quick anyway and the pass over the document would cost more.
MIN_BYTES = 64 * 1024
# How much of the document expat is given at a time.
CHUNK = 1 << 20

# What closes a document of which only the start (up to its first item) was kept: the pre-filter
# reads only <rss> documents whose items are children of <channel>.
TAIL = b"</channel></rss>"

# expat names a namespaced element or attribute "<namespace URI> <local name>".
_DC = "http://purl.org/dc/elements/1.1/ "
_MEDIA = "http://search.yahoo.com/mrss/ "
_DATES = frozenset({"pubDate", f"{_DC}date"})
# The elements feedparser makes an item's categories of (``tags``). A plain one (no attributes,
# ASCII text) is read here as feedparser's ``pop`` reads it: its text, stripped; media:category
# and media:keywords, which feedparser also turns into tags, make an item not deferrable.
_CATEGORIES = frozenset({"category", f"{_DC}subject"})
_MEDIA_TAGS = frozenset({f"{_MEDIA}category", f"{_MEDIA}keywords"})
# The other children an item cut out may have, besides its <link>, <guid>, dates and media:*
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
        "http://purl.org/rss/1.0/modules/content/ encoded",
    }
)
# How feedparser stores a link: "&amp;" and anything like an entity lose their escaping.
_ENTITY_LIKE = re.compile("&([A-Za-z0-9_]+);")
# The form nearly every RSS 2.0 feed dates its items in: RFC 822 as ``email.utils`` writes it,
# with a numeric offset, GMT or UTC (feedparser reads both names as UTC).
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_RFC822 = re.compile(
    rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{{1,2}}) ({'|'.join(_MONTHS)}) "
    r"([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) (?:([+-])([0-9]{2})([0-9]{2})|GMT|UTC)"
)


@dataclass(frozen=True, slots=True)
class Dropped:
    """An item cut out: its place among the document's items, its link and guid as feedparser
    would have stored them (``entry.link``, ``entry.id``)."""

    position: int
    link: str
    id: str | None


@dataclass(frozen=True, slots=True)
class Deferred:
    """An item cut out to be read only if an issue shows it: its place, its link and guid as
    feedparser would have stored them, its date as feedparser reads it, the text of its
    categories as feedparser stores each one (``tags``), and its bytes, from ``<item`` to ``</item>``."""

    position: int
    link: str
    id: str | None
    published: datetime
    categories: tuple[str, ...]
    raw: bytes


@dataclass(frozen=True, slots=True)
class Filtered:
    """The document without the items cut out, those items, and how many items it had.

    ``head`` is the document up to its first item: with a deferred item's bytes and ``TAIL``
    after it, a document feedparser reads that item from as it would have in the whole one.
    """

    body: bytes
    dropped: tuple[Dropped, ...]
    items: int
    deferred: tuple[Deferred, ...] = ()
    head: bytes = b""


def parsed_time(parsed: Any) -> datetime | None:
    """feedparser's UTC ``time.struct_time`` as an aware datetime; None if it is not a real time."""
    try:
        return datetime(*parsed[:6]).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def item_time(text: str) -> datetime | None:
    """The instant feedparser reads an item's date ``text`` as (``parsed_time(_parse_date(text))``).

    Every item's dates are read here, a hundred thousand in a long feed, and feedparser's
    reader tries W3C dates first and then lowercases and splits the text: a date in the
    plain RFC 822 form is read directly instead, in about a third of the time. Anything else,
    or a date that is no real time (February 30th, 24:00:00, beyond year 9999), goes to
    feedparser itself, so both readings always agree (a test compares them).
    """
    plain = _RFC822.fullmatch(text)
    if plain is not None:
        day, month, year, hour, minute, second, sign, hours, minutes = plain.groups()
        try:
            when = datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second), tzinfo=UTC)
            if sign is not None:
                offset = timedelta(hours=int(hours), minutes=int(minutes))
                when = when - offset if sign == "+" else when + offset
        except (ValueError, OverflowError):
            pass
        else:
            return when
    return parsed_time(_parse_date(text)) if text.isascii() else None


def drop_outside(body: bytes | BinaryIO, window: Window, base_url: str) -> Filtered | None:
    """The UTF-8 document ``body`` without its items plainly outside ``window``, or None.

    ``body`` is the document's bytes or a binary file positioned at its start, read to its end
    here a piece at a time. None means "read the document as it is": it is not RSS 2.0 that
    expat reads strictly, nothing could be cut, or ``base_url`` is one feedparser would rewrite
    (so the base an item's link is resolved against would not be plainly ``base_url``).
    """
    stream = io.BytesIO(body) if isinstance(body, bytes) else body
    if _remaining(stream) < MIN_BYTES or _feedparser_base(base_url) != base_url:
        return None
    reader = _Reader((window.start - MARGIN, window.end + MARGIN), base_url)
    try:
        reader.read(stream)
    except (expat.ExpatError, _NotPlain):
        return None
    if not reader.dropped and not reader.deferred:
        return None
    return Filtered(bytes(reader.kept), tuple(reader.dropped), reader.items, tuple(reader.deferred), reader.head)


def _remaining(stream: BinaryIO) -> int:
    """How many bytes are left to read in ``stream``, which stays where it was."""
    here = stream.tell()
    end = stream.seek(0, io.SEEK_END)
    stream.seek(here)
    return end - here


def _feedparser_base(base_url: str) -> str:
    """The base feedparser resolves an item's links against, when no element sets ``xml:base``."""
    base = make_safe_absolute_uri("", base_url) or make_safe_absolute_uri(base_url) or ""
    return (make_safe_absolute_uri(base, base) or base) if base else _urljoin(base, base)


def _has_base(attrs: dict[str, str]) -> bool:
    """Whether the attributes set a base for feedparser: ``xml:base``, or any attribute named base."""
    # The first test is the quick one: most attributes (url, medium, width...) fail it.
    return bool(attrs) and any(name[-4:].lower() == "base" == name.rpartition(" ")[2].lower() for name in attrs)


class _NotPlain(Exception):
    """The document is not one to cut (a DOCTYPE, not RSS 2.0): stop reading it."""


@dataclass(slots=True)
class _Item:
    """What one item has shown so far, while expat is inside it."""

    start: int
    simple: bool
    link: str | None = None
    guid: str | None = None
    guid_is_link: bool = True
    dates: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    deferrable: bool = True  # what choosing reads of it is plain, if it is simple
    child: str = ""  # the child element expat is in (at any depth below it)
    text: list[str] | None = None  # the text of that child, when it is a link, guid, date or category


class _Reader:
    """expat's callbacks for one document: which items to cut, and where their bytes lie."""

    def __init__(self, span: tuple[datetime, datetime], base: str) -> None:
        self.span = span
        self.base = base
        self.depth = 0
        self.plain_channel = False
        self.item: _Item | None = None
        self.items = 0
        self.dropped: list[Dropped] = []
        self.deferred: list[Deferred] = []
        self.head = b""
        # The bytes kept so far, and those read but not yet known to be kept: ``pending`` starts
        # at the document's byte ``at``, which is the start of the item being read, if any.
        self.kept = bytearray()
        self.pending = bytearray()
        self.at = 0
        self.parser = expat.ParserCreate(namespace_separator=" ")
        self.parser.buffer_text = True
        self.parser.buffer_size = 1 << 16
        self.parser.StartElementHandler = self.start
        self.parser.EndElementHandler = self.end
        self.parser.StartDoctypeDeclHandler = self.doctype

    def read(self, stream: BinaryIO) -> None:
        """Feed expat the whole document, a piece at a time, keeping the bytes not cut."""
        while chunk := stream.read(CHUNK):
            self.pending += chunk
            self.parser.Parse(chunk, False)
        self.parser.Parse(b"", True)
        self.kept += self.pending
        self.pending.clear()

    def _keep_until(self, index: int) -> None:
        """Everything before the document's byte ``index`` is kept: move it out of ``pending``."""
        count = index - self.at
        self.kept += self.pending[:count]
        del self.pending[:count]
        self.at = index

    def doctype(self, *args: Any) -> None:
        raise _NotPlain  # entities it may declare are feedparser's to read

    # expat calls these for every element: 1.8 million times in a 100,000-item feed, so they
    # are split by where expat is (outside an item, or inside one), and text is collected only
    # inside a link, guid, date or category, by expat calling the list's own ``append``.

    def start(self, name: str, attrs: dict[str, str]) -> None:
        """An element outside any item: the root, the channel, an item starting, the rest."""
        self.depth += 1
        if self.depth == 3:
            if name == "item":
                start = self.parser.CurrentByteIndex
                self._keep_until(start)  # every earlier item is decided
                if not self.items:
                    self.head = bytes(self.kept)
                self.item = _Item(start, self.plain_channel and not attrs)
                self.parser.StartElementHandler = self.item_start
                self.parser.EndElementHandler = self.item_end
        elif self.depth == 2:
            self.plain_channel = name == "channel" and not _has_base(attrs)
        elif self.depth == 1 and (name != "rss" or _has_base(attrs)):
            raise _NotPlain

    def end(self, name: str) -> None:
        self.depth -= 1

    def item_start(self, name: str, attrs: dict[str, str]) -> None:
        """An element inside an item: whether the item stays simple, and which text to keep."""
        depth = self.depth = self.depth + 1
        item = self.item
        assert item is not None  # these handlers are set only while an item is open
        if not item.simple:
            return
        if depth > 4:  # below a child: only media:* inside media:* may nest
            item.simple = item.child.startswith(_MEDIA) and name.startswith(_MEDIA) and not (attrs and _has_base(attrs))
            item.deferrable = item.deferrable and name not in _MEDIA_TAGS
            return
        item.child = name
        if name in _CATEGORIES and not attrs:
            self._collect_text(item)
            return
        if name in _PLAIN or name.startswith(_MEDIA):
            item.simple = not (attrs and _has_base(attrs))
            item.deferrable = item.deferrable and name not in _CATEGORIES and name not in _MEDIA_TAGS
            return
        if name == "link":
            item.simple = item.link is None and not attrs
        elif name == "guid":
            item.simple = item.guid is None and set(attrs) <= {"isPermaLink"}
            item.guid_is_link = attrs.get("isPermaLink", "true") == "true"
        elif name not in _DATES:
            item.simple = False
            return
        self._collect_text(item)

    def _collect_text(self, item: _Item) -> None:
        """Have expat hand the text of the child just begun to the item, until the child ends."""
        item.text = []
        self.parser.CharacterDataHandler = item.text.append

    def item_end(self, name: str) -> None:
        """An element inside an item ends: a link, guid, date or category read, or the item itself."""
        self.depth -= 1
        item = self.item
        assert item is not None
        if self.depth == 3 and item.text is not None:  # a link, guid, date or category ends
            self.parser.CharacterDataHandler = None
            text = "".join(item.text).strip()
            item.text = None
            if item.child == "link":
                item.link = text
            elif item.child == "guid":
                item.guid = text
            elif item.child in _CATEGORIES:
                item.categories.append(text)
                item.deferrable = item.deferrable and text.isascii()
            else:
                item.dates.append(text)
        elif self.depth == 2:  # the item ends
            self.item = None
            self.parser.StartElementHandler = self.start
            self.parser.EndElementHandler = self.end
            if item.simple:
                self._cut(item)
            self.items += 1

    def _cut(self, item: _Item) -> None:
        """Cut a simple item out, dropped or deferred, if it is one to cut; else it stays."""
        if not item.link or not item.link.isascii() or (item.guid is not None and not item.guid.isascii()):
            return
        times = [item_time(text) for text in item.dates]
        outside = bool(times) and all(when is not None and not self.span[0] < when <= self.span[1] for when in times)
        published = times[0] if item.deferrable and len(times) == 1 else None
        if not outside and published is None:
            return
        # The item's bytes run from its start (``at``) to the end of "</item>".
        end = self.pending.index(b">", self.parser.CurrentByteIndex - self.at) + 1
        link, guid = _as_feedparser_reads(item.link, item.guid, item.guid_is_link, self.base)
        if outside:
            self.dropped.append(Dropped(self.items, link, guid))
        else:
            assert published is not None
            raw = bytes(self.pending[:end])
            self.deferred.append(Deferred(self.items, link, guid, published, tuple(item.categories), raw))
        del self.pending[:end]
        self.at += end


def _as_feedparser_reads(link: str, guid: str | None, guid_is_link: bool, base: str) -> tuple[str, str | None]:
    """The link and guid as feedparser's ``pop`` stores them, for ASCII text and a plain base.

    The link is resolved against the base and loses its "&amp;" escaping; a guid is resolved
    only when it is a permalink (``isPermaLink`` absent or "true"). A <link> element always wins
    over a permalink guid as the item's link, whichever comes first.
    """
    stored = _joined(base, link)
    if "&" in stored:
        stored = _ENTITY_LIKE.sub(r"&\g<1>", stored.replace("&amp;", "&"))
    if guid is None:
        return stored, None
    return stored, (_joined(base, guid) if guid_is_link and guid else guid)


def _joined(base: str, uri: str) -> str:
    """feedparser's ``_urljoin``: a plain absolute link (``urls.is_plain``) is left as it is by
    both its steps (no extra slashes to fold, nothing to resolve), so it is not parsed again."""
    return uri if is_plain(uri) else _urljoin(base, uri)
