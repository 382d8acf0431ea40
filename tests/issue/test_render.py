"""Rendering a hand-built issue: what a reader and an editor check in the HTML and text parts."""

import re
from dataclasses import replace

import pytest
from lxml import html as lxml_html

from digest.errors import TemplateError
from digest.issue import rank
from digest.issue.render import Renderer, fill, placeholder
from factories import NOW, article, settings

VALUES = {
    "name": "Zoë <O'Brien>",
    "email": "zoe@example.net",
    "unsubscribe_url": "https://news.example.org/unsubscribe?t=abc&x=1",
    "preferences_url": "https://news.example.org/preferences?t=abc",
}


@pytest.fixture
def issue(tmp_path):
    arts = [
        article("lead-story", hours_ago=2, summary="North Korea has steadily expanded its nuclear arsenal. " * 10),
        article("no-image", hours_ago=1, image=False, authors=("A One", "B Two")),
        article("mic", hours_ago=5, categories=("Military Industrial Complex",), authors=()),
    ]
    return rank.build_issue(arts, settings(tmp_path), NOW)


@pytest.fixture
def renderer(tmp_path):
    return Renderer(settings(tmp_path))


def test_html_is_600px_tables_with_inlined_css_and_media_queries_kept(renderer, issue):
    out = renderer.render(issue).html
    doc = lxml_html.fromstring(out)
    container = doc.cssselect("table.container")[0]
    assert container.get("width") == "600"
    assert "width:600px" in container.get("style").replace(" ", "")
    styles = "".join(s.text_content() for s in doc.cssselect("style"))
    assert "@media only screen and (max-width: 620px)" in styles
    assert "width: 100% !important" in styles
    # Every non-media rule was inlined: the style block holds only the media query.
    assert re.sub(r"@media[^{]*\{(?:[^{}]*\{[^}]*\})*\s*\}", "", styles).strip() == ""


def test_preheader_header_sections_and_cards(renderer, issue):
    doc = lxml_html.fromstring(renderer.render(issue).html)
    pre = doc.cssselect(".preheader")[0]
    assert "display:none" in pre.get("style").replace(" ", "")
    assert pre.text_content().startswith("North Korea has steadily expanded")
    assert len(pre.text_content()) <= 280
    assert doc.cssselect("h1.masthead")[0].text_content() == "Statecraft Weekly"
    assert doc.cssselect(".dates")[0].text_content() == "20\u201327 November 2026"
    assert [e.text_content() for e in doc.cssselect(".section-name")] == ["Asia-Pacific", "Military Industrial Complex"]
    # The lead opens the issue and is not repeated in its section.
    titles = [e.text_content() for e in doc.cssselect("h2")]
    assert titles == ["Title of lead-story", "Title of no-image", "Title of mic"]
    assert doc.cssselect("h2")[0].get("class") == "lead-title"


def test_cards_have_linked_title_excerpt_byline_image_credit_and_keep_reading(renderer, issue):
    doc = lxml_html.fromstring(renderer.render(issue).html)
    lead = doc.cssselect("td.lead")[0]
    link = lead.cssselect("h2 a")[0].get("href")
    assert link == "https://example.org/lead-story?utm_source=newsletter&utm_medium=email&utm_campaign=2026-W48"
    img = lead.cssselect("img")[0]
    assert (img.get("alt"), img.get("width"), img.get("height")) == ("Alt lead-story", "560", "315")
    assert lead.cssselect(".credit")[0].text_content() == "Credit lead-story"
    assert lead.cssselect(".label")[0].text_content() == "Asia-Pacific"
    excerpt = lead.cssselect(".excerpt")[0].text_content()
    assert len(excerpt) <= 280 and excerpt.endswith("\u2026")
    assert [a.text_content() for a in lead.cssselect(".more a")] == ["Keep reading \u2192"]
    cards = doc.cssselect("td.card")
    assert cards[0].cssselect(".byline")[0].text_content() == "By A One and B Two \u00b7 27 November 2026"
    assert not cards[0].cssselect("img")  # no image: no empty img tag
    assert cards[1].cssselect(".byline")[0].text_content() == "27 November 2026"


def test_footer_has_why_view_in_browser_unsubscribe_and_address(renderer, issue):
    html = fill(renderer.render(issue).html, VALUES, "html")
    doc = lxml_html.fromstring(html)
    footer = doc.cssselect("td.footer")[0]
    text = footer.text_content()
    assert "You are receiving this because you subscribed" in text
    assert "1 Main St, Springfield" in text
    hrefs = {a.text_content(): a.get("href") for a in footer.cssselect("a")}
    assert hrefs["View this issue in your browser"] == "https://news.example.org/issues/2026-W48"
    assert hrefs["Unsubscribe"] == "https://news.example.org/unsubscribe?t=abc&x=1"
    assert hrefs["Choose your sections"] == "https://news.example.org/preferences?t=abc"


def test_placeholders_survive_inlining_and_fill_escapes_per_part(renderer, issue):
    rendered = renderer.render(issue)
    assert placeholder("unsubscribe_url", "html") in rendered.html
    assert placeholder("unsubscribe_url", "text") in rendered.text
    html = fill(rendered.html, VALUES, "html")
    assert "%%" not in html
    assert "unsubscribe?t=abc&amp;x=1" in html
    text = fill(rendered.text, VALUES, "text")
    assert "%%" not in text
    assert "Unsubscribe: https://news.example.org/unsubscribe?t=abc&x=1" in text


def test_text_part_is_written_from_the_same_data(renderer, issue):
    text = renderer.render(issue).text
    assert "<" not in text.replace("%%", "")
    assert text.startswith("STATECRAFT WEEKLY\n20\u201327 November 2026\n")
    for title in ("Title of lead-story", "Title of no-image", "Title of mic"):
        assert text.count(title) == 1
    assert "== Asia-Pacific ==" in text
    assert "Keep reading: https://example.org/mic?utm_source=newsletter" in text
    assert "By A One and B Two \u00b7 27 November 2026" in text
    assert all(len(line) <= 72 or "://" in line for line in text.splitlines())


def test_subject_from_template_is_one_line(tmp_path):
    s = settings(
        tmp_path,
        newsletter={
            **settings(tmp_path).newsletter.model_dump(by_alias=True),
            "subject": "{newsletter} #{issue}: {lead_title} (+{count})",
        },
    )
    evil = replace(article("x"), title="Big news\r\nBcc: everyone@example.org")
    issue = rank.build_issue([evil, article("y", hours_ago=30)], s, NOW)
    subject = Renderer(s).render(issue).subject
    assert subject == "Statecraft Weekly #2026-W48: Big news Bcc: everyone@example.org (+2)"


def test_size_warning_when_html_passes_the_limit(tmp_path):
    s = settings(tmp_path, render={"size_warning_kb": 5})
    issue = rank.build_issue([article("a"), article("b")], s, NOW)
    warnings = Renderer(s).render(issue).warnings
    assert len(warnings) == 1
    assert re.fullmatch(r"HTML part is \d+ KB, over \[render\] size_warning_kb = 5: Gmail clips .*", warnings[0])


def test_feed_text_is_escaped_in_html(tmp_path):
    s = settings(tmp_path)
    hostile = replace(article("x"), title='<script>alert(1)</script> & "quotes"')
    html = Renderer(s).render(rank.build_issue([hostile, article("y")], s, NOW)).html
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in html


def test_custom_template_dir_overrides_only_what_it_has(tmp_path):
    custom = tmp_path / "mine"
    custom.mkdir()
    (custom / "issue.txt.j2").write_text("Custom {{ issue.key }} for {{ recipient.name }}\n")
    s = settings(tmp_path, render={"templates": "mine"})
    rendered = Renderer(s).render(rank.build_issue([article("a"), article("b")], s, NOW))
    assert rendered.text == "Custom 2026-W48 for %%name:text%%\n"
    assert "Title of a" in rendered.html  # the bundled HTML template still serves


def test_template_syntax_error_names_file_and_line(tmp_path):
    custom = tmp_path / "mine"
    custom.mkdir()
    (custom / "issue.txt.j2").write_text("line one\n{% for x in %}\n")
    s = settings(tmp_path, render={"templates": "mine"})
    with pytest.raises(TemplateError, match=r"issue\.txt\.j2:2: template syntax error"):
        Renderer(s).render(rank.build_issue([article("a"), article("b")], s, NOW))


def test_missing_template_dir_is_a_clear_error(tmp_path):
    s = settings(tmp_path, render={"templates": "nowhere"})
    with pytest.raises(TemplateError, match=r"\[render\] templates: .*nowhere is not a directory"):
        Renderer(s).render(rank.build_issue([article("a"), article("b")], s, NOW))
