"""Feeds in, articles out: fetch (via ``fetch``), parse with feedparser, normalise, merge.

Everything a feed says is untrusted. Titles become plain one-line text, summaries are
sanitised with nh3 to a small allowlist, links and images must end up absolute http(s) URLs,
and a feed that is broken beyond use is a ``FeedError`` naming it, never a raw exception.

State lives in ``<data_dir>/feeds/``, one JSON file per feed (plus the last body for remote
feeds), so that a 304 Not Modified can reuse what was fetched before and an item without a
date keeps the time digest first saw it, which decides the one issue it belongs to.
"""

from __future__ import annotations

import codecs
import hashlib
import html
import io
import json
import re
import xml.sax
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

import feedparser
import httpx
import nh3
from feedparser.namespaces import mediarss

from digest.config import FeedSource, Settings
from digest.errors import FeedError
from digest.feeds.fetch import fetch_feed, make_client
from digest.feeds.urls import canonical_url
from digest.files import atomic_write
from digest.models import Article, Image
from digest.text import excerpt, one_line, without_controls

__all__ = ["FeedResult", "ParsedFeed", "load_articles", "parse_feed"]


@dataclass(frozen=True, slots=True)
class FeedResult:
    """Every feed's articles merged (feed order, then item order) and the warnings met on the way.

    ``down`` holds the error of each feed that could not be fetched or parsed; the articles are
    those of the other feeds (the warnings name the missing ones too).
    """

    articles: tuple[Article, ...]
    warnings: tuple[str, ...]
    down: tuple[FeedError, ...] = ()


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """One feed body, parsed: its articles, its warnings and the updated first-seen map."""

    articles: tuple[Article, ...]
    warnings: tuple[str, ...]
    first_seen: dict[str, datetime]


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


# --- loading ---------------------------------------------------------------------------------


def load_articles(settings: Settings, now: datetime, *, client: httpx.Client | None = None) -> FeedResult:
    """Read every configured feed, in order, and merge their articles without duplicates.

    A duplicate is an item whose id or canonical URL (tracking parameters ignored) was already
    seen, in this feed or an earlier one; the first wins, so feed order is priority order.
    ``client`` is for tests and callers that share one; otherwise one is made for the run.

    A feed that cannot be fetched or parsed is down: it is left out and listed in ``down``, so
    one dead feed does not sink the issue (whether the rest make one is the caller's call). A
    FeedError is raised when every feed is down, or at the first one down with ``[fetch]
    require_all``; failing to write digest's own feed state is never a feed being down.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("load_articles needs an aware datetime for now")
    store = _StateStore(settings.data_dir / "feeds")
    owned: httpx.Client | None = None
    if client is None and any(src.is_remote for src in settings.feeds):
        client = owned = make_client(settings.fetch)
    articles: list[Article] = []
    warnings: list[str] = []
    down: list[FeedError] = []
    ids: set[str] = set()
    urls: set[str] = set()
    try:
        for src in settings.feeds:
            state, state_warnings = store.load(src.url, src.label)
            warnings.extend(state_warnings)
            try:
                parsed, state, body = _read_one(src, settings, now, client, store, state)
            except FeedError as exc:
                if settings.fetch.require_all and len(settings.feeds) > 1:
                    raise _required(exc) from exc
                down.append(exc)
                warnings.append(f"feed down, left out of this issue: {exc}")
                continue
            store.save(replace(state, first_seen=parsed.first_seen), body)
            warnings.extend(parsed.warnings)
            for article in parsed.articles:
                if article.id in ids or article.canonical_url in urls:
                    continue
                ids.add(article.id)
                urls.add(article.canonical_url)
                articles.append(article)
    finally:
        if owned is not None:
            owned.close()
    if len(down) == 1 == len(settings.feeds):
        raise down[0]  # the one feed's own error, as it was met
    if len(down) == len(settings.feeds):
        raise _all_down(down) from down[0]
    return FeedResult(articles=tuple(articles), warnings=tuple(warnings), down=tuple(down))


def _required(exc: FeedError) -> FeedError:
    """A feed down under ``[fetch] require_all``: its own error, saying why it stops the issue."""
    why = "[fetch] require_all = true builds no issue without every feed"
    return FeedError(exc.message, hint=f"{exc.hint}; {why}" if exc.hint else why)


def _all_down(down: list[FeedError]) -> FeedError:
    """The error when none of several feeds could be read: each one's reason, in one line."""
    return FeedError(
        f"no feed could be read: {'; '.join(exc.message for exc in down)}",
        hint="check the feed URLs in config.toml and that their servers are up",
    )


def _read_one(
    src: FeedSource,
    settings: Settings,
    now: datetime,
    client: httpx.Client | None,
    store: _StateStore,
    state: _FeedState,
) -> tuple[ParsedFeed, _FeedState, bytes | None]:
    """Fetch (or read) and parse one feed: its articles, its new state and the body to store.

    Every FeedError from here means the feed is down; nothing is stored for it.
    """
    if src.is_remote:
        assert client is not None  # made by load_articles whenever a feed is remote
        return _load_remote(src, settings, now, client, store, state)
    parsed = parse_feed(
        _read_local(src, settings),
        feed=src.label,
        key=src.url,
        now=now,
        first_seen=state.first_seen,
    )
    return parsed, state, None


def _load_remote(
    src: FeedSource,
    settings: Settings,
    now: datetime,
    client: httpx.Client,
    store: _StateStore,
    state: _FeedState,
) -> tuple[ParsedFeed, _FeedState, bytes | None]:
    """Fetch (conditionally, when a verified copy is stored) and parse one remote feed.

    Returns the new state and the body to store, or None when the stored copy is still current.
    Nothing is stored unless the body parsed: a broken answer must not poison the next 304.
    """
    cached = store.body(state) if state.etag or state.last_modified else None
    fetched = fetch_feed(
        client,
        src.url,
        settings.fetch,
        label=src.label,
        etag=state.etag if cached is not None else None,
        last_modified=state.last_modified if cached is not None else None,
    )
    if fetched.body is None:
        if cached is None:  # a 304 we did not ask for (a confused proxy); nothing to reuse
            raise FeedError(f'feed "{src.label}": server answered 304 Not Modified to a plain request')
        body, base, content_type = cached, state.final_url or src.url, state.content_type
    else:
        body, base, content_type = fetched.body, fetched.url, fetched.content_type
    parsed = parse_feed(
        body,
        feed=src.label,
        key=src.url,
        base_url=base,
        content_type=content_type,
        now=now,
        first_seen=state.first_seen,
    )
    digest = hashlib.sha256(body).hexdigest()
    new_state = replace(
        state,
        etag=fetched.etag if fetched.body is not None else (fetched.etag or state.etag),
        last_modified=(
            fetched.last_modified if fetched.body is not None else (fetched.last_modified or state.last_modified)
        ),
        final_url=base,
        content_type=content_type,
        body_sha256=digest,
    )
    # Write the body only when the verified copy on disk is not already exactly this one.
    return parsed, new_state, (body if fetched.body is not None and body != cached else None)


def _read_local(src: FeedSource, settings: Settings) -> bytes:
    """A local feed file's bytes; a missing or unreadable file is a FeedError with its path."""
    url = src.url
    path = Path(url2pathname(urlsplit(url).path)) if url.startswith("file://") else settings.path(url)
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise FeedError(f'feed "{src.label}": no such file {path}', hint="check the path in [[feeds]]") from exc
    except OSError as exc:
        raise FeedError(f'feed "{src.label}": cannot read {path}: {exc.strerror or exc}') from exc


# --- state -----------------------------------------------------------------------------------

STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class _FeedState:
    """What is remembered about one feed between runs (one JSON file, see ``_StateStore``)."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    final_url: str = ""
    content_type: str = ""
    body_sha256: str = ""
    first_seen: dict[str, datetime] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "url": self.url,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "final_url": self.final_url,
            "content_type": self.content_type,
            "body_sha256": self.body_sha256,
            "first_seen": {key: when.isoformat() for key, when in sorted(self.first_seen.items())},
        }

    @classmethod
    def from_json(cls, raw: Any, url: str) -> _FeedState:
        """Rebuild from JSON, raising ValueError on anything unexpected (the caller then starts afresh)."""
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        if raw.get("version") != STATE_VERSION:
            raise ValueError(f"unknown version {raw.get('version')!r}")
        if raw.get("url") != url:
            raise ValueError(f"it belongs to {raw.get('url')!r}")
        strings = {k: raw.get(k) for k in ("etag", "last_modified", "final_url", "content_type", "body_sha256")}
        for key, value in strings.items():
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{key} is not a string")
        seen = raw.get("first_seen", {})
        if not isinstance(seen, dict):
            raise ValueError("first_seen is not an object")
        first_seen = {str(key): _aware(datetime.fromisoformat(str(value))) for key, value in seen.items()}
        return cls(
            url=url,
            etag=strings["etag"],
            last_modified=strings["last_modified"],
            final_url=strings["final_url"] or "",
            content_type=strings["content_type"] or "",
            body_sha256=strings["body_sha256"] or "",
            first_seen=first_seen,
        )


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError(f"time {when.isoformat()} has no zone")
    return when


class _StateStore:
    """``<dir>/<slug>-<hash>.json`` per feed, and ``<slug>-<hash>.body`` with a remote feed's last body.

    The name hashes the configured URL (or path) so it is stable and safe on any filesystem; the
    slug only helps a person find a feed's file. Every write is a temporary file in the same
    directory renamed over the old one, so a crash leaves the old state or the new, never half.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _stem(self, url: str) -> str:
        # The URL's tail (file or path name) tells a person which feed a file belongs to.
        slug = re.sub(r"[^a-z0-9]+", "-", re.sub(r"^[a-z]+://", "", url.lower())).strip("-")[-40:].strip("-")
        return f"{slug or 'feed'}-{hashlib.sha256(url.encode('utf-8')).hexdigest()[:16]}"

    def json_path(self, url: str) -> Path:
        return self.root / f"{self._stem(url)}.json"

    def body_path(self, url: str) -> Path:
        return self.root / f"{self._stem(url)}.body"

    def load(self, url: str, label: str) -> tuple[_FeedState, tuple[str, ...]]:
        """The stored state, or a fresh one (with a warning if a file was there but unusable)."""
        path = self.json_path(url)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return _FeedState(url=url), ()
        except (OSError, UnicodeDecodeError) as exc:
            return _FeedState(url=url), (self._corrupt(label, path, str(exc)),)
        try:
            state = _FeedState.from_json(json.loads(text), url)
        except (ValueError, TypeError) as exc:
            return _FeedState(url=url), (self._corrupt(label, path, str(exc)),)
        return state, ()

    @staticmethod
    def _corrupt(label: str, path: Path, reason: str) -> str:
        return (
            f'feed "{label}": ignored unreadable state file {path} ({one_line(reason)[:120]}); '
            "starting afresh, so undated items count as new"
        )

    def body(self, state: _FeedState) -> bytes | None:
        """The stored body if it is there and matches its recorded hash; else None (fetch it whole)."""
        if not state.body_sha256:
            return None
        try:
            body = self.body_path(state.url).read_bytes()
        except OSError:
            return None
        return body if hashlib.sha256(body).hexdigest() == state.body_sha256 else None

    def save(self, state: _FeedState, body: bytes | None) -> None:
        """Write the body (if new) first, then the JSON that vouches for it by hash."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if body is not None:
                atomic_write(self.body_path(state.url), body)
            data = json.dumps(state.to_json(), indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
            path = self.json_path(state.url)
            if _read_or_none(path) != data:
                atomic_write(path, data)
        except OSError as exc:
            raise FeedError(
                f"cannot write feed state in {self.root}: {exc.strerror or exc}",
                hint="check that [store] data_dir is writable",
            ) from exc


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


# --- parsing ---------------------------------------------------------------------------------

# How long an undated item's first-seen time is kept after it left the feed: longer than any
# issue window, so an item that drops out and comes back is not "new" again.
FIRST_SEEN_KEEP = timedelta(days=90)
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_XML_DECLARED = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.I)


def parse_feed(
    body: bytes,
    *,
    feed: str,
    now: datetime,
    key: str = "",
    base_url: str = "",
    content_type: str = "",
    first_seen: Mapping[str, datetime] | None = None,
) -> ParsedFeed:
    """Parse one feed document into articles; a FeedError if nothing usable is in it.

    ``feed`` names the feed in messages; ``key`` (the configured URL or path) scopes item ids
    that are not URIs, so two feeds' item "42" stay apart. ``base_url`` is where the document
    came from, for relative links; ``content_type`` is the HTTP header, for its charset.
    ``first_seen`` maps item ids to when an undated item was first seen; the result carries the
    map with this run's new items added.
    """
    result, warnings = _feedparse(body, feed, base_url, content_type)
    _strip_controls(result)
    channel = result.get("feed") or {}
    atom = str(result.get("version", "")).startswith("atom")
    ctx = _Context(
        feed=feed,
        key=key or feed,
        base=base_url,
        site=_absolute(channel.get("link") or "", base_url, ""),
        now=now,
        atom=atom,
        feed_authors=_names(channel, atom=True) if atom else (),
    )
    seen = dict(first_seen or {})
    current: set[str] = set()
    articles: list[Article] = []
    for entry in result.entries:
        article = _article(entry, ctx, seen, current)
        if article is not None:
            articles.append(article)
    horizon = now - FIRST_SEEN_KEEP
    kept = {item: when for item, when in seen.items() if item in current or when >= horizon}
    warnings.extend(_warnings(result, feed, len(articles)))
    return ParsedFeed(articles=tuple(articles), warnings=tuple(warnings), first_seen=kept)


def _feedparse(body: bytes, feed: str, base_url: str, content_type: str) -> tuple[Any, list[str]]:
    """feedparser on bytes (so the declared encoding is honoured), with its HTML passes off.

    The body goes in as a stream: given bytes, feedparser first tries them as a *file name*.
    Its sanitizer and relative-URI rewriting are off because nh3 does both, once, on just the
    parts we keep: that takes about 40% off feedparser's time on a large feed.
    """
    declared = _declared_encoding(body)
    charset = _CHARSET.search(content_type or "")
    warnings: list[str] = []
    if declared is None and charset is not None:
        declared = charset.group(1)
    body, repaired = _repair_utf8(body, declared)
    if repaired:
        warnings.append(
            f'feed "{feed}": text that is not UTF-8 in a UTF-8 feed was read as windows-1252; '
            "check it for garbled characters"
        )
    # The document's own declaration wins over the HTTP charset (see _declared_encoding).
    headers = {"content-type": f"application/xml; charset={declared}" if declared else "application/xml"}
    if base_url:
        headers["content-location"] = base_url
    try:
        result = feedparser.parse(
            io.BytesIO(body), response_headers=headers, sanitize_html=False, resolve_relative_uris=False
        )
    except Exception as exc:  # feedparser is defensive, but a crash here must still name the feed
        raise FeedError(f'feed "{feed}": could not be parsed ({type(exc).__name__}: {exc})') from exc
    if not result.entries and (result.bozo or not result.get("version")):
        problem = _problem(result) if body.strip() else "the document is empty"
        raise FeedError(
            f'feed "{feed}": not a valid RSS or Atom feed ({problem})',
            hint="check that the URL is the feed itself, not the site's web page",
        ) from result.get("bozo_exception")
    return result, warnings


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

    The one place for it, before any field is looked at: feeds carry them as raw bytes or as
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
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("utf-8", errors="digest-cp1252").encode("utf-8"), True
    return body, False


def _problem(result: Any) -> str:
    exc = result.get("bozo_exception")
    if isinstance(exc, xml.sax.SAXParseException):
        return f"line {exc.getLineNumber()}, column {exc.getColumnNumber()}: {exc.getMessage()}"
    if exc is not None:
        return one_line(str(exc)) or type(exc).__name__
    return "no RSS or Atom elements found" if not result.get("version") else "no items"


def _warnings(result: Any, feed: str, usable: int) -> tuple[str, ...]:
    """What the reader should know about a feed that parsed, possibly with complaints.

    A malformed feed is fine to use as long as some items came through (a truncated download
    usually keeps the newest ones); if none did, it is as good as no feed: a FeedError.
    """
    where = f'feed "{feed}"'
    skipped = len(result.entries) - usable
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
    if not result.entries:
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


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _article(entry: Any, ctx: _Context, first_seen: dict[str, datetime], current: set[str]) -> Article | None:
    """One entry as an Article, or None when it has no link a reader could follow."""
    base = _entry_base(entry, ctx)
    url = _absolute(entry.get("link") or "", base, ctx.site)
    if not url:
        return None
    raw_id = one_line(entry.get("id") or "") or url
    published = _published(entry)
    if published is None:
        seen = first_seen.setdefault(raw_id, ctx.now)
        current.add(raw_id)
    else:
        seen = ctx.now
    summary_raw, summary_is_html, summary_base = _summary_source(entry, base)
    summary_html, summary_text = _summary(summary_raw, summary_is_html, summary_base)
    title = _title(entry) or excerpt(summary_text, 90) or "Untitled"
    return Article(
        id=raw_id if _SCHEME.match(raw_id) else f"{ctx.key}#{raw_id}",
        url=url,
        canonical_url=canonical_url(url),
        title=title,
        published=published,
        seen=seen,
        authors=_names(entry, atom=ctx.atom) or ctx.feed_authors,
        categories=_categories(entry),
        summary_html=summary_html,
        summary_text=summary_text,
        image=_image(entry, base, title, summary_raw, summary_base),
        feed=ctx.feed,
    )


def _entry_base(entry: Any, ctx: _Context) -> str:
    """The base URI in force for the entry (xml:base included), as feedparser tracked it."""
    for key in ("summary_detail", "title_detail"):
        detail = entry.get(key)
        if detail and detail.get("base"):
            return str(detail["base"])
    return ctx.base


def _absolute(href: str, base: str, site: str) -> str:
    """``href`` as an absolute http(s) URL, resolved against ``base`` then the site; else ""."""
    href = href.strip()
    if not href:
        return ""
    for root in (base, site):
        candidate = urljoin(root, href) if root else href
        parts = urlsplit(candidate)
        if parts.scheme in {"http", "https"} and parts.netloc:
            return candidate
    return ""


def _published(entry: Any) -> datetime | None:
    """The item's date as an aware UTC datetime (feedparser has already moved it to UTC)."""
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = dict.get(entry, key)  # plain dict.get: FeedParserDict maps updated to published, warning
        if parsed:
            try:
                return datetime(*parsed[:6]).replace(tzinfo=UTC)
            except (TypeError, ValueError):
                continue
    return None


def _title(entry: Any) -> str:
    """The title as one line of plain text: tags stripped, entities decoded."""
    raw = entry.get("title") or ""
    detail = entry.get("title_detail") or {}
    if not raw:
        return _plain(entry.get("media_title") or "", is_html=False)
    return _plain(raw, is_html=detail.get("type", "text/html") in _HTML_TYPES)


def _plain(value: str, *, is_html: bool) -> str:
    if is_html and ("<" in value or "&" in value):
        # nh3 with no allowed tags is a real HTML parser: "a < b" survives, <script> bodies go.
        value = html.unescape(nh3.clean(value, tags=set()))
    return one_line(value)


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


def _categories(entry: Any) -> tuple[str, ...]:
    """Category names, preferring an Atom label over its term; stripped and de-duplicated."""
    return _unique(one_line(tag.get("label") or tag.get("term") or "") for tag in entry.get("tags") or ())


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


# --- summary ---------------------------------------------------------------------------------

# Small on purpose: summaries become excerpts in an email. No <img> (the article's image is
# chosen separately and gets width, height and alt; remote images in text are trackers more
# often than not), no tables, no styles, no classes.
SUMMARY_TAGS = frozenset({"p", "br", "a", "em", "strong", "b", "i", "ul", "ol", "li", "blockquote"})
_SUMMARY_ATTRIBUTES = {"a": {"href"}}
# Dropped with everything inside them, not just unwrapped.
_DROP_WITH_CONTENT = {"script", "style", "iframe", "noscript", "template", "object", "svg", "math", "textarea"}
_URL_SCHEMES = {"http", "https", "mailto"}
_EMPTY_PARAGRAPH = re.compile(r"<p></p>")
_SPACES = re.compile(r"\s+")
_BLOCK_SPACE = re.compile(r" ?(</?(?:p|ul|ol|li|blockquote)>|<br>) ?")
_BARE_ANCHOR = re.compile(r'<a rel="noopener">(.*?)</a>', re.S)
_BLOCK_BREAK = re.compile(r"<(?:/p|br|/li|/blockquote|/ul|/ol)>")
_TAG = re.compile(r'<(?:[^>"]|"[^"]*")*>')
_PARAGRAPHS = re.compile(r"\n\s*\n")


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


def _summary(raw: str, is_html: bool, base: str) -> tuple[str, str]:
    """Sanitised HTML and its plain text (entities decoded, whitespace collapsed) for excerpts."""
    if not raw.strip():
        return "", ""
    if not is_html:
        paragraphs = [one_line(p) for p in _PARAGRAPHS.split(raw)]
        return "".join(f"<p>{html.escape(p, quote=False)}</p>" for p in paragraphs if p), one_line(raw)
    clean = nh3.clean(
        raw,
        tags=SUMMARY_TAGS,
        clean_content_tags=_DROP_WITH_CONTENT,
        attributes=_SUMMARY_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        link_rel="noopener",
        attribute_filter=_resolver(base),
    )
    # No <pre> is allowed, so every whitespace run can go to one space; around block tags, to none.
    clean = _BLOCK_SPACE.sub(r"\1", _SPACES.sub(" ", clean))
    clean = _BARE_ANCHOR.sub(r"\1", _EMPTY_PARAGRAPH.sub("", clean)).strip()
    text = one_line(html.unescape(_TAG.sub("", _BLOCK_BREAK.sub(" ", clean))))
    return clean, text


def _resolver(base: str) -> Callable[[str, str, str], str | None]:
    """An nh3 attribute filter making relative hrefs absolute; unresolvable ones are dropped.

    nh3 has already refused other schemes (javascript:, data:) by the time this runs, and
    joining a relative reference to an http(s) base can only give http(s).
    """

    def resolve(tag: str, attribute: str, value: str) -> str | None:
        if attribute != "href" or _SCHEME.match(value):
            return value
        joined = urljoin(base, value) if base else value
        return joined if urlsplit(joined).scheme in {"http", "https"} else None

    return resolve


# --- image -----------------------------------------------------------------------------------

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


def _image(entry: Any, base: str, title: str, summary_raw: str, summary_base: str) -> Image | None:
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
    description = _plain(entry.get("media_description") or "", is_html=True)
    if description and not credit and len(description) <= 120 and _CREDIT.search(description):
        credit, description = description, ""
    media_title = _plain(entry.get("media_title") or "", is_html=True)
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
    absolute = _absolute(html.unescape(url), base, "")
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
            yield from _usable(src, attrs, base, alt=_plain(attrs.get("alt", ""), is_html=True))


_PIXELS = re.compile(r"\s*(\d{1,6})(?:\.\d+)?\s*(?:px)?\s*")


def _pixels(value: Any) -> int | None:
    """An attribute like "800" or "800px" as an int; None for "100%", "", junk."""
    match = _PIXELS.fullmatch(str(value)) if value is not None else None
    return int(match.group(1)) if match else None


def _is_pixel(url: str, width: int | None, height: int | None) -> bool:
    if (width is not None and width <= 2) or (height is not None and height <= 2):
        return True
    return bool(_PIXEL_URL.search(url))
