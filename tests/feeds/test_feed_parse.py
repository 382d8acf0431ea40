"""Parsing and normalising feeds: what a reader of the digest would see from each kind of feed.

Local fixture files go through ``load_articles`` (the public entry point); a few edge cases are
written to ``tmp_path`` inline where a fixture file would say less than the test.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from digest.errors import FeedError
from digest.feeds import parse as parse_module
from digest.feeds.load import FeedResult, load_articles
from digest.feeds.parse import parse_feed
from digest.models import Article, Window
from factories import FEED_FIXTURES

NOW = datetime(2025, 11, 11, 12, 0, tzinfo=UTC)


def load(feed_settings, *names: str, now: datetime = NOW) -> FeedResult:
    return load_articles(feed_settings(*(str(FEED_FIXTURES / n) for n in names)), now)


def by_title(result: FeedResult) -> dict[str, Article]:
    return {a.title: a for a in result.articles}


def rss(items: str, *, head: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
        'xmlns:media="http://search.yahoo.com/mrss/"><channel><title>Inline</title>'
        f"<link>https://inline.example/</link><description>d</description>{head}{items}</channel></rss>"
    ).encode()


# --- formats ---------------------------------------------------------------------------------


def test_rss2_items_in_feed_order_with_authors_and_categories(feed_settings):
    result = load(feed_settings, "rss2_media.xml")
    assert result.warnings == ()
    assert [a.title for a in result.articles][:3] == [
        "Media content with credit",
        "Description first, credit in the caption",
        "Thumbnail only",
    ]
    first = result.articles[0]
    assert first.url == "https://media.example/a/content?utm_source=rss&utm_medium=feed"
    assert first.canonical_url == "https://media.example/a/content"
    assert first.authors == ("Ann Author", "Bob Byline")  # each dc:creator is an author
    assert first.categories == ("World", "Asia-Pacific")  # stripped, de-duplicated
    assert first.published == datetime(2025, 11, 10, 8, 0, tzinfo=UTC)  # +0100 moved to UTC
    assert first.seen == NOW
    assert first.feed == str(FEED_FIXTURES / "rss2_media.xml")


def test_media_description_does_not_replace_the_item_description(feed_settings):
    # feedparser would store <media:description> as the summary; digest keeps them apart,
    # whichever comes first in the item.
    articles = by_title(load(feed_settings, "rss2_media.xml"))
    after = articles["Media content with credit"]
    assert after.summary_text == "The real description comes after the media block."
    assert after.summary_html == "<p>The <em>real</em> description comes after the media block.</p>"
    before = articles["Description first, credit in the caption"]
    assert before.summary_text == "The description comes before the media block."


def test_rss1_rdf(feed_settings):
    result = load(feed_settings, "rss1.rdf")
    first, second = result.articles
    assert first.title == "First RDF item"
    assert first.url == "https://rdf.example/one"
    assert first.published == datetime(2025, 11, 10, 9, 0, tzinfo=UTC)  # dc:date +09:00
    assert first.authors == ("Kenji Sato",)
    assert first.categories == ("Asia-Pacific",)  # dc:subject
    assert first.summary_text == "The first item, dated in Tokyo."
    assert second.published == datetime(2025, 11, 9, 12, 0, tzinfo=UTC)


def test_atom_categories_prefer_label_and_authors(feed_settings):
    articles = by_title(load(feed_settings, "atom.xml"))
    labels = articles["Labels and terms"]
    assert labels.categories == ("Asia-Pacific", "defense")  # label over term; same label once
    assert labels.authors == ("Ana Author", "Ben Writer")
    assert labels.id == "tag:atom.example,2025:1"  # a URI id is global, left as is
    # published wins over updated, and -05:00 becomes UTC
    assert labels.published == datetime(2025, 11, 10, 15, 30, tzinfo=UTC)
    assert labels.summary_html == "<p>An <strong>escaped</strong> HTML summary.</p>"


def test_atom_fallbacks_feed_author_updated_date_and_content(feed_settings):
    articles = by_title(load(feed_settings, "atom.xml"))
    updated = articles["Only updated & content"]  # type="html" title: tags out, entities decoded
    assert updated.authors == ("The Desk",)  # the feed's <author> applies to the entry
    assert updated.published == datetime(2025, 11, 9, 21, 15, tzinfo=UTC)  # <updated> +02:00
    assert updated.url == "https://atom.example/blog/2025/updated"  # relative to the feed's xml:base
    assert updated.summary_text == "Content is used when there is no summary. See about."
    assert '<a href="https://atom.example/blog/about" rel="noopener">about</a>' in updated.summary_html


def test_atom_text_constructs_stay_literal(feed_settings):
    articles = by_title(load(feed_settings, "atom.xml"))
    literal = articles["A <b> that is literal text"]  # type="text": the <b> is part of the title
    assert literal.url == "https://other.example/section/post-3"  # the entry's own xml:base
    assert literal.summary_text == "Plain text summary with <tags> that are text."
    assert literal.summary_html == "<p>Plain text summary with &lt;tags&gt; that are text.</p>"


# --- dates -----------------------------------------------------------------------------------


def test_dates_in_any_zone_become_aware_utc(feed_settings):
    articles = by_title(load(feed_settings, "dates.xml"))
    expected = {
        "New York evening": datetime(2025, 11, 11, 4, 30, tzinfo=UTC),
        "Tokyo morning": datetime(2025, 11, 10, 23, 0, tzinfo=UTC),
        "Greenwich": datetime(2025, 11, 10, 12, 0, tzinfo=UTC),
        "Eastern by name": datetime(2025, 11, 10, 12, 0, tzinfo=UTC),
        "Kolkata half hour": datetime(2025, 11, 10, 12, 0, tzinfo=UTC),
    }
    for title, when in expected.items():
        assert articles[title].published == when, title
        assert articles[title].published.utcoffset() == timedelta(0)
        assert articles[title].seen == NOW


def test_undated_items_keep_their_first_seen_time_across_runs(feed_settings):
    settings = feed_settings(str(FEED_FIXTURES / "dates.xml"))
    first = by_title(load_articles(settings, NOW))
    assert first["No date at all"].published is None
    assert first["No date at all"].seen == NOW
    assert first["A date nobody can read"].published is None

    later = NOW + timedelta(days=3)
    second = by_title(load_articles(settings, later))
    assert second["No date at all"].seen == NOW  # remembered, so it lands in one issue only
    assert second["No date at all"].when == NOW
    assert second["Greenwich"].seen == later


def test_first_seen_is_forgotten_only_for_items_long_gone(tmp_path):
    undated = "<item><title>{0}</title><link>https://inline.example/{0}</link><guid>g-{0}</guid></item>"
    both = parse_feed(rss(undated.format("kept") + undated.format("gone")), feed="f", now=NOW)
    assert set(both.first_seen) == {"g-kept", "g-gone"}
    much_later = NOW + timedelta(days=120)
    after = parse_feed(rss(undated.format("kept")), feed="f", now=much_later, first_seen=both.first_seen)
    assert after.first_seen == {"g-kept": NOW}  # still in the feed: kept however old
    assert after.articles[0].seen == NOW


# --- text ------------------------------------------------------------------------------------


def test_cdata_and_entities_become_plain_one_line_titles(feed_settings):
    tom, cafe = load(feed_settings, "cdata_entities.xml").articles
    assert tom.title == "Tom & Jerry\u2019s big day"  # entities decoded, tags and line break gone
    assert tom.url == "https://cdata.example/tom?a=1&b=2"
    assert tom.summary_text == "Escaped & encoded text \u2014 with markup."
    assert "<i>markup</i>" in tom.summary_html
    assert cafe.title == "Café news & views"
    assert cafe.summary_text == "First paragraph over two lines. Second paragraph \u201cquoted\u201d © 2025."
    assert cafe.summary_html.startswith("<p>First paragraph over two lines.</p><p>Second")


@pytest.mark.parametrize(
    ("name", "title", "text"),
    [
        ("latin1.xml", "Café, crème brûlée et Müsli", "Prix : 5 £ ; © Zeitung. Ça coûte ½ franc."),
        (
            "cp1252.xml",
            "\u201cQuoted\u201d \u2013 it\u2019s \u20ac5 \u2026 really",
            "Curly \u201cquotes\u201d, an en dash \u2013 and the euro sign \u20ac.",
        ),
        # UTF-16 with a byte order mark and <?xml encoding="UTF-16"?>, in either byte order.
        ("utf16le.xml", "Grüße aus Αθήνα — 東京の朝", "Ein Café, ein καφές, ein 珈琲 — 5 €."),
        ("utf16be.xml", "Grüße aus Αθήνα — 東京の朝", "Ein Café, ein καφές, ein 珈琲 — 5 €."),
    ],
)
def test_declared_encodings_are_honoured(feed_settings, name, title, text):
    result = load(feed_settings, name)
    assert result.warnings == ()
    (article,) = result.articles
    assert article.title == title
    assert article.summary_text == text


def test_stray_windows_1252_bytes_in_a_utf8_feed_are_repaired_with_a_warning():
    body = rss("<item><title>\u201cSmart\u201d caf\u00e9</title><link>https://inline.example/s</link></item>")
    body = body.replace("\u201c".encode(), b"\x93").replace("\u201d".encode(), b"\x94")  # cp1252 quotes
    result = parse_feed(body, feed="liar", now=NOW)
    assert result.articles[0].title == "\u201cSmart\u201d caf\u00e9"  # the real UTF-8 é is kept too
    (warning,) = result.warnings
    assert warning.startswith('feed "liar": text that is not UTF-8 in a UTF-8 feed was read as windows-1252')


def test_latin1_category(feed_settings):
    (article,) = load(feed_settings, "latin1.xml").articles
    assert article.categories == ("Économie",)


def test_untitled_item_borrows_its_summary():
    result = parse_feed(
        rss("<item><link>https://inline.example/x</link><description>Just a note.</description></item>"),
        feed="f",
        now=NOW,
    )
    assert result.articles[0].title == "Just a note."


@pytest.mark.parametrize(
    ("author", "expected"),
    [
        ("desk@news.example", ()),
        ("mailto:desk@news.example", ()),
        ("desk@news.example (Dana Desk)", ("Dana Desk",)),
        ("Dana Desk &lt;desk@news.example&gt;", ("Dana Desk",)),
        ("Dana Desk and Eli Editor", ("Dana Desk and Eli Editor",)),
    ],
)
def test_rss_author_strings_give_names_not_addresses(author, expected):
    item = f"<item><title>a</title><link>https://inline.example/a</link><author>{author}</author></item>"
    (article,) = parse_feed(rss(item), feed="f", now=NOW).articles
    assert article.authors == expected


def test_control_characters_are_taken_out_of_every_text_field(feed_settings):
    # hostile.xml carries NUL, SOH, BEL and ESC as character references and as raw bytes.
    result = load(feed_settings, "hostile.xml")
    first, refs, raw = result.articles

    assert refs.title == "Nullbyte and bell title"
    assert refs.authors == ("Null Author",)
    assert refs.categories == ("Asia-Pacific",)
    assert refs.summary_text == "Summary with a control"
    assert refs.summary_html == "Summary with a control"
    assert refs.image is not None and (refs.image.alt, refs.image.credit) == ("Alt text", "Photo: Someone")
    assert raw.title == "Raw NUL and raw escape title"
    # An encoded word is feed text like any other: it is decoded only where headers are written.
    assert first.title == "=?utf-8?q?Hello=0D=0ABcc:_evil@example.com=0D=0AX-Injected:_yes?="
    for article in result.articles:
        texts = [getattr(article, name) for name in ("title", "summary_html", "summary_text", "feed")]
        texts += [*article.authors, *article.categories]
        texts += [article.image.alt, article.image.credit] if article.image else []
        assert not [t for t in texts if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in t)], article


# --- untrusted HTML --------------------------------------------------------------------------


def test_summary_is_sanitised(feed_settings):
    (article,) = load(feed_settings, "unsafe.xml").articles
    html = article.summary_html
    for bad in (
        "<script",
        "<style",
        "<iframe",
        "<form",
        "<input",
        "<img",
        "onclick",
        "onerror",
        "onmouseover",
        "style=",
        "class=",
        "target=",
        "javascript",
        "data:",
        "frame fallback",
        "document.cookie",
        "color: red",
    ):
        assert bad not in html.lower(), bad
    assert "<p>Keep <b>this</b> text.</p>" in html
    assert '<a href="https://unsafe.example/ok" rel="noopener">good link</a>' in html
    assert '<a href="mailto:desk@unsafe.example" rel="noopener">mail</a>' in html
    assert "js link encoded js data link" in html  # the text of a refused link stays, unlinked
    assert "<ul><li>one</li><li>two</li></ul><blockquote>quoted</blockquote>" in html
    assert article.summary_text == "Keep this text. js link encoded js data link good link mail one two quoted"
    assert article.title == "Hostile summary"


# --- links -----------------------------------------------------------------------------------


def test_relative_links_resolve_against_xml_base(feed_settings):
    one, two = load(feed_settings, "relative.xml").articles
    assert one.url == "https://rel.example/blog/posts/one"
    assert '<a href="https://rel.example/about" rel="noopener">about us</a>' in one.summary_html
    assert '<a href="https://rel.example/contact" rel="noopener">contact</a>' in one.summary_html
    assert 'href="https://rel.example/blog/#top"' in one.summary_html
    assert one.image is not None and one.image.url == "https://rel.example/blog/images/one.jpg"
    assert two.url == "https://cdn.example/feeds/two.html"  # the item's own xml:base wins
    assert two.image is not None and two.image.url == "https://cdn.example/feeds/media/two.jpg"


def test_relative_link_without_any_base_uses_the_channel_link():
    result = parse_feed(rss("<item><title>t</title><link>/posts/7</link></item>"), feed="f", now=NOW)
    assert result.articles[0].url == "https://inline.example/posts/7"


def test_item_without_a_usable_link_is_skipped_with_a_warning():
    items = (
        "<item><title>no link</title><description>x</description></item>"
        "<item><title>ftp</title><link>ftp://files.example/x</link></item>"
        "<item><title>ok</title><link>https://inline.example/ok</link></item>"
    )
    result = parse_feed(rss(items, head="").replace(b"<link>https://inline.example/</link>", b""), feed="f", now=NOW)
    assert [a.title for a in result.articles] == ["ok"]
    assert result.warnings == ('feed "f": skipped 2 item(s) without a usable http(s) link',)


# --- images ----------------------------------------------------------------------------------


def test_image_from_each_source(feed_settings):
    articles = by_title(load(feed_settings, "rss2_media.xml"))
    content = articles["Media content with credit"].image
    assert content is not None
    assert (content.url, content.width, content.height) == ("https://media.example/img/content.jpg", 1200, 675)
    assert content.credit == "Jane Doe / Agency"
    assert content.alt == "A harbour at dawn with fishing boats"  # media:description

    thumb = articles["Thumbnail only"].image  # the video media:content is not an image
    assert thumb is not None
    assert (thumb.url, thumb.width, thumb.height) == ("https://media.example/img/thumb.jpg", 640, 360)
    assert thumb.alt == "Thumbnail only"  # nothing better than the title

    cover = articles["Image enclosure"].image  # the audio enclosure is skipped
    assert cover is not None and cover.url == "https://media.example/img/cover.png"
    assert (cover.width, cover.height) == (None, None)

    inline = articles["First real image in the summary"].image  # two pixels skipped first
    assert inline is not None
    assert (inline.url, inline.width, inline.height) == ("https://media.example/img/inline.jpg", 640, 360)
    assert inline.alt == "A map of the region"

    lazy = articles["Image only in the full content"].image  # data: placeholder, real data-src
    assert lazy is not None and lazy.url == "https://media.example/img/lazy.webp"
    assert lazy.alt == "Lazy loaded"


def test_tracking_pixel_is_never_the_image(feed_settings):
    articles = by_title(load(feed_settings, "rss2_media.xml"))
    pixel = articles["Only a tracking pixel"]
    assert pixel.image is None
    assert pixel.summary_html == "<p>No picture here.</p>"


def test_credit_read_from_a_caption_that_is_one(feed_settings):
    image = by_title(load(feed_settings, "rss2_media.xml"))["Description first, credit in the caption"].image
    assert image is not None
    assert image.credit == "Photo: Jane Roe/Reuters"
    assert image.alt == "Protesters outside parliament"  # media:title, since the caption was a credit


def test_media_title_is_alt_text_not_the_article_title():
    item = (
        '<item><media:content url="https://inline.example/i.jpg" medium="image">'
        "<media:title>Picture title</media:title></media:content>"
        "<title>Article title</title><link>https://inline.example/a</link></item>"
        "<item><title>Second</title><media:title>Picture two</media:title>"
        "<link>https://inline.example/b</link></item>"
    )
    first, second = parse_feed(rss(item), feed="f", now=NOW).articles
    assert first.title == "Article title"
    assert first.image is not None and first.image.alt == "Picture title"
    assert second.title == "Second"


# --- merging ---------------------------------------------------------------------------------


def test_feeds_merge_without_duplicates(feed_settings):
    result = load(feed_settings, "dup_a.xml", "dup_b.xml")
    assert [a.title for a in result.articles] == [
        "Shared by guid (A)",
        "Shared by URL (A)",
        "Bare id 42 in A",
        "Listed twice (A)",
        # "Listed twice again (A)": same canonical URL (host case, trailing slash, fragment)
        # "Shared by guid (B)": same urn: guid
        # "Shared by URL (B)": same page once utm_*/fbclid and the default port are ignored
        "Bare id 42 in B",  # a bare guid only means something inside its own feed
        "Only in B",
    ]
    assert len({a.id for a in result.articles}) == len(result.articles)


# --- broken feeds ----------------------------------------------------------------------------


def test_truncated_feed_is_used_with_a_warning(feed_settings):
    result = load(feed_settings, "truncated.xml")
    assert [a.title for a in result.articles] == ["Whole one", "Whole two", "Whole three"]
    (warning,) = result.warnings
    assert warning.startswith(f'feed "{FEED_FIXTURES / "truncated.xml"}": malformed feed (line 11')
    assert warning.endswith("used the 3 item(s) it could read")


def test_html_page_is_a_feed_error_naming_the_feed(feed_settings):
    path = FEED_FIXTURES / "hopeless.html"
    with pytest.raises(FeedError) as caught:
        load(feed_settings, "hopeless.html")
    message = str(caught.value)
    assert message.startswith(f'feed "{path}": not a valid RSS or Atom feed (')
    assert "not the site's web page" in message  # the hint
    assert caught.value.__cause__ is not None


@pytest.mark.parametrize("body", [b"", b"\x00\x01\x02binary", b"just some text", b"<?xml version='1.0'?><x/>"])
def test_things_that_are_not_feeds_are_feed_errors(body):
    with pytest.raises(FeedError, match=r'^feed "junk": not a valid RSS or Atom feed'):
        parse_feed(body, feed="junk", now=NOW)


def test_truncated_before_any_item_is_a_feed_error():
    body = rss("<item><title>half")[:-30]
    with pytest.raises(FeedError, match='feed "cut": not a valid RSS or Atom feed'):
        parse_feed(body, feed="cut", now=NOW)


def test_valid_feed_without_items_is_a_warning():
    result = parse_feed(rss(""), feed="quiet", now=NOW)
    assert result.articles == ()
    assert result.warnings == ('feed "quiet": the feed has no items',)


def test_missing_local_file_names_the_path(feed_settings, tmp_path):
    settings = feed_settings("feeds/nowhere.xml")
    with pytest.raises(FeedError) as caught:
        load_articles(settings, NOW)
    assert str(tmp_path / "feeds" / "nowhere.xml") in str(caught.value)
    assert str(caught.value).startswith('feed "feeds/nowhere.xml": no such file ')
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_relative_local_path_is_resolved_against_the_config_file(feed_settings, tmp_path):
    (tmp_path / "feeds").mkdir()
    (tmp_path / "feeds" / "here.xml").write_bytes((FEED_FIXTURES / "rss1.rdf").read_bytes())
    assert len(load_articles(feed_settings("feeds/here.xml"), NOW).articles) == 2


def test_naive_now_is_a_programming_error(feed_settings):
    with pytest.raises(ValueError, match="aware"):
        load_articles(feed_settings(str(FEED_FIXTURES / "rss1.rdf")), datetime(2025, 11, 11))


# --- state -----------------------------------------------------------------------------------


def state_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "state" / "feeds").iterdir())


def test_local_feed_state_is_one_json_with_first_seen(feed_settings, tmp_path):
    load(feed_settings, "dates.xml")
    (path,) = state_files(tmp_path)  # no body copy for a local file, no temp file left over
    assert path.suffix == ".json" and "dates-xml" in path.name
    state = json.loads(path.read_text())
    assert state["url"] == str(FEED_FIXTURES / "dates.xml")
    assert state["etag"] is None
    assert state["first_seen"] == {"undated-1": NOW.isoformat(), "garbled-1": NOW.isoformat()}


@pytest.mark.parametrize("garbage", ["{not json", '{"version": 99}', '["a list"]', '{"version": 1, "url": 3}'])
def test_corrupt_state_is_a_warning_and_is_rewritten(feed_settings, tmp_path, garbage):
    settings = feed_settings(str(FEED_FIXTURES / "dates.xml"))
    load_articles(settings, NOW)
    (path,) = state_files(tmp_path)
    path.write_text(garbage)
    later = NOW + timedelta(days=1)
    result = load_articles(settings, later)
    (warning,) = result.warnings
    assert f"ignored unreadable state file {path}" in warning
    assert "undated items count as new" in warning
    assert by_title(result)["No date at all"].seen == later
    assert json.loads(path.read_text())["first_seen"]["undated-1"] == later.isoformat()
    assert load_articles(settings, later).warnings == ()


def test_unwritable_state_dir_is_a_feed_error(feed_settings, tmp_path):
    (tmp_path / "state").write_text("a file where the directory should be")
    with pytest.raises(FeedError, match="cannot write feed state in"):
        load_articles(feed_settings(str(FEED_FIXTURES / "rss1.rdf")), NOW)


# --- speed -----------------------------------------------------------------------------------


def big_feed(items: int) -> bytes:
    entries = []
    for i in range(items):
        when = (NOW - timedelta(minutes=i)).strftime("%a, %d %b %Y %H:%M:%S +0000")
        entries.append(
            f"<item><title>Item {i} &amp; more</title><link>https://big.example/a/{i}?utm_source=rss</link>"
            f"<guid>https://big.example/a/{i}</guid><pubDate>{when}</pubDate>"
            f"<category>Cat{i % 5}</category><category>News</category>"
            f'<media:content url="https://big.example/img/{i}.jpg" medium="image" width="800" height="450">'
            f"<media:credit>Photo {i}</media:credit></media:content>"
            f'<description><![CDATA[<p>Paragraph <a href="/rel/{i}">link</a> with <em>emphasis</em>. '
            f'{"word " * 80}</p><img src="https://big.example/px.gif" width="1" height="1">]]></description>'
            "</item>"
        )
    return rss("".join(entries))


def test_two_thousand_items_all_load_with_their_images(feed_settings, tmp_path):
    # How fast is measured by bench/bench_build.py, not here.
    path = tmp_path / "big.xml"
    path.write_bytes(big_feed(2000))
    result = load_articles(feed_settings(str(path)), NOW)
    assert len(result.articles) == 2000
    assert len({a.id for a in result.articles}) == 2000
    assert all(a.image is not None for a in result.articles)


# --- the window first ------------------------------------------------------------------------


def dated(n: int, when: datetime, link: str = "") -> str:
    return (
        f"<item><title>Item {n}</title><link>{link or f'https://inline.example/{n}'}</link>"
        f"<pubDate>{format_datetime(when)}</pubDate><description>&lt;p&gt;text {n}&lt;/p&gt;</description></item>"
    )


def test_only_the_windows_items_are_sanitised_and_made_articles(tmp_path, feed_settings, monkeypatch):
    # 3 items this week, 40 from months ago: an issue can show only the 3, so only they are
    # sanitised (the costly part on a long feed); the old ones still count as seen.
    week = Window(NOW - timedelta(days=7), NOW)
    items = [dated(n, NOW - timedelta(days=1, hours=n)) for n in range(3)]
    items += [dated(n, NOW - timedelta(days=60 + n)) for n in range(3, 43)]
    path = tmp_path / "long.xml"
    path.write_bytes(rss("".join(items)))
    sanitised: list[str] = []
    real = parse_module.clean_summary
    monkeypatch.setattr(parse_module, "clean_summary", lambda raw, *a: sanitised.append(raw) or real(raw, *a))

    result = load_articles(feed_settings(str(path)), NOW, window=week)

    assert [a.title for a in result.articles] == ["Item 0", "Item 1", "Item 2"]
    assert result.articles[0].summary_html == "<p>text 0</p>"
    assert sanitised == ["<p>text 0</p>", "<p>text 1</p>", "<p>text 2</p>"]
    assert result.warnings == ()


def test_an_item_outside_the_window_still_wins_over_its_duplicate_in_a_later_feed(tmp_path, feed_settings):
    # Feed order is priority order with or without a window: the later feed's copy of an item
    # the first feed already has (there, from long ago) is a duplicate, not a new article.
    week = Window(NOW - timedelta(days=7), NOW)
    first, second = tmp_path / "first.xml", tmp_path / "second.xml"
    first.write_bytes(rss(dated(1, NOW - timedelta(days=90), "https://same.example/story?utm_source=a")))
    second.write_bytes(rss(dated(2, NOW - timedelta(days=1), "https://same.example/story") + dated(3, NOW)))
    settings = feed_settings(str(first), str(second))

    windowed = load_articles(settings, NOW, window=week)
    everything = load_articles(settings, NOW)

    assert [a.title for a in windowed.articles] == ["Item 3"]
    assert [a.title for a in everything.articles if a.when in week] == ["Item 3"]
