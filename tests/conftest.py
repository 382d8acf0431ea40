"""Shared pytest fixtures. Each block belongs to one area; keep them apart and generic."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from digest.config import Settings, parse

# --- feeds (feed.py, fetch.py) ---------------------------------------------------------------

FEED_FIXTURES = Path(__file__).parent / "fixtures" / "feeds"

# Fast enough that a failing fetch test costs well under a second, slow enough for a loaded CI box.
FAST_FETCH = {"connect_timeout": 0.5, "read_timeout": 0.5, "retries": 2, "backoff": 0.01}


@pytest.fixture
def feed_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Build Settings for the given feeds (URLs or paths), state under ``tmp_path/state``.

    ``fetch`` overrides single ``[fetch]`` keys on top of ``FAST_FETCH``.
    """

    def make(*feeds: str, fetch: dict[str, Any] | None = None) -> Settings:
        raw = {
            "newsletter": {
                "name": "T",
                "from": "T <t@example.org>",
                "base_url": "https://example.org",
                "postal_address": "1 Main St",
            },
            "feeds": [{"url": url} for url in feeds],
            "sections": [{"name": "A", "categories": ["a"]}],
            "fetch": {**FAST_FETCH, **(fetch or {})},
            "store": {"data_dir": str(tmp_path / "state")},
        }
        return parse(raw, source=tmp_path / "config.toml")

    return make


# --- end feeds -------------------------------------------------------------------------------
