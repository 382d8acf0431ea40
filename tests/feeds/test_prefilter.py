"""The window first: items taken out before feedparser must change nothing a reader could see.

Each test reads the same document twice, with the pre-filter and with it declined (the path
every feed took before it), and compares everything the parse gives: the articles with all
their fields, the ids and URLs that decide duplicates, the warnings and the first-seen map;
and, where a whole issue is at stake, the Issue built from them. Each also checks that the
pre-filter did take items out, dropped or deferred (or, for documents it must leave alone, that
it declined), so no comparison passes only because nothing was filtered.
"""

from __future__ import annotations

import gc
import io
import logging
import random
import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from digest.config import load
from digest.errors import FeedError
from digest.feeds import parse as parse_module
from digest.feeds import prefilter
from digest.feeds.load import load_articles
from digest.feeds.parse import ParsedFeed, parse_feed
from digest.issue import build as pipeline
from digest.issue import rank
from digest.models import Window
from factories import FEED_FIXTURES, ROOT

NOW = datetime(2025, 11, 11, 12, 0, tzinfo=UTC)
WEEK = Window(NOW - timedelta(days=7), NOW)
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
CATEGORIES = ("Asia-Pacific", "Military Industrial Complex", "Elsewhere")
SAMPLE_NOW = datetime.fromisoformat("2026-11-27T09:00-05:00")

HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
    'xmlns:atom="http://www.w3.org/2005/Atom"><channel><title>Mixed</title><link>https://mixed.example/</link>'
    "<description>every kind of item</description>\n"
)


class Spy:
    """Records what the pre-filter returned for each document it was asked about."""

    def __init__(self) -> None:
        self.results: list[prefilter.Filtered | None] = []

    def __call__(self, *args: Any, **kwargs: Any) -> prefilter.Filtered | None:
        result = prefilter.drop_outside(*args, **kwargs)
        self.results.append(result)
        return result

    @property
    def dropped(self) -> int:
        return sum(len(r.dropped) for r in self.results if r is not None)

    @property
    def deferred(self) -> int:
        return sum(len(r.deferred) for r in self.results if r is not None)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    """The pre-filter on every document whatever its size, watched."""
    monkeypatch.setattr(prefilter, "MIN_BYTES", 0)
    watched = Spy()
    monkeypatch.setattr(parse_module, "drop_outside", watched)
    return watched


def declined(*args: Any, **kwargs: Any) -> None:
    return None


def both(monkeypatch: pytest.MonkeyPatch, read: Callable[[], Any]) -> tuple[Any, Any]:
    """``read()`` with the pre-filter (as the ``spy`` fixture set it up), then with it declined."""
    filtered = read()
    with monkeypatch.context() as m:
        m.setattr(parse_module, "drop_outside", declined)
        whole = read()
    return filtered, whole


def parse_both(
    monkeypatch: pytest.MonkeyPatch, body: bytes, window: Window = WEEK, **kwargs: Any
) -> tuple[ParsedFeed, ParsedFeed]:
    return both(monkeypatch, lambda: parse_feed(body, feed="mixed", key="mixed.xml", now=NOW, window=window, **kwargs))


def item(
    n: int,
    when: datetime | None,
    *,
    link: str = "",
    guid: str = "",
    extra: str = "",
    date_tag: str = "pubDate",
) -> str:
    dated = (
        f"<{date_tag}>{format_datetime(when) if date_tag == 'pubDate' else when.isoformat()}</{date_tag}>"
        if when
        else ""
    )
    return (
        f"<item><title>Item {n} &amp; &#8220;quotes&#8221;</title><link>{link or f'https://mixed.example/{n}'}</link>"
        f"{guid}{dated}<dc:creator>Writer {n % 5}</dc:creator><category>{CATEGORIES[n % 3]}</category>"
        f"<description><![CDATA[<p>Story {n} with <b>markup</b> &amp; an <a href='/rel/{n}'>relative link</a></p>]]>"
        f"</description><content:encoded>&lt;p&gt;Full text {n}&lt;/p&gt;</content:encoded>"
        f'<media:content url="https://mixed.example/img/{n}.jpg" medium="image" width="800" height="450">'
        f"<media:credit>Photo {n}</media:credit><media:title>Caption {n}</media:title></media:content>{extra}</item>\n"
    )


def mixed_feed(seed: int = 3, count: int = 400) -> bytes:
    """Items over ten weeks around NOW, with every form the pre-filter must read like feedparser."""
    rng = random.Random(seed)
    items = []
    for n in range(count):
        when = NOW - timedelta(minutes=rng.randrange(-3 * 24 * 60, 60 * 24 * 60))
        kind = n % 16
        if kind == 0:
            items.append(item(n, when, guid=f'<guid isPermaLink="false">mixed-{n}</guid>'))
        elif kind == 1:
            items.append(item(n, when, guid=f"<guid>https://mixed.example/perma/{n}</guid>"))  # a permalink guid
        elif kind == 2:
            items.append(item(n, when, link=f"https://mixed.example/q?a={n}&amp;b=2&amp;utm_source=x"))
        elif kind == 3:
            items.append(item(n, when, date_tag="dc:date"))
        elif kind == 4:
            items.append(item(n, None))  # undated: first seen now, so in the window
        elif kind == 5:
            items.append(item(n, when, link=f"/relative/{n}", guid=f'<guid isPermaLink="true">/p/{n}</guid>'))
        elif kind == 6:  # a duplicate of an earlier item, by canonical URL
            items.append(item(n, when, link=f"https://MIXED.example/{n - 6}/?utm_medium=feed"))
        elif kind == 7:
            items.append(item(n, when, extra=f'<atom:link href="https://mixed.example/atom/{n}" rel="alternate"/>'))
        elif kind == 8:
            items.append(item(n, when, link=f"https://mixed.example/caf\u00e9/{n}"))  # not ASCII: left whole
        elif kind == 9:
            items.append(item(n, when, guid=f"<guid>mixed-{n - 9}</guid>"))  # an id used before
        elif kind == 10:
            items.append(item(n, when, guid='<guid isPermaLink="false"></guid>'))
        elif kind == 11:
            items.append(item(n, when, link=f"  https://mixed.example/spaced/{n}  "))
        elif kind == 12:  # feedparser folds the extra slashes
            items.append(item(n, when, link=f"https:///mixed.example/slashes/{n}"))
        elif kind == 13:  # feedparser takes an href attribute over the text: left whole
            items.append(item(n, when).replace("<link>", f'<link href="https://mixed.example/href/{n}">'))
        elif kind == 14:  # a later date, nested, is the one feedparser keeps: left whole
            recent = f"<media:group><dc:date>{(NOW - timedelta(hours=n % 48)).isoformat()}</dc:date></media:group>"
            items.append(item(n, when, date_tag="dc:date", extra=recent))
        else:  # feedparser takes rdf:about as the id: left whole
            about = f'<item xmlns:rdf="{RDF}" rdf:about="https://mixed.example/about/{n}">'
            items.append(item(n, when).replace("<item>", about))
    return (HEAD + "".join(items) + "</channel></rss>").encode()


def plain_feed(seed: int, count: int) -> bytes:
    """Items of the plainest form over ten weeks before NOW, each dated (none first seen now)."""
    rng = random.Random(seed)
    items = [item(n, NOW - timedelta(minutes=rng.randrange(70 * 24 * 60))) for n in range(count)]
    return (HEAD + "".join(items) + "</channel></rss>").encode()


def test_a_mixed_feed_gives_the_same_items_and_issue_with_and_without_the_prefilter(
    spy: Spy, monkeypatch: pytest.MonkeyPatch, feed_settings: Any
) -> None:
    body = mixed_feed()
    filtered, whole = parse_both(monkeypatch, body)
    assert filtered == whole
    assert spy.dropped > 200  # most of ten weeks is outside one week
    assert spy.deferred > 20  # and most of the week's items are plain
    assert len(filtered.articles) > 20
    settings = feed_settings("mixed.xml")
    assert rank.build_issue(filtered.articles, settings, NOW) == rank.build_issue(whole.articles, settings, NOW)


@pytest.mark.parametrize("seed", [1, 2, 5, 8])
@pytest.mark.parametrize("days", [1, 7, 21])
def test_any_window_and_any_mix_give_the_same_items(spy: Spy, monkeypatch: pytest.MonkeyPatch, seed, days) -> None:
    window = Window(NOW - timedelta(days=days), NOW)
    filtered, whole = parse_both(monkeypatch, mixed_feed(seed, 200), window=window)
    assert filtered == whole
    assert spy.dropped > 0 and spy.deferred > 0


def test_items_on_the_windows_edges_are_read_as_without_the_prefilter(
    spy: Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Around both ends of the window, to the second and in other zones: the margin keeps them
    # all for feedparser, and the result is the same either way.
    edges = [WEEK.start, WEEK.end]
    offsets = [timedelta(seconds=s) for s in (-7200, -3601, -3600, -1, 0, 1, 3600, 3601, 7200)]
    zones = [UTC, datetime.now().astimezone().tzinfo, datetime.fromisoformat("2025-01-01T00:00+09:30").tzinfo]
    items = [
        item(n, (edge + offset).astimezone(zone))
        for n, (edge, offset, zone) in enumerate((e, o, z) for e in edges for o in offsets for z in zones)
    ]
    body = (HEAD + "".join(items) + "</channel></rss>").encode()
    filtered, whole = parse_both(monkeypatch, body)
    assert filtered == whole
    assert [a.title for a in filtered.articles]  # some are in the window
    assert spy.dropped > 0  # and the ones two hours out were taken out
    assert spy.deferred == len(items) - spy.dropped  # every other one deferred, in the margin or not


def test_an_old_item_still_shadows_its_duplicate_in_the_window(
    spy: Spy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, feed_settings: Any
) -> None:
    old = item(1, NOW - timedelta(days=40), link="https://dup.example/story?utm_source=feed")
    new = item(2, NOW - timedelta(days=1), link="https://dup.example/story/")
    same_id = item(3, NOW - timedelta(days=1), guid='<guid isPermaLink="false">x-1</guid>')
    old_id = item(4, NOW - timedelta(days=50), guid='<guid isPermaLink="false">x-1</guid>')
    fresh = item(5, NOW - timedelta(days=2))
    path = tmp_path / "dup.xml"
    path.write_bytes((HEAD + old + old_id + new + same_id + fresh + "</channel></rss>").encode())
    settings = feed_settings(str(path))
    filtered, whole = both(monkeypatch, lambda: load_articles(settings, NOW, window=WEEK))
    assert filtered == whole
    assert spy.dropped == 2
    # Both new copies are duplicates of old items, as they were before the pre-filter.
    assert [a.title for a in filtered.articles] == ["Item 5 & \u201cquotes\u201d"]


def test_the_bundled_sample_builds_the_same_issue(spy: Spy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shutil.copy(ROOT / "config.toml", tmp_path / "config.toml")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")

    def issue() -> Any:
        shutil.rmtree(tmp_path / "data", ignore_errors=True)  # the same feed state each time
        return pipeline.build(load(tmp_path / "config.toml"), SAMPLE_NOW).issue

    filtered, whole = both(monkeypatch, issue)
    assert filtered == whole
    assert spy.dropped > 0  # the RSS sample's older items were taken out
    assert len(filtered.articles) >= 5


def test_a_relative_link_resolves_against_the_feeds_address_either_way(
    spy: Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = mixed_feed(4, 120)
    filtered, whole = parse_both(monkeypatch, body, base_url="https://mixed.example/feeds/all.xml")
    assert filtered == whole
    assert spy.dropped > 0
    assert any(e.canonical_url == "https://mixed.example/relative/5" for e in filtered.entries)


@pytest.mark.parametrize(
    "name", ["atom.xml", "rss1.rdf", "cdata_entities.xml", "truncated.xml", "latin1.xml", "cp1252.xml", "utf16le.xml"]
)
def test_documents_it_cannot_plainly_read_are_left_to_feedparser(
    spy: Spy, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # Atom, RSS 1.0, a feed with all items in the window, a truncated one, other encodings.
    body = (FEED_FIXTURES / name).read_bytes()
    filtered, whole = parse_both(monkeypatch, body, window=Window(NOW - timedelta(days=2), NOW))
    assert filtered == whole
    assert spy.dropped == 0


def test_a_malformed_feed_is_left_whole_with_its_warning(spy: Spy, monkeypatch: pytest.MonkeyPatch) -> None:
    old = item(1, NOW - timedelta(days=40))
    body = (HEAD + old + item(2, NOW) + "<item><title>Broken &nbsp; entity</title></item></channel></rss>").encode()
    filtered, whole = parse_both(monkeypatch, body)
    assert filtered == whole
    assert spy.results == [None]
    assert filtered.warnings and "malformed feed" in filtered.warnings[0]


def test_html_entities_declared_by_a_doctype_are_left_to_feedparser(spy: Spy, monkeypatch: pytest.MonkeyPatch) -> None:
    doctype = '<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" "http://my.netscape.com/publish/formats/rss-0.91.dtd">'
    items = item(1, NOW - timedelta(days=40)) + item(2, NOW - timedelta(days=1)).replace("Item 2", "Item&eacute; 2")
    body = HEAD.replace("?>\n", f"?>\n{doctype}\n").encode() + (items + "</channel></rss>").encode()
    filtered, whole = parse_both(monkeypatch, body)
    assert filtered == whole
    assert spy.dropped == 0


def test_an_undated_item_is_kept_and_remembered_as_before(spy: Spy, monkeypatch: pytest.MonkeyPatch) -> None:
    body = (HEAD + item(1, NOW - timedelta(days=40)) + item(2, None) + "</channel></rss>").encode()
    filtered, whole = parse_both(monkeypatch, body)
    assert filtered == whole
    assert spy.dropped == 1
    assert [a.title for a in filtered.articles] == ["Item 2 & \u201cquotes\u201d"]
    assert list(filtered.first_seen.values()) == [NOW]


def test_a_long_feed_through_load_articles_matches_across_feeds(
    spy: Spy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, feed_settings: Any
) -> None:
    # Two feeds sharing stories: the first copy wins, whether or not it is in the window.
    first, second = tmp_path / "first.xml", tmp_path / "second.xml"
    first.write_bytes(mixed_feed(11, 240))
    second.write_bytes(mixed_feed(12, 240).replace(b"<title>Mixed</title>", b"<title>Second</title>"))
    settings = feed_settings(str(first), str(second))

    def articles() -> Any:
        shutil.rmtree(settings.data_dir, ignore_errors=True)
        return load_articles(settings, NOW, window=WEEK)

    filtered, whole = both(monkeypatch, articles)
    assert filtered == whole
    assert spy.dropped > 200


@pytest.mark.parametrize("fault", ["a count that does not add up", "a remainder feedparser finds malformed"])
def test_a_remainder_feedparser_reads_otherwise_falls_back_to_the_whole_document(
    monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    # The safety net: if feedparser does not read the kept part cleanly and item for item, the
    # pre-filter's work is thrown away and the document is parsed whole, as before it.
    monkeypatch.setattr(prefilter, "MIN_BYTES", 0)
    body = mixed_feed(6, 150)

    def faulty(*args: Any, **kwargs: Any) -> prefilter.Filtered | None:
        real = prefilter.drop_outside(*args, **kwargs)
        assert real is not None and real.dropped
        if fault.startswith("a count"):
            return replace(real, items=real.items + 1)
        return replace(real, body=real.body.replace(b"</channel>", b""))

    monkeypatch.setattr(parse_module, "drop_outside", faulty)
    faulted = parse_feed(body, feed="mixed", key="mixed.xml", now=NOW, window=WEEK)
    monkeypatch.setattr(parse_module, "drop_outside", declined)
    whole = parse_feed(body, feed="mixed", key="mixed.xml", now=NOW, window=WEEK)
    assert faulted == whole
    assert faulted.warnings == ()  # the complaint about the cut document is not the feed's


@pytest.mark.parametrize("chunk", [1, 7, 1000, 1 << 20])
def test_a_document_read_in_pieces_is_cut_exactly_as_read_whole(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    # Pieces of one byte upwards: tags, multi-byte characters and "</item>" split across them.
    monkeypatch.setattr(prefilter, "MIN_BYTES", 0)
    body = mixed_feed(9, 120).replace(b"Story", "Stor\u00ff \u20ac\U0001f600".encode())
    whole = prefilter.drop_outside(body, WEEK, "")
    monkeypatch.setattr(prefilter, "CHUNK", chunk)
    pieces = prefilter.drop_outside(io.BytesIO(body), WEEK, "")
    assert whole is not None and whole.dropped
    assert pieces == whole
    assert b"".join(body.split(b"</item>")[-1:]) in pieces.body  # what follows the last item is kept


def test_a_local_feed_is_cut_as_it_is_read_from_its_file(
    spy: Spy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, feed_settings: Any
) -> None:
    monkeypatch.setattr(prefilter, "CHUNK", 4096)
    path = tmp_path / "long.xml"
    path.write_bytes(mixed_feed(13, 300))
    given: list[type] = []
    real = parse_module.drop_outside
    monkeypatch.setattr(parse_module, "drop_outside", lambda body, *a: given.append(type(body)) or real(body, *a))
    settings = feed_settings(str(path))
    filtered, whole = both(monkeypatch, lambda: load_articles(settings, NOW, window=WEEK))
    assert filtered == whole
    assert given == [io.BufferedReader]  # the open file, not its bytes read whole
    assert len(filtered.articles) > 20


def test_a_local_feed_with_stray_bytes_is_repaired_then_cut(
    spy: Spy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, feed_settings: Any
) -> None:
    # expat refuses the windows-1252 quotes as it reads the file; the whole document is then
    # repaired and cut as bytes, with the warning it always had.
    path = tmp_path / "cp1252-in-utf8.xml"
    path.write_bytes(mixed_feed(14, 200).replace(b"Story", b"\x93Story\x94"))
    settings = feed_settings(str(path))
    filtered, whole = both(monkeypatch, lambda: load_articles(settings, NOW, window=WEEK))
    assert filtered == whole
    assert spy.results[0] is None and spy.dropped > 0  # the file was refused, the repaired bytes cut
    assert any("read as windows-1252" in warning for warning in filtered.warnings)


@pytest.mark.parametrize("edited", [False, True])
def test_an_issue_makes_only_the_articles_it_shows_and_is_the_same_issue(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, feed_settings: Any, edited: bool
) -> None:
    path = tmp_path / "long.xml"
    path.write_bytes(mixed_feed(15, 600))
    settings = feed_settings(str(path))
    feeds = load_articles(settings, NOW, window=rank.issue_window(NOW, settings.issue.window_days))
    by_time = sorted(feeds.candidates, key=lambda c: c.when)
    # Editors pin the oldest item of the week (never shown otherwise) and exclude the newest.
    edits = {"pins": [by_time[0].canonical_url], "exclude": [by_time[-1].canonical_url]} if edited else {}
    made: list[str] = []
    real = parse_module._article
    monkeypatch.setattr(parse_module, "_article", lambda candidate: made.append(candidate.id) or real(candidate))
    chosen = rank.build_issue(feeds.candidates, settings, NOW, make=parse_module.Candidate.made, **edits)
    assert sorted(made) == sorted(a.id for a in chosen.articles)  # each shown article made once, no other
    assert len(feeds.candidates) > 2 * len(made)
    if edited:
        assert chosen.ranked[0].canonical_url == by_time[0].canonical_url
        assert by_time[-1].id not in made
    assert chosen == rank.build_issue(feeds.articles, settings, NOW, **edits)  # every article made first


def test_feedparser_reads_only_the_deferred_items_an_issue_shows_and_in_one_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, feed_settings: Any
) -> None:
    path = tmp_path / "long.xml"
    path.write_bytes(plain_feed(17, 600))  # every one of the week's items deferred
    settings = feed_settings(str(path))
    runs: list[int] = []
    real = parse_module._run_feedparser
    monkeypatch.setattr(parse_module, "_run_feedparser", lambda *a: runs.append(len((r := real(*a)).entries)) or r)
    feeds = load_articles(settings, NOW, window=rank.issue_window(NOW, settings.issue.window_days))
    deferred = [c for c in feeds.candidates if c._source is not None]
    assert len(runs) == 1 and len(deferred) > 20  # the week's plain items were not read by feedparser
    chosen = rank.build_issue(feeds.candidates, settings, NOW, make=parse_module.Candidate.made)
    assert len(deferred) == len(feeds.candidates)
    assert runs[1:] == [len(chosen.articles)]  # one more run, of exactly those shown
    assert 0 < runs[1] < len(deferred) / 2
    monkeypatch.setattr(parse_module, "drop_outside", declined)
    assert chosen == rank.build_issue(load_articles(settings, NOW, window=WEEK).articles, settings, NOW)


@pytest.mark.parametrize(
    ("extra", "deferred"),
    [
        ("<dc:subject>Asia-Pacific</dc:subject>", True),
        ("<category>  Spaced &amp; escaped  </category><category></category><category>asia-pacific</category>", True),
        ("<category><![CDATA[Military Industrial Complex]]></category>", True),
        ('<category domain="https://mixed.example/c">Asia-Pacific</category>', False),
        ("<category>\u00c9conomie</category>", False),
        ("<category>Caf\u00c3\u00a9</category>", False),  # UTF-8 read as Latin-1: feedparser may mend it
        ('<media:category scheme="urn:x">Asia-Pacific</media:category>', False),
        ("<media:group><media:keywords>Asia-Pacific, Elsewhere</media:keywords></media:group>", False),
        ("<pubDate>Mon, 10 Nov 2025 09:00:00 GMT</pubDate>", False),  # two dates: feedparser keeps the last
        ("<category><b>Asia-Pacific</b></category>", False),
    ],
)
def test_only_items_whose_choosing_is_plain_to_read_are_deferred(
    spy: Spy, monkeypatch: pytest.MonkeyPatch, extra: str, deferred: bool
) -> None:
    old = "".join(item(n, NOW - timedelta(days=30 + n)) for n in range(3))
    body = (HEAD + old + item(7, NOW - timedelta(days=2), extra=extra) + "</channel></rss>").encode()
    filtered, whole = parse_both(monkeypatch, body)
    assert filtered == whole
    assert spy.dropped == 3
    assert spy.deferred == int(deferred)
    assert [e.candidate.categories for e in filtered.entries if e.candidate] == [
        e.candidate.categories for e in whole.entries if e.candidate
    ]


def test_a_deferred_item_feedparser_reads_otherwise_is_a_misread(spy: Spy, monkeypatch: pytest.MonkeyPatch) -> None:
    # The safety net for deferring: what choosing read must be what feedparser reads.
    real = prefilter.drop_outside

    def misread(*args: Any, **kwargs: Any) -> prefilter.Filtered | None:
        cut = real(*args, **kwargs)
        assert cut is not None and cut.deferred
        first = replace(cut.deferred[0], categories=("Elsewhere", "Invented"))
        return replace(cut, deferred=(first, *cut.deferred[1:]))

    monkeypatch.setattr(parse_module, "drop_outside", misread)
    parsed = parse_feed(mixed_feed(18, 200), feed="mixed", key="mixed.xml", now=NOW, window=WEEK)
    with pytest.raises(parse_module.MisreadError, match='feed "mixed": feedparser read a deferred item otherwise'):
        list(parsed.articles)


def test_a_misread_issue_is_chosen_again_from_the_whole_feeds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, feed_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "long.xml"
    path.write_bytes(plain_feed(19, 600))
    settings = feed_settings(str(path))
    monkeypatch.setattr(parse_module, "drop_outside", declined)
    whole = pipeline.build(settings, NOW)
    monkeypatch.undo()
    # Every deferred item read as in one section, where feedparser reads most in others.
    real = prefilter.drop_outside

    def misread(*args: Any, **kwargs: Any) -> prefilter.Filtered | None:
        cut = real(*args, **kwargs)
        assert cut is not None and cut.deferred
        return replace(cut, deferred=tuple(replace(d, categories=("Asia-Pacific",)) for d in cut.deferred))

    monkeypatch.setattr(parse_module, "drop_outside", misread)
    with caplog.at_level(logging.WARNING, logger="digest.build"):
        again = pipeline.build(settings, NOW)
    assert again.issue == whole.issue
    assert again.rendered.html == whole.rendered.html
    assert [r.getMessage() for r in caplog.records] == [
        f'feed "{path}": feedparser read a deferred item otherwise than the pre-filter; reading the feeds again in full'
    ]


@pytest.mark.parametrize("enabled", [True, False])
def test_the_cycle_collector_is_left_as_it_was_after_a_parse(spy: Spy, enabled: bool) -> None:
    # Held off while a feed is parsed (it would walk the growing heap again and again), never
    # left off for the rest of the process, nor turned on when it was off; a failed parse too.
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        assert parse_feed(mixed_feed(16, 100), feed="f", now=NOW, window=WEEK).articles
        assert gc.isenabled() is enabled
        with pytest.raises(FeedError):
            parse_feed(b"<html>not a feed", feed="f", now=NOW, window=WEEK)
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_overlapping_parses_turn_the_collector_back_on_only_at_the_last_end() -> None:
    pause = parse_module._CollectorPause()
    assert gc.isenabled()
    with pause.paused():
        with pause.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the first is still parsing
    assert gc.isenabled()


def _dates() -> list[str]:
    """Item dates as feeds write them: thousands in the plain RFC 822 form (any day, time,
    offset and weekday name, right or wrong), and its neighbours that are no real time or
    not quite that form."""
    rng = random.Random(822)
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    texts = []
    for _ in range(3000):
        when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(0, 3_000_000_000))
        offset = f"{rng.choice('+-')}{rng.randrange(15):02}{rng.choice([0, 30, 45]):02}"
        zone = rng.choice(["+0000", "-0000", "GMT", "UTC", offset])
        day = f"{when.day:02}" if rng.random() < 0.7 else str(when.day)
        texts.append(f"{rng.choice(days)}, {day} {when:%b %Y %H:%M:%S} {zone}")
    texts += [
        "Wed, 02 Dec 2026 10:00:00 +0000",
        format_datetime(datetime(2026, 12, 2, 10, tzinfo=UTC)),
        format_datetime(datetime(2026, 12, 2, 10, tzinfo=UTC), usegmt=True),
        "Sat, 30 Feb 2026 10:00:00 +0000",  # no such day
        "Thu, 29 Feb 2024 23:59:59 -1400",
        "Fri, 01 Jan 2027 24:00:00 +0000",
        "Fri, 01 Jan 2027 23:59:60 +0000",
        "Fri, 31 Dec 9999 23:30:00 -0100",  # past the last year there is
        "Mon, 01 Jan 0001 00:30:00 +0100",  # before the first
        "Mon, 01 Jan 0000 00:00:00 +0000",
        "Wed, 02 Dec 2026 10:00:00 EST",  # a zone name: feedparser's own table
        "wed, 02 dec 2026 10:00:00 +0000",
        "Wed, 02 Dec 26 10:00:00 +0000",  # two-digit year
        "Wed,  02 Dec 2026 10:00:00 +0000",
        "Wed, 02 Dec 2026 10:00 +0000",
        "02 Dec 2026 10:00:00 +0000",
        "2026-12-02T10:00:00Z",
        "Wed, 02 Dec 2026 10:00:00 +05:30",
        "Wed, 02 Dec 2026",
        "Mié, 02 Dic 2026 10:00:00 +0000",
        "",
    ]
    return texts


def test_an_items_date_is_read_as_feedparser_reads_it() -> None:
    """The pre-filter reads the plain RFC 822 form itself; every date it reads must be the
    instant feedparser's own reader gives (None where that gives nothing)."""
    from feedparser.datetimes import _parse_date

    dates = _dates()
    for text in dates:
        expected = prefilter.parsed_time(_parse_date(text)) if text.isascii() and text else None
        assert prefilter.item_time(text) == expected, text
    direct = sum(1 for text in dates if prefilter._RFC822.fullmatch(text))
    assert direct >= 3000  # the generated ones all took the direct path; the rest were compared too
