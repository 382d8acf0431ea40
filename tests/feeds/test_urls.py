"""Canonical and absolute URLs: the shortcut for plain links gives exactly what parsing gives."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from feedparser.urls import _urljoin

from digest.feeds import prefilter, urls

PLAIN_LOOKING = [
    "https://bench.example/1",
    "http://a",
    "https://a/",
    "https://host.example//x//",
    "https://host.example/a/./b/../c/",
    "https://host.example/%7Euser/caf%C3%A9.html",
    "https://..",
    "https://-.example/~x_y-z.",
    # Each of these leaves the shortcut for the general path.
    "HTTPS://Host.example/A",
    "https://Host.example/",
    "https://host.example:443/x",
    "https://host.example:8080/x",
    "https://user@host.example/x",
    "https://host.example/x?utm_source=feed",
    "https://host.example/x#top",
    "https://host.example/x;params",
    " https://host.example/x ",
    "https://host.example/x\n",
    "ftp://host.example/x",
    "https:///host.example/x",
    "/relative/path",
    "",
]
BASES = ["", "https://base.example/feeds/all.xml", "http://base.example/", "ftp://base.example/"]


def random_urls(count: int) -> list[str]:
    """Strings near plain links: a scheme most of the time, then pieces that may or may not spoil it."""
    rng = random.Random(13)
    schemes = ["https://", "http://", "HTTP://", "", "https:"]
    plain = ["a", "b", "0", ".", "-", "/", "//", "%", "~", "_", "..", "host.example", "/x", "/B"]
    spoilers = ["B", ":", "?", "#", "@", "&", "=", ";", " ", "\t", "é", "[", "]", "utm_x=1", ":443"]
    made = []
    for n in range(count):
        pieces = plain if n % 2 else plain + spoilers  # half of them with nothing that spoils a plain link
        made.append(rng.choice(schemes) + "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 10))))
    return made


def outcome(function: Callable[..., str], *args: str) -> str | type[Exception]:
    """The function's answer, or the kind of error it raised (urlsplit refuses some strings)."""
    try:
        return function(*args)
    except ValueError as exc:
        return type(exc)


@pytest.mark.parametrize("url", PLAIN_LOOKING + random_urls(3000))
def test_the_plain_link_shortcut_agrees_with_parsing(url: str) -> None:
    assert outcome(urls.canonical_url, url) == outcome(urls._canonical, url)
    for base in BASES:
        site = "https://site.example/"
        assert outcome(urls.absolute_url, url, base, site) == outcome(urls._absolute, url, base, site)


def test_plain_links_take_the_shortcut() -> None:
    # The random URLs above must include some the shortcut takes, or it is not being compared.
    taken = [url for url in PLAIN_LOOKING + random_urls(3000) if urls._PLAIN.fullmatch(url)]
    assert len(taken) > 200
    assert urls.canonical_url("https://bench.example/7/") == "https://bench.example/7"


@pytest.mark.parametrize("url", PLAIN_LOOKING + random_urls(3000))
def test_a_plain_link_is_stored_as_feedparser_stores_it(url: str) -> None:
    # The pre-filter keeps an item's link as feedparser's _urljoin would; plain links skip it.
    for base in BASES:
        assert outcome(prefilter._joined, base, url) == outcome(_urljoin, base, url)
