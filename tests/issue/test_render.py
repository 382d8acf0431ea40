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


def _styles(doc) -> list[str]:
    return [s.text_content() for s in doc.cssselect("style")]


def test_html_is_a_fluid_600px_column_with_outlook_ghost_tables_and_media_queries_kept(renderer, issue):
    out = renderer.render(issue).html
    doc = lxml_html.fromstring(out)
    container = doc.cssselect("table.container")[0]
    assert container.get("width") == "100%"
    assert "max-width:600px" in container.get("style").replace(" ", "")
    # Outlook for Windows ignores max-width and @media: a 600 px ghost table holds the column.
    assert '<!--[if mso]><table role="presentation" width="600"' in out
    assert out.count("<!--[if mso]>") == out.count("<![endif]-->")
    phone, dark, outlook_com = _styles(doc)
    assert "@media only screen and (max-width: 599px)" in phone
    assert "padding-left: 14px !important" in phone
    # Every non-media rule was inlined: the first style block holds only the media query.
    assert re.sub(r"@media[^{]*\{(?:[^{}]*\{[^}]*\})*\s*\}", "", phone).strip() == ""
    assert "@media (prefers-color-scheme: dark)" in dark and "color-scheme: light dark" in dark
    assert "[data-ogsc] .title a" in outlook_com and "[data-ogsb] .container" in outlook_com
    assert doc.cssselect('meta[name="color-scheme"]')[0].get("content") == "light dark"
    assert "mso-line-height-rule:exactly" in doc.cssselect("h3")[0].get("style").replace(" ", "")


def test_preheader_header_contents_sections_and_heading_order(renderer, issue):
    doc = lxml_html.fromstring(renderer.render(issue).html)
    pre = doc.cssselect(".preheader")[0]
    assert "display:none" in pre.get("style").replace(" ", "")
    assert pre.text_content().startswith("North Korea has steadily expanded")
    assert len(pre.text_content()) <= 280
    assert doc.cssselect("h1.masthead")[0].text_content().strip() == "Statecraft Weekly"
    assert doc.cssselect(".dates")[0].text_content() == "20\u201327 November 2026"
    assert (
        doc.cssselect(".contents")[0].text_content() == "Asia-Pacific\xa0(1) \u00b7 Military Industrial Complex\xa0(1)"
    )
    # h1 the issue, h2 its parts, h3 the articles; the lead opens the issue and is not repeated.
    headings = [(e.tag, e.text_content().strip()) for e in doc.cssselect("h1, h2, h3")]
    assert headings == [
        ("h1", "Statecraft Weekly"),
        ("h2", "In this issue"),
        ("h2", "Top story"),
        ("h3", "Title of lead-story"),
        ("h2", "Asia-Pacific"),
        ("h3", "Title of no-image"),
        ("h2", "Military Industrial Complex"),
        ("h3", "Title of mic"),
    ]
    assert doc.get("lang") == "en"
    assert all(t.get("role") == "presentation" for t in doc.iter("table"))


def test_lead_is_large_and_other_cards_are_compact_thumbnails(renderer, issue):
    doc = lxml_html.fromstring(renderer.render(issue).html)
    lead = doc.cssselect("td.lead")[0]
    link = lead.cssselect("h3 a")[0].get("href")
    assert link == "https://example.org/lead-story?utm_source=newsletter&utm_medium=email&utm_campaign=2026-W48"
    img = lead.cssselect("img")[0]
    assert (img.get("alt"), img.get("width"), img.get("height")) == ("Alt lead-story", "560", "315")
    assert lead.cssselect(".credit")[0].text_content() == "Top image credit: Credit lead-story"
    assert lead.cssselect(".label")[0].text_content() == "Asia-Pacific"
    excerpt = lead.cssselect(".excerpt")[0].text_content()
    assert len(excerpt) <= 280 and excerpt.endswith("\u2026")
    more = lead.cssselect(".more a")[0]
    assert (more.text_content(), more.get("title")) == ("Keep reading \u2192", "Title of lead-story")
    no_image, mic = doc.cssselect("td.card")
    assert no_image.cssselect(".byline")[0].text_content() == "By A One and B Two \u00b7 27 November 2026"
    assert not no_image.cssselect("img, .thumb-col")  # no image: no space kept for one
    thumb = mic.cssselect(".thumb-col img")[0]
    assert (thumb.get("width"), thumb.get("height"), thumb.get("alt")) == ("120", "68", "Alt mic")
    assert "width:136px" in mic.cssselect(".thumb-col")[0].get("style").replace(" ", "")
    assert "max-width:420px" in mic.cssselect(".text-col")[0].get("style").replace(" ", "")
    assert mic.cssselect(".byline")[0].text_content() == "27 November 2026"
    # Outlook for Windows gets the two columns as a ghost table.
    html = lxml_html.tostring(mic, encoding="unicode")
    assert '<td width="136" valign="top"><![endif]-->' in html and '<td width="424" valign="top">' in html


def test_full_layout_gives_every_card_a_full_width_image(tmp_path):
    s = settings(tmp_path, render={"layout": "full"})
    issue = rank.build_issue([article("a", hours_ago=1), article("b", hours_ago=2)], s, NOW)
    doc = lxml_html.fromstring(Renderer(s).render(issue).html)
    card = doc.cssselect("td.card")[0]
    assert not card.cssselect(".thumb-col")
    assert card.cssselect("img")[0].get("width") == "560"
    assert card.cssselect(".more a")[0].text_content() == "Keep reading \u2192"


def test_label_names_the_kind_and_the_section(tmp_path):
    s = settings(tmp_path, render={"label_categories": ["Analysis"]})
    arts = [article("a", hours_ago=1, categories=("Asia-Pacific", "analysis")), article("b", hours_ago=2)]
    doc = lxml_html.fromstring(Renderer(s).render(rank.build_issue(arts, s, NOW)).html)
    assert [e.text_content() for e in doc.cssselect(".label")] == ["Analysis | Asia-Pacific", "Asia-Pacific"]


def test_masthead_logo_with_its_size_and_alt_on_a_light_plate(tmp_path):
    newsletter = {
        **settings(tmp_path).newsletter.model_dump(by_alias=True, exclude={"logo"}),
        "logo": {"url": "https://news.example.org/logo.png", "width": 220, "height": 44, "alt": "Statecraft"},
    }
    s = settings(tmp_path, newsletter=newsletter)
    doc = lxml_html.fromstring(Renderer(s).render(rank.build_issue([article("a"), article("b")], s, NOW)).html)
    img = doc.cssselect("h1.masthead img")[0]
    assert (img.get("src"), img.get("width"), img.get("height"), img.get("alt")) == (
        "https://news.example.org/logo.png",
        "220",
        "44",
        "Statecraft",
    )
    assert img.getparent().get("class") == "plate"
    dark = _styles(doc)[1]
    assert ".plate { background-color: #ffffff !important; }" in dark  # a light plate in dark mode too


def test_accent_colours_the_publication_and_a_light_one_is_darkened_with_a_warning(tmp_path):
    s = settings(tmp_path, render={"accent": "#1F5FAD"})
    issue = rank.build_issue([article("a"), article("b")], s, NOW)
    rendered = Renderer(s).render(issue)
    doc = lxml_html.fromstring(rendered.html)
    assert "color:#1f5fad" in doc.cssselect(".label")[0].get("style").replace(" ", "")
    assert rendered.warnings == ()
    pale = settings(tmp_path, render={"accent": "#ffcc00"})
    warnings = Renderer(pale).render(issue).warnings
    assert len(warnings) == 1
    assert re.fullmatch(
        r"\[render\] accent #ffcc00 has only 1\.\d:1 contrast on white; #[0-9a-f]{6} is used .*", warnings[0]
    )


def test_editors_note_is_markdown_sanitised_and_comes_first_in_both_parts(renderer, issue):
    noted = replace(
        issue,
        note="A **busy** week. Read [our explainer](https://example.org/x).\n\n<script>alert(1)</script>"
        "[bad](javascript:alert(1))",
    )
    rendered = renderer.render(noted)
    doc = lxml_html.fromstring(rendered.html)
    note = doc.cssselect(".note")[0]
    assert note.cssselect("strong")[0].text_content() == "busy"
    assert note.cssselect("a")[0].get("href") == "https://example.org/x"
    assert "<script>" not in rendered.html and 'href="javascript' not in rendered.html
    assert "<script>alert(1)</script>" in note.text_content()  # shown as text, never run
    headings = [e.text_content() for e in doc.cssselect("h2")]
    assert headings[:2] == ["From the editor", "In this issue"]
    text = rendered.text
    assert text.index("FROM THE EDITOR") < text.index("A **busy** week.") < text.index("IN THIS ISSUE")
    assert text.index("IN THIS ISSUE") < text.index("TOP STORY") < text.index("== Asia-Pacific ==")
    assert "- Military Industrial Complex (1)" in text
    assert not renderer.render(issue).html.count('class="note"')


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
    assert "IN THIS ISSUE\n\n- Asia-Pacific (1)\n- Military Industrial Complex (1)\n" in text
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


def test_every_issue_and_its_archive_copy_say_forwarded_this_subscribe(renderer, issue):
    from digest.issue.render import archive_copy

    rendered = renderer.render(issue)
    for html in (rendered.html, archive_copy(rendered.html)):
        footer = lxml_html.fromstring(html).find_class("forwarded")
        assert [p.text_content() for p in footer] == ["Forwarded this? Subscribe"]
        assert footer[0].find("a").get("href") == "https://news.example.org/subscribe"
    assert "Forwarded this? Subscribe: https://news.example.org/subscribe" in rendered.text


# --- compiled templates kept between runs (jinja2's bytecode cache) ----------------------------


def _render_text(tmp_path):
    s = settings(tmp_path, render={"templates": "mine"})
    return Renderer(s).render(rank.build_issue([article("a"), article("b")], s, NOW)).text


def test_an_edited_template_is_compiled_anew_by_the_next_run(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    custom = tmp_path / "mine"
    custom.mkdir()
    (custom / "issue.txt.j2").write_text("First {{ issue.key }}\n")
    assert _render_text(tmp_path) == "First 2026-W48\n"
    cached = list(tmp_path.glob("_jinja2-cache-*/*.cache"))
    assert cached  # the compiled templates were kept for the next run

    (custom / "issue.txt.j2").write_text("Second {{ issue.key }}\n")  # as an editor changes it between runs
    assert _render_text(tmp_path) == "Second 2026-W48\n"


def test_a_cache_that_cannot_be_kept_never_fails_a_build(tmp_path, monkeypatch):
    import tempfile

    import jinja2

    custom = tmp_path / "mine"
    custom.mkdir()
    (custom / "issue.txt.j2").write_text("Kept {{ issue.key }}\n")
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_directory))  # no cache directory can be made
    assert _render_text(tmp_path) == "Kept 2026-W48\n"

    def disk_full(self, bucket):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(jinja2.FileSystemBytecodeCache, "dump_bytecode", disk_full)
    assert _render_text(tmp_path) == "Kept 2026-W48\n"


# --- premailer's requests, deferred until something uses it --------------------------------------


def test_a_deferred_module_runs_only_when_first_used_and_then_is_the_module(tmp_path, monkeypatch):
    import importlib
    import sys

    from digest.issue.render import _defer_import

    (tmp_path / "probe_mod.py").write_text("import sys\nsys.probe_runs += 1\nVALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "probe_mod", raising=False)
    monkeypatch.setattr(sys, "probe_runs", 0, raising=False)

    _defer_import("probe_mod")
    stand_in = importlib.import_module("probe_mod")  # as premailer's `import requests`
    assert sys.probe_runs == 0
    assert stand_in.VALUE == 42  # first use: the module runs, once
    assert stand_in.VALUE == 42
    assert sys.probe_runs == 1
    assert importlib.import_module("probe_mod") is not stand_in  # later imports get the module itself
    assert sys.modules["probe_mod"].VALUE == 42

    _defer_import("no_such_module_anywhere")
    assert "no_such_module_anywhere" not in sys.modules
