"""Every configured feed read, in order, into one list of articles without duplicates.

Local files are read, remote feeds fetched (conditionally when a verified copy is stored, see
``state``) and each body parsed (``parse``). What happens to each feed is decided here: a feed
that cannot be fetched or parsed is down and left out, and whether the rest still make an issue
is the caller's call, except that every feed down (or one, with ``[fetch] require_all``) is an
error. Failing to write digest's own state is never a feed being down.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from urllib.request import url2pathname

from digest.config import FeedSource, Settings
from digest.errors import FeedError
from digest.feeds.parse import Candidate, ParsedFeed, parse_feed
from digest.feeds.state import FeedState, StateStore
from digest.models import Article, Window

if TYPE_CHECKING:  # httpx (fetch) is loaded only when a feed is remote: local feeds build without it
    import httpx

__all__ = ["FeedResult", "load_articles", "local_feed_path"]


@dataclass(frozen=True, slots=True)
class FeedResult:
    """Every feed's articles merged (feed order, then item order) and the warnings met on the way.

    ``down`` holds the error of each feed that could not be fetched or parsed; the articles are
    those of the other feeds (the warnings name the missing ones too). ``candidates`` are the
    articles not made yet: an issue makes only those it shows (``Candidate.article``).
    """

    candidates: tuple[Candidate, ...]
    warnings: tuple[str, ...]
    down: tuple[FeedError, ...] = ()

    @property
    def articles(self) -> tuple[Article, ...]:
        """Every candidate made into its article."""
        return tuple(Candidate.made(self.candidates))


def load_articles(
    settings: Settings, now: datetime, *, window: Window | None = None, client: httpx.Client | None = None
) -> FeedResult:
    """Read every configured feed, in order, and merge their articles without duplicates.

    A duplicate is an item whose id or canonical URL (tracking parameters ignored) was already
    seen, in this feed or an earlier one; the first wins, so feed order is priority order.
    With a ``window``, only the articles in it are returned, as candidates made into articles
    when asked; an item outside it still counts as seen first, so which article wins is the
    same either way.
    ``client`` is for tests and callers that share one; otherwise one is made for the run.

    A feed that cannot be fetched or parsed is down: it is left out and listed in ``down``, so
    one dead feed does not sink the issue (whether the rest make one is the caller's call). A
    FeedError is raised when every feed is down, or at the first one down with ``[fetch]
    require_all``; failing to write digest's own feed state is never a feed being down.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("load_articles needs an aware datetime for now")
    store = StateStore(settings.data_dir / "feeds")
    owned: httpx.Client | None = None
    if client is None and any(src.is_remote for src in settings.feeds):
        from digest.feeds.fetch import make_client

        client = owned = make_client(settings.fetch)
    candidates: list[Candidate] = []
    warnings: list[str] = []
    down: list[FeedError] = []
    ids: set[str] = set()
    urls: set[str] = set()
    try:
        for src in settings.feeds:
            state, state_warnings = store.load(src.url, src.label)
            warnings.extend(state_warnings)
            try:
                parsed, state, body = _read_one(src, settings, now, window, client, store, state)
            except FeedError as exc:
                if settings.fetch.require_all and len(settings.feeds) > 1:
                    raise _required(exc) from exc
                down.append(exc)
                warnings.append(f"feed down, left out of this issue: {exc}")
                continue
            store.save(replace(state, first_seen=parsed.first_seen), body)
            warnings.extend(parsed.warnings)
            for entry in parsed.entries:
                if entry.id in ids or entry.canonical_url in urls:
                    continue
                ids.add(entry.id)
                urls.add(entry.canonical_url)
                if entry.candidate is not None:
                    candidates.append(entry.candidate)
    finally:
        if owned is not None:
            owned.close()
    if len(down) == 1 == len(settings.feeds):
        raise down[0]  # the one feed's own error, as it was met
    if len(down) == len(settings.feeds):
        raise _all_down(down) from down[0]
    return FeedResult(candidates=tuple(candidates), warnings=tuple(warnings), down=tuple(down))


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
    window: Window | None,
    client: httpx.Client | None,
    store: StateStore,
    state: FeedState,
) -> tuple[ParsedFeed, FeedState, bytes | None]:
    """Fetch (or read) and parse one feed: its articles, its new state and the body to store.

    Every FeedError from here means the feed is down; nothing is stored for it.
    """
    if src.is_remote:
        assert client is not None  # made by load_articles whenever a feed is remote
        return _load_remote(src, settings, now, window, client, store, state)
    path = local_feed_path(settings, src.url)
    try:
        with path.open("rb") as file:  # read a piece at a time by the pre-filter: never held whole
            parsed = parse_feed(file, feed=src.label, key=src.url, now=now, first_seen=state.first_seen, window=window)
    except FeedError:  # the feed's own fault, as parse_feed names it (a FeedError is an OSError too)
        raise
    except FileNotFoundError as exc:
        raise FeedError(f'feed "{src.label}": no such file {path}', hint="check the path in [[feeds]]") from exc
    except OSError as exc:
        raise FeedError(f'feed "{src.label}": cannot read {path}: {exc.strerror or exc}') from exc
    return parsed, state, None


def _load_remote(
    src: FeedSource,
    settings: Settings,
    now: datetime,
    window: Window | None,
    client: httpx.Client,
    store: StateStore,
    state: FeedState,
) -> tuple[ParsedFeed, FeedState, bytes | None]:
    """Fetch (conditionally, when a verified copy is stored) and parse one remote feed.

    Returns the new state and the body to store, or None when the stored copy is still current.
    Nothing is stored unless the body parsed: a broken answer must not poison the next 304.
    """
    from digest.feeds.fetch import fetch_feed

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
        window=window,
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


def local_feed_path(settings: Settings, url: str) -> Path:
    """Where a local feed lives: a ``file://`` URL, or a path relative to the config file.

    The preview watches this very file, so it asks here rather than working it out again.
    """
    return Path(url2pathname(urlsplit(url).path)) if url.startswith("file://") else settings.path(url)
