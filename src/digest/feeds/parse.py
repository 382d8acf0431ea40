"""One feed document parsed into articles: feedparser, the document's encoding, entries to ``Article``.

Everything a feed says is untrusted. Titles become plain one-line text, summaries are
sanitised (``sanitize``), links and images must end up absolute http(s) URLs, and a feed that
is broken beyond use is a ``FeedError`` naming it, never a raw exception. Fetching, feed state
and merging feeds are ``fetch``, ``state`` and ``load``; choosing the lead image is ``images``.
"""

from __future__ import annotations

import codecs
import gc
import io
import re
import threading
import xml.sax
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, BinaryIO

import feedparser
from feedparser.namespaces import mediarss

from digest.errors import FeedError
from digest.feeds.images import lead_image
from digest.feeds.prefilter import TAIL, Deferred, Dropped, Filtered, drop_outside, parsed_time
from digest.feeds.sanitize import clean_summary, plain_text
from digest.feeds.urls import absolute_url, canonical_url, has_scheme
from digest.models import Article, Window
from digest.text import excerpt, one_line, without_controls

__all__ = ["Candidate", "Entry", "MisreadError", "ParsedFeed", "parse_feed"]


class MisreadError(Exception):
    """feedparser read a deferred item otherwise than the pre-filter did, so the issue was chosen
    on a reading that is not feedparser's: the caller reads its feeds again without deferring."""


class Candidate:
    """An item that may be shown, read only as far as choosing an issue's articles needs: its id,
    canonical URL, categories and time. The rest of its article (sanitising the summary, the
    title, the authors, choosing the image) is most of the work of making one, and an issue
    shows a few dozen of a long feed's items, so ``article()`` does it on demand, once.

    A deferred item (see ``prefilter``) has not even been read by feedparser: it keeps its
    bytes and the document they came from, and feedparser reads it when its article is made
    (``made`` reads all those of one document in one run).

    Two candidates are equal when their articles are, which is what a reader could tell apart.
    """

    __slots__ = (
        "_ctx",
        "_entry",
        "_made",
        "_raw",
        "_source",
        "canonical_url",
        "categories",
        "id",
        "published",
        "seen",
        "url",
    )
    _entry: Any  # feedparser's reading of the item, until the article is made
    _made: Article | None
    _source: _Source | None  # for a deferred item, until feedparser has read it: where it came from
    _raw: bytes  # and its bytes

    def __init__(
        self,
        entry: Any,
        ctx: _Context,
        *,
        id: str,
        url: str,
        canonical_url: str,
        published: datetime | None,
        seen: datetime,
        categories: tuple[str, ...],
        deferred: tuple[_Source, bytes] | None = None,
    ) -> None:
        self._entry, self._ctx, self._made = entry, ctx, None
        self._source, self._raw = deferred or (None, b"")
        self.id, self.url, self.canonical_url = id, url, canonical_url
        self.published, self.seen, self.categories = published, seen, categories

    @property
    def when(self) -> datetime:
        """The time the item counts as published for windows and ranking (``Article.when``)."""
        return self.published or self.seen

    def article(self) -> Article:
        """The item as an article: normalised, sanitised, its image chosen; made the first time.

        Raises MisreadError when the item was deferred and feedparser reads it otherwise.
        """
        if self._made is None:
            if self._source is not None:
                _read_deferred([self])
            self._made = _article(self)
            self._entry = None  # feedparser's reading is no longer needed
        return self._made

    @staticmethod
    def made(candidates: Sequence[Candidate]) -> list[Article]:
        """Each candidate's article, the deferred items of each document read in one feedparser run."""
        _read_deferred([c for c in candidates if c._made is None and c._source is not None])
        return [candidate.article() for candidate in candidates]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Candidate) and self.article() == other.article()

    __hash__ = None  # type: ignore[assignment]  # equal by value, but made lazily: not a key

    def __repr__(self) -> str:
        return f"Candidate({self.id!r}, {self.canonical_url!r})"


@dataclass(frozen=True, slots=True)
class Entry:
    """One usable item of a feed, in document order: its id and canonical URL (what duplicates
    are told by), and the candidate article, or None when the item is outside the window asked for."""

    id: str
    canonical_url: str
    candidate: Candidate | None


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """One feed body, parsed: its usable items, its warnings and the updated first-seen map."""

    entries: tuple[Entry, ...]
    warnings: tuple[str, ...]
    first_seen: dict[str, datetime]

    @property
    def articles(self) -> tuple[Article, ...]:
        """The articles: every usable item's, or only the window's when one was given."""
        return tuple(Candidate.made([entry.candidate for entry in self.entries if entry.candidate is not None]))


# --- feedparser quirk ------------------------------------------------------------------------
#
# feedparser treats <media:description> as <description> and <media:title> as <title>: an
# item's real description is then pushed into ``content`` or replaced by the image caption,
# depending on element order. We need both, separately, so these two elements are stored under
# their own keys (``media_description``, ``media_title``) like feedparser already does for
# <media:credit>. The patch is idempotent and only changes how those two elements are stored.


def _start_media_description(self: Any, attrs_d: dict[str, str]) -> None:
    self.push("media_description", 1)


def _end_media_description(self: Any) -> None:
    self.pop("media_description")


def _start_media_title(self: Any, attrs_d: dict[str, str]) -> None:
    self.push("media_title", 1)


def _end_media_title(self: Any) -> None:
    self.pop("media_title")


def _keep_media_text_apart() -> None:
    ns: Any = mediarss.Namespace
    ns._start_media_description = _start_media_description
    ns._end_media_description = _end_media_description
    ns._start_media_title = _start_media_title
    ns._end_media_title = _end_media_title


_keep_media_text_apart()


# --- parsing ---------------------------------------------------------------------------------


class _CollectorPause:
    """Python's cycle collector held off while feeds are parsed, and set back as it was after.

    A long feed makes about a million small objects (expat's events, feedparser's dicts, the
    items' ids) and keeps many of them, so the collector, which runs every few hundred new
    objects, would walk the growing heap again and again: a sixth of a 100,000-item build's
    time. Nothing is lost by waiting: what it would find is collected once it runs again.
    Pauses may overlap (threads building previews), so the collector is set back only when the
    last one ends, and only if it was on when the first began.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = 0
        self._was_enabled = False

    @contextmanager
    def paused(self) -> Iterator[None]:
        with self._lock:
            if self._open == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._open += 1
        try:
            yield
        finally:
            with self._lock:
                self._open -= 1
                if self._open == 0 and self._was_enabled:
                    gc.enable()


_COLLECTOR = _CollectorPause()

# How long an undated item's first-seen time is kept after it left the feed: longer than any
# issue window, so an item that drops out and comes back is not "new" again.
FIRST_SEEN_KEEP = timedelta(days=90)
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_XML_DECLARED = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.I)


def parse_feed(
    body: bytes | BinaryIO,
    *,
    feed: str,
    now: datetime,
    key: str = "",
    base_url: str = "",
    content_type: str = "",
    first_seen: Mapping[str, datetime] | None = None,
    window: Window | None = None,
) -> ParsedFeed:
    """Parse one feed document into articles; a FeedError if nothing usable is in it.

    ``body`` is the document's bytes or a binary file open at its start (a local feed, which is
    then read a piece at a time and held whole only if it cannot be cut). ``feed`` names the
    feed in messages; ``key`` (the configured URL or path) scopes item ids that are not URIs, so
    two feeds' item "42" stay apart. ``base_url`` is where the document
    came from, for relative links; ``content_type`` is the HTTP header, for its charset.
    ``first_seen`` maps item ids to when an undated item was first seen; the result carries the
    map with this run's new items added.

    With a ``window``, only the items in it become candidates, made into articles (normalised,
    sanitised, their image chosen) when asked: an issue shows nothing else, and on a long feed
    that work is most of what digest adds to feedparser's own. Every usable item is still listed
    with its id and URL, so duplicates are told apart exactly as without a window.
    """
    with _COLLECTOR.paused():
        read = _feedparse(body, feed, base_url, content_type, window)
        result, cut = read.result, read.cut
        channel = _strip_controls(result.get("feed") or {})
        atom = str(result.get("version", "")).startswith("atom")
        ctx = _Context(
            feed=feed,
            key=key or feed,
            base=base_url,
            site=absolute_url(channel.get("link") or "", base_url, ""),
            now=now,
            atom=atom,
            feed_authors=_names(channel, atom=True) if atom else (),
        )
        source = _Source(cut.head, read.declared, ctx) if cut is not None and cut.deferred else None
        seen = dict(first_seen or {})
        current: set[str] = set()
        entries: list[Entry] = []
        for raw in _in_document_order(result.entries, cut):
            if isinstance(raw, (Dropped, Deferred)):
                entry = _cut_entry(raw, ctx, source, window)
            else:
                entry = _entry(raw, ctx, seen, current, window)
            if entry is not None:
                entries.append(entry)
        horizon = now - FIRST_SEEN_KEEP
        kept = {item: when for item, when in seen.items() if item in current or when >= horizon}
        items = cut.items if cut is not None else len(result.entries)
        warnings = [*read.warnings, *_warnings(result, feed, items, len(entries))]
        return ParsedFeed(entries=tuple(entries), warnings=tuple(warnings), first_seen=kept)


@dataclass(frozen=True, slots=True)
class _Read:
    """feedparser's reading of a document, the encoding it was told, what the pre-filter cut out
    of the document first (None if nothing) and the warnings met on the way."""

    result: Any
    declared: str | None
    cut: Filtered | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, eq=False)
class _Source:
    """The document deferred items were cut from, as feedparser reads them from it: its start
    (``Filtered.head``), the encoding feedparser was told, and the context articles are made in."""

    head: bytes
    declared: str | None
    ctx: _Context


def _feedparse(body: bytes | BinaryIO, feed: str, base_url: str, content_type: str, window: Window | None) -> _Read:
    """feedparser on bytes (so the declared encoding is honoured), with its HTML passes off.

    The body goes in as a stream: given bytes, feedparser first tries them as a *file name*.
    Its sanitizer and relative-URI rewriting are off because nh3 does both, once, on just the
    parts we keep: that takes about 40% off feedparser's time on a large feed.

    With a ``window``, a long UTF-8 feed first loses the items plainly outside it and the plain
    ones it may show (``prefilter``), returned apart; if feedparser then reads the rest in any
    way but cleanly and item for item, the pre-filter's reading is not trusted and the whole
    body is parsed instead.
    A file (``body`` not bytes) is cut as it is read, and read whole only when that fails.
    """
    declared = _declared_encoding(body if isinstance(body, bytes) else _head(body))
    charset = _CHARSET.search(content_type or "")
    if declared is None and charset is not None:
        declared = charset.group(1)
    cut = window is not None and _is_utf8(declared)
    if not isinstance(body, bytes):
        if window is not None and cut:
            # expat rejects every byte sequence Python's UTF-8 decoder does, so a document it
            # read to the end needs no _repair_utf8, and the file is never held whole.
            kept = _kept_part(drop_outside(body, window, base_url), feed, base_url, declared, ())
            if kept is not None:
                return kept
            body.seek(0)
        body = body.read()
        tried = cut  # the same bytes were already offered to the pre-filter
    else:
        tried = False
    warnings: list[str] = []
    body, repaired = _repair_utf8(body, declared)
    if repaired:
        warnings.append(
            f'feed "{feed}": text that is not UTF-8 in a UTF-8 feed was read as windows-1252; '
            "check it for garbled characters"
        )
    if window is not None and cut and (repaired or not tried):
        kept = _kept_part(drop_outside(body, window, base_url), feed, base_url, declared, tuple(warnings))
        if kept is not None:
            return kept
    result = _run_feedparser(body, feed, base_url, declared)
    if not result.entries and (result.bozo or not result.get("version")):
        problem = _problem(result) if body.strip() else "the document is empty"
        raise FeedError(
            f'feed "{feed}": not a valid RSS or Atom feed ({problem})',
            hint="check that the URL is the feed itself, not the site's web page",
        ) from result.get("bozo_exception")
    return _Read(result, declared, None, tuple(warnings))


def _kept_part(
    filtered: Filtered | None, feed: str, base_url: str, declared: str | None, warnings: tuple[str, ...]
) -> _Read | None:
    """feedparser on what the pre-filter kept, with the items it cut; None unless it read cleanly.

    Cleanly means no complaint and exactly the items the pre-filter did not cut: anything else
    and its reading is not trusted (the whole document is parsed instead).
    """
    if filtered is None:
        return None
    result = _run_feedparser(filtered.body, feed, base_url, declared)
    if result.bozo or len(result.entries) + len(filtered.dropped) + len(filtered.deferred) != filtered.items:
        return None
    return _Read(result, declared, filtered, warnings)


def _head(stream: BinaryIO) -> bytes:
    """The first bytes of a file, enough for its encoding declaration; the file stays at its start."""
    head = stream.read(512)
    stream.seek(0)
    return head


def _run_feedparser(body: bytes, feed: str, base_url: str, declared: str | None) -> Any:
    # The document's own declaration wins over the HTTP charset (see _declared_encoding).
    headers = {"content-type": f"application/xml; charset={declared}" if declared else "application/xml"}
    if base_url:
        headers["content-location"] = base_url
    try:
        return feedparser.parse(
            io.BytesIO(body), response_headers=headers, sanitize_html=False, resolve_relative_uris=False
        )
    except Exception as exc:  # feedparser is defensive, but a crash here must still name the feed
        raise FeedError(f'feed "{feed}": could not be parsed ({type(exc).__name__}: {exc})') from exc


def _is_utf8(declared: str | None) -> bool:
    """Whether the body is UTF-8 (declared, or by default): the only encoding the pre-filter reads."""
    try:
        return declared is None or codecs.lookup(declared).name == "utf-8"
    except LookupError:
        return False


def _in_document_order(entries: list[Any], cut: Filtered | None) -> Iterator[Any]:
    """feedparser's entries with the items the pre-filter took out put back in their places."""
    if cut is None:
        yield from entries
        return
    kept = iter(entries)
    at: dict[int, Dropped | Deferred] = {item.position: item for item in cut.dropped}
    at.update((item.position, item) for item in cut.deferred)
    for position in range(len(entries) + len(at)):
        yield at.get(position) or next(kept)


# How a document's first bytes say its encoding (XML 1.0, appendix F): a byte order mark, or the
# "<" of the first tag in a UTF-16 or UTF-32 layout. UTF-32 comes first: its little-endian BOM
# starts with UTF-16's. The exact codec is named, since "UTF-16" in a declaration does not say
# which byte order (and feedparser reads plain "utf-16" as little-endian).
_SNIFFED = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (b"<\0\0\0", "utf-32-le"),
    (b"\0\0\0<", "utf-32-be"),
    (b"<\0", "utf-16-le"),
    (b"\0<", "utf-16-be"),
)


def _strip_controls(node: Any) -> Any:
    """Take control characters (NUL, ESC, DEL...) out of every string feedparser read, in place.

    Run on the channel and on each item made into an article, before any of its other fields is
    looked at (``_entry`` cleans the few it reads first itself): feeds carry them as raw bytes or as
    character references (``&#0;``), which feedparser decodes. None belongs in an email (a NUL in a
    title reaches the Subject) or in PostgreSQL, which cannot store one. Doing it here also means
    the choices made later (an empty title, an author with no name) see the cleaned text, and
    what runs later adds none: ``html.unescape`` drops control character references itself.
    Tabs and line breaks stay; the fields that must be one line are made so later.
    """
    if isinstance(node, str):
        return without_controls(node)
    if isinstance(node, dict):
        for key, value in node.items():
            dict.__setitem__(node, key, _strip_controls(value))  # FeedParserDict's own setter remaps keys
    elif isinstance(node, list):
        node[:] = [_strip_controls(item) for item in node]
    return node


def _declared_encoding(body: bytes) -> str | None:
    """The encoding the document declares (BOM, UTF-16/32 layout or ``<?xml encoding=…?>``), if any.

    feedparser follows RFC 3023, where ``text/xml`` without a charset means US-ASCII and an HTTP
    charset beats the XML declaration. Servers get both wrong far more often than publishers get
    their declaration wrong, so the declaration is what feedparser is told (RFC 7303's order).
    A byte order mark or a UTF-16/32 layout beats both: the bytes cannot be read any other way.
    """
    for prefix, encoding in _SNIFFED:
        if body.startswith(prefix):
            return encoding
    match = _XML_DECLARED.match(body[:512])
    return match.group(1).decode("ascii") if match else None


def _cp1252_for_bad_bytes(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: bytes that are not UTF-8 are read as windows-1252, the usual culprit."""
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start : error.end]
    return bad.decode("cp1252", errors="replace"), error.end


codecs.register_error("digest-cp1252", _cp1252_for_bad_bytes)


def _repair_utf8(body: bytes, declared: str | None) -> tuple[bytes, bool]:
    """Make a UTF-8 (declared or defaulted) body that has stray non-UTF-8 bytes valid UTF-8.

    Left to feedparser, such a feed is decoded with whatever chardet guesses, if chardet
    happens to be installed, and often comes out garbled throughout. Reading only the bad bytes
    as windows-1252 keeps the good UTF-8 text and fixes the common "smart quotes" case.
    """
    try:
        if declared is not None and codecs.lookup(declared).name != "utf-8":
            return body, False
    except LookupError:  # an encoding Python does not know: feedparser will say so
        return body, False
    if _is_utf8_text(body):
        return body, False
    return body.decode("utf-8", errors="digest-cp1252").encode("utf-8"), True


def _is_utf8_text(body: bytes, chunk: int = 1 << 20) -> bool:
    """Whether ``body`` is valid UTF-8, checked a piece at a time: a long feed's text is never
    held whole beside its bytes (a 100 MB feed would otherwise need 100 MB more at once)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for start in range(0, len(body), chunk):
            decoder.decode(body[start : start + chunk])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _problem(result: Any) -> str:
    exc = result.get("bozo_exception")
    if isinstance(exc, xml.sax.SAXParseException):
        return f"line {exc.getLineNumber()}, column {exc.getColumnNumber()}: {exc.getMessage()}"
    if exc is not None:
        return one_line(str(exc)) or type(exc).__name__
    return "no RSS or Atom elements found" if not result.get("version") else "no items"


def _warnings(result: Any, feed: str, items: int, usable: int) -> tuple[str, ...]:
    """What the reader should know about a feed of ``items`` items that parsed, possibly with complaints.

    A malformed feed is fine to use as long as some items came through (a truncated download
    usually keeps the newest ones); if none did, it is as good as no feed: a FeedError.
    """
    where = f'feed "{feed}"'
    skipped = items - usable
    exc = result.get("bozo_exception") if result.bozo else None
    if exc is not None and not isinstance(exc, feedparser.CharacterEncodingOverride):
        if not usable:
            raise FeedError(
                f"{where}: not a valid RSS or Atom feed ({_problem(result)}), and no usable item in it",
                hint="check that the URL is the feed itself, not the site's web page",
            ) from exc
        return (f"{where}: malformed feed ({_problem(result)}); used the {usable} item(s) it could read",)
    warnings = []
    if exc is not None:
        warnings.append(f"{where}: encoding problem ({_problem(result)}); check its text for garbled characters")
    if not items:
        warnings.append(f"{where}: the feed has no items")
    elif skipped:
        warnings.append(f"{where}: skipped {skipped} item(s) without a usable http(s) link")
    return tuple(warnings)


@dataclass(frozen=True, slots=True)
class _Context:
    feed: str
    key: str
    base: str
    site: str
    now: datetime
    atom: bool
    feed_authors: tuple[str, ...]


def _entry(
    entry: Any, ctx: _Context, first_seen: dict[str, datetime], current: set[str], window: Window | None
) -> Entry | None:
    """One item's id, URL and (when in ``window``) candidate; None when it has no link a reader could follow.

    Only what decides whether the item is usable, which one it is and when it counts is read
    before the window is checked; control characters are taken out of those values here and
    out of everything else in the item only when it is made into an article.
    """
    base = without_controls(_entry_base(entry, ctx))
    located = _locate(entry.get("link"), entry.get("id"), base, ctx)
    if located is None:
        return None
    url, raw_id = located
    published = _published(entry)
    if published is None:
        seen = first_seen.setdefault(raw_id, ctx.now)
        current.add(raw_id)
    else:
        seen = ctx.now
    article_id = _article_id(raw_id, ctx)
    canonical = canonical_url(url)
    if window is not None and (published or seen) not in window:
        return Entry(article_id, canonical, None)
    candidate = Candidate(
        entry,
        ctx,
        id=article_id,
        url=url,
        canonical_url=canonical,
        published=published,
        seen=seen,
        categories=_categories(entry.get("tags") or []),
    )
    return Entry(article_id, canonical, candidate)


def _article(candidate: Candidate) -> Article:
    """The rest of a candidate's article, from feedparser's reading of its item."""
    entry, ctx = _strip_controls(candidate._entry), candidate._ctx
    base = without_controls(_entry_base(entry, ctx))
    summary_raw, summary_is_html, summary_base = _summary_source(entry, base)
    summary_html, summary_text = clean_summary(summary_raw, summary_is_html, summary_base)
    title = _title(entry) or excerpt(summary_text, 90) or "Untitled"
    return Article(
        id=candidate.id,
        url=candidate.url,
        canonical_url=candidate.canonical_url,
        title=title,
        published=candidate.published,
        seen=candidate.seen,
        authors=_names(entry, atom=ctx.atom) or ctx.feed_authors,
        categories=candidate.categories,
        summary_html=summary_html,
        summary_text=summary_text,
        image=lead_image(entry, base, title, summary_raw, summary_base),
        feed=ctx.feed,
    )


def _cut_entry(item: Dropped | Deferred, ctx: _Context, source: _Source | None, window: Window | None) -> Entry | None:
    """An item the pre-filter took out, read as ``_entry`` reads one from what the pre-filter read.

    A dropped item gives only its id and URL, which still count for duplicates; a deferred one
    in ``window`` is also a candidate, its article made from feedparser's reading of it later.
    Its base is the document's, as the pre-filter makes sure (no ``xml:base`` on its way).
    """
    located = _locate(item.link, item.id, ctx.base, ctx)
    if located is None:
        return None
    url, raw_id = located
    article_id, canonical = _article_id(raw_id, ctx), canonical_url(url)
    if not isinstance(item, Deferred) or (window is not None and item.published not in window):
        return Entry(article_id, canonical, None)
    assert source is not None  # parse_feed makes one whenever anything was deferred
    candidate = Candidate(
        None,
        ctx,
        id=article_id,
        url=url,
        canonical_url=canonical,
        published=item.published,
        seen=ctx.now,
        categories=_categories([{"term": term} for term in item.categories]),
        deferred=(source, item.raw),
    )
    return Entry(article_id, canonical, candidate)


def _read_deferred(candidates: Sequence[Candidate]) -> None:
    """feedparser's reading of deferred candidates, in one run for all those of one document.

    That run reads the document they were cut from with only them for items (its head, their
    bytes, the tail). What choosing read of each (its id, URL, date and categories) must be
    what feedparser reads now, or the issue was chosen on something feedparser would not have
    said: a MisreadError.
    """
    by_source: dict[_Source, list[Candidate]] = {}
    for candidate in candidates:
        assert candidate._source is not None
        by_source.setdefault(candidate._source, []).append(candidate)
    for source, group in by_source.items():
        ctx = source.ctx
        with _COLLECTOR.paused():
            result = _run_feedparser(
                b"".join([source.head, *(c._raw for c in group), TAIL]), ctx.feed, ctx.base, source.declared
            )
            read = [] if result.bozo else [_entry(raw, ctx, {}, set(), None) for raw in result.entries]
        if len(read) != len(group) or not all(_same_choice(c, e) for c, e in zip(group, read, strict=True)):
            raise MisreadError(f'feed "{ctx.feed}": feedparser read a deferred item otherwise than the pre-filter')
        for candidate, raw in zip(group, result.entries, strict=True):
            candidate._entry, candidate._source, candidate._raw = raw, None, b""


def _same_choice(candidate: Candidate, entry: Entry | None) -> bool:
    """Whether feedparser's reading of a deferred item gives what choosing read of it."""
    other = entry.candidate if entry is not None else None
    return other is not None and (
        (candidate.id, candidate.url, candidate.canonical_url, candidate.published, candidate.categories)
        == (other.id, other.url, other.canonical_url, other.published, other.categories)
    )


def _locate(link: str | None, item_id: str | None, base: str, ctx: _Context) -> tuple[str, str] | None:
    """An item's absolute URL and raw id (its guid or id, else the URL); None without a usable link."""
    url = absolute_url(without_controls(link or ""), without_controls(base), ctx.site)
    if not url:
        return None
    return url, one_line(item_id or "") or url


def _article_id(raw_id: str, ctx: _Context) -> str:
    """The item's id made unique across feeds: an id that is not a URI is scoped by the feed's key."""
    return raw_id if has_scheme(raw_id) else f"{ctx.key}#{raw_id}"


def _entry_base(entry: Any, ctx: _Context) -> str:
    """The base URI in force for the entry (xml:base included), as feedparser tracked it."""
    for key in ("summary_detail", "title_detail"):
        detail = entry.get(key)
        if detail and detail.get("base"):
            return str(detail["base"])
    return ctx.base


def _published(entry: Any) -> datetime | None:
    """The item's date as an aware UTC datetime (feedparser has already moved it to UTC)."""
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = dict.get(entry, key)  # plain dict.get: FeedParserDict maps updated to published, warning
        when = parsed_time(parsed) if parsed else None
        if when is not None:
            return when
    return None


def _title(entry: Any) -> str:
    """The title as one line of plain text: tags stripped, entities decoded."""
    raw = entry.get("title") or ""
    detail = entry.get("title_detail") or {}
    if not raw:
        return plain_text(entry.get("media_title") or "", is_html=False)
    return plain_text(raw, is_html=detail.get("type", "text/html") in _HTML_TYPES)


_EMAIL = re.compile(r"(?:mailto:)?[^\s@<>()]+@[^\s@<>()]+\.[^\s@<>()]+")
_EMAIL_THEN_NAME = re.compile(rf"{_EMAIL.pattern}\s*\((.*)\)")
_NAME_THEN_EMAIL = re.compile(rf"(.*?)\s*<{_EMAIL.pattern}>")


def _names(node: Any, *, atom: bool) -> tuple[str, ...]:
    """Author names: Atom <author> names, each <dc:creator>, or the one RSS <author> string.

    A single RSS author is read from the raw string, not feedparser's split of it, which cuts
    addresses at a four-letter domain ("desk@news.example" gives the name "ple"). Addresses are
    left out: RSS's <author> is often only an address, and an address is not a byline.
    """
    authors = node.get("authors") or ()
    raw = node.get("author") or ""
    if not atom and len(authors) <= 1 and raw:
        names = [_name_of(raw)]
    else:
        names = [one_line((author or {}).get("name") or "") for author in authors]
    return _unique(n for n in names if n and not _EMAIL.fullmatch(n))


def _name_of(value: str) -> str:
    """ "desk@x.org (Dana Desk)" and "Dana Desk <desk@x.org>" give "Dana Desk"; anything else as is."""
    value = one_line(value)
    match = _EMAIL_THEN_NAME.fullmatch(value) or _NAME_THEN_EMAIL.fullmatch(value)
    return one_line(match.group(1)) if match else value


def _categories(tags: list[Any]) -> tuple[str, ...]:
    """Category names from feedparser's ``tags``, preferring an Atom label over its term; stripped
    and de-duplicated. Control characters go first (in place), as from the whole item when its
    article is made."""
    return _unique(one_line(tag.get("label") or tag.get("term") or "") for tag in _strip_controls(tags))


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    """Non-empty values in first-seen order, case-insensitively de-duplicated."""
    seen: set[str] = set()
    out: list[str] = []
    for value in values:
        folded = value.casefold()
        if value and folded not in seen:
            seen.add(folded)
            out.append(value)
    return tuple(out)


def _summary_source(entry: Any, base: str) -> tuple[str, bool, str]:
    """The item's description (or summary), else its first content; whether it is HTML; its base."""
    detail = entry.get("summary_detail") or {}
    value = entry.get("summary") or ""
    if not value:
        for content in entry.get("content") or ():
            if content.get("value"):
                detail, value = content, content["value"]
                break
    return value, detail.get("type", "text/html") in _HTML_TYPES, detail.get("base") or base
