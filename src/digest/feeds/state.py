"""What digest remembers about each feed between runs, in ``<data_dir>/feeds/``.

One JSON file per feed (validators, where the body came from, when each undated item was first
seen) plus the last body of a remote feed, so that a 304 Not Modified can reuse what was fetched
before and an item without a date keeps the time digest first saw it, which decides the one issue
it belongs to. An unreadable file is a warning and a fresh start, never a feed down.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from digest.errors import FeedError
from digest.files import atomic_write
from digest.text import one_line

STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class FeedState:
    """What is remembered about one feed between runs (one JSON file, see ``StateStore``)."""

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
    def from_json(cls, raw: Any, url: str) -> FeedState:
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


class StateStore:
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

    def load(self, url: str, label: str) -> tuple[FeedState, tuple[str, ...]]:
        """The stored state, or a fresh one (with a warning if a file was there but unusable)."""
        path = self.json_path(url)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return FeedState(url=url), ()
        except (OSError, UnicodeDecodeError) as exc:
            return FeedState(url=url), (self._corrupt(label, path, str(exc)),)
        try:
            state = FeedState.from_json(json.loads(text), url)
        except (ValueError, TypeError) as exc:
            return FeedState(url=url), (self._corrupt(label, path, str(exc)),)
        return state, ()

    @staticmethod
    def _corrupt(label: str, path: Path, reason: str) -> str:
        return (
            f'feed "{label}": ignored unreadable state file {path} ({one_line(reason)[:120]}); '
            "starting afresh, so undated items count as new"
        )

    def body(self, state: FeedState) -> bytes | None:
        """The stored body if it is there and matches its recorded hash; else None (fetch it whole)."""
        if not state.body_sha256:
            return None
        try:
            body = self.body_path(state.url).read_bytes()
        except OSError:
            return None
        return body if hashlib.sha256(body).hexdigest() == state.body_sha256 else None

    def save(self, state: FeedState, body: bytes | None) -> None:
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
