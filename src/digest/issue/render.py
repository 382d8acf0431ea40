"""Rendering an issue: jinja2 templates -> HTML with inlined CSS, plus a plain-text part.

An issue is rendered (and, the expensive part, CSS-inlined) once per variant. Values that
differ per recipient (unsubscribe link, name, address) are written as placeholders and filled
afterwards by ``fill``, a plain string replacement, so sending to 100,000 people never runs the
template engine or the inliner 100,000 times. The HTML and text parts use different placeholders
because a value must be HTML-escaped in one and left alone in the other.
"""

from __future__ import annotations

import html as html_lib
import importlib
import importlib.util
import logging
import re
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import jinja2
import markupsafe

from digest.config import Settings
from digest.errors import TemplateError
from digest.issue.links import add_utm
from digest.issue.palette import Palette, palette
from digest.models import Article, Issue
from digest.text import excerpt, join_names, one_line

if TYPE_CHECKING:
    from premailer import Premailer

HTML_TEMPLATE = "issue.html.j2"
TEXT_TEMPLATE = "issue.txt.j2"
# ``confirm_url`` is the sign-up confirmation mail's own link; an issue leaves it empty.
RECIPIENT_FIELDS = ("name", "email", "unsubscribe_url", "preferences_url", "confirm_url")
Part = Literal["html", "text"]
THUMB_WIDTH = 120  # px: the compact cards' thumbnails (a 136 px column with its gutter)
CREDIT_PREFIX = "Top image credit: "
# What an editor's note may contain once rendered from Markdown: text formatting, lists, links.
NOTE_TAGS = {"p", "br", "em", "strong", "a", "ul", "ol", "li", "blockquote"}


def placeholder(field: str, part: Part) -> str:
    """The marker standing for a per-recipient value in one part of the message."""
    return f"%%{field}%%" if part == "html" else f"%%{field}:text%%"


# What html.escape changes: most values (a name, an address, a link without a query) have none
# of it, and a search is cheaper than its five replacements.
_HTML_SPECIAL = re.compile(r"[&<>\"']")


def part_value(value: str, part: Part) -> str:
    """A recipient's value as it stands in ``part``: HTML-escaped in the HTML part, as it is in
    the text part. The one rule for ``fill``, the SMTP template and SendGrid's substitutions."""
    if part == "html" and _HTML_SPECIAL.search(value):
        return html_lib.escape(value)
    return value


def fill(rendered_part: str, values: Mapping[str, str], part: Part) -> str:
    """Put one recipient's values into a rendered part (escaping them for HTML)."""
    out = rendered_part
    for field in RECIPIENT_FIELDS:
        out = out.replace(placeholder(field, part), part_value(values.get(field, ""), part))
    return out


RECIPIENT_ONLY = "recipient-only"  # class of template elements that only make sense in someone's inbox


def archive_copy(html: str) -> str:
    """The HTML of an issue for the public web archive: per-recipient parts removed.

    Elements with class ``recipient-only`` (the unsubscribe and preferences links) are dropped,
    and any other placeholder is emptied, so an archived page never carries anyone's token.
    """
    from lxml import html as lxml_html

    doc = lxml_html.document_fromstring(html)
    for element in doc.find_class(RECIPIENT_ONLY):
        element.drop_tree()
    out = lxml_html.tostring(doc, encoding="unicode", doctype="<!DOCTYPE html>")
    return fill(out, {}, "html")


@dataclass(frozen=True, slots=True)
class Rendered:
    """One variant of an issue, ready to be filled per recipient."""

    subject: str
    html: str
    text: str
    warnings: tuple[str, ...]

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class ImageView:
    url: str
    alt: str
    width: int
    height: int
    credit: str


@dataclass(frozen=True, slots=True)
class ArticleView:
    """What a template sees of an article: display-ready strings, links already tagged.

    ``image`` is the full-width picture (the lead, the full layout), ``thumb`` the same picture
    at thumbnail size (compact cards). ``kind`` is the article's first category named in
    ``[render] label_categories`` ("Analysis"), and ``label`` the line above its title
    ("Analysis | Asia-Pacific", or the section alone).
    """

    title: str
    url: str
    excerpt: str
    authors: tuple[str, ...]
    byline: str
    section: str
    published: str
    image: ImageView | None
    thumb: ImageView | None = None
    kind: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind} | {self.section}" if self.kind else self.section


@dataclass(frozen=True, slots=True)
class ContentsEntry:
    """One line of "In this issue": a section and how many articles it shows."""

    name: str
    count: int


@dataclass(frozen=True, slots=True)
class SectionView:
    name: str
    articles: tuple[ArticleView, ...]


def bundled_templates() -> Path:
    """The templates shipped with digest: inside the installed package, or the source checkout's
    top-level ``templates/email`` when running from an editable install."""
    packaged = Path(str(resources.files("digest"))) / "templates" / "email"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "templates" / "email"


def template_dirs(settings: Settings) -> list[Path]:
    """The user's template directory first (if set), so a user may override only some files."""
    dirs = [bundled_templates()]
    if settings.render.templates:
        custom = settings.path(settings.render.templates)
        if not custom.is_dir():
            raise TemplateError(
                f"{settings.source or 'config'}: [render] templates: {custom} is not a directory",
                hint="point it at a folder of templates, or remove the key to use the bundled ones",
            )
        dirs.insert(0, custom)
    return dirs


def format_dates(start: datetime, end: datetime) -> str:
    """Human dates covered: '20–26 November 2026', '28 November – 4 December 2026'."""
    last = end - timedelta(microseconds=1)
    if start.year != last.year:
        return f"{start:%-d %B %Y} \u2013 {last:%-d %B %Y}"
    if start.month != last.month:
        return f"{start:%-d %B} \u2013 {last:%-d %B %Y}"
    if start.day == last.day:
        return f"{last:%-d %B %Y}"
    return f"{start:%-d}\u2013{last:%-d %B %Y}"


class _TemplateCache(jinja2.FileSystemBytecodeCache):
    """jinja2's cache of compiled templates, kept only where it can be written: a template it
    cannot store is compiled again next time, never a failed build."""

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            return


def _template_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept between runs, in the user's own directory under the system's
    temporary one (jinja2's default, made private to the user): compiling them is about 20 ms of
    every build. Each entry is checked against its template's source, so an edited template is
    compiled anew. None where no such directory can be had."""
    try:
        return _TemplateCache()
    except (OSError, RuntimeError):  # RuntimeError: jinja2 found no safe directory
        return None


class Renderer:
    """Renders issues for one configuration; keeps the jinja2 environment between renders."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def env(self) -> jinja2.Environment:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(d) for d in template_dirs(self.settings)]),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=True,
            bytecode_cache=_template_cache(),
        )
        return env

    def render(self, issue: Issue) -> Rendered:
        """Render both parts and the subject of one issue variant, with recipient placeholders."""
        context = self._context(issue)
        html = inline_css(self._render(HTML_TEMPLATE, context, "html"))
        text = self._render(TEXT_TEMPLATE, context, "text")
        subject = self.subject(issue)
        warnings = [*issue.warnings, *self.palette.adjusted]
        size = len(html.encode("utf-8"))
        limit = self.settings.render.size_warning_kb * 1024
        if size > limit:
            warnings.append(
                f"HTML part is {size / 1024:.0f} KB, over [render] size_warning_kb = "
                f"{self.settings.render.size_warning_kb}: Gmail clips messages past about 102 KB; "
                "lower section limits or [issue] excerpt_chars"
            )
        return Rendered(subject=subject, html=html, text=text, warnings=tuple(warnings))

    @cached_property
    def palette(self) -> Palette:
        return palette(self.settings.render.accent)

    def render_mail(self, name: str, subject: str, context: Mapping[str, object]) -> Rendered:
        """A mail of digest's own besides the issue (the sign-up confirmation): templates
        ``<name>.html.j2`` and ``<name>.txt.j2`` rendered with ``context`` and the recipient
        placeholders, the CSS inlined, exactly as an issue's parts are. Rendered once, filled per
        recipient by ``fill``."""
        values = {
            "newsletter": self.settings.newsletter,
            "palette": self.palette,
            "font": self.settings.render.font,
            **context,
        }
        html = inline_css(self._render(f"{name}.html.j2", values, "html"))
        text = self._render(f"{name}.txt.j2", values, "text")
        return Rendered(subject=one_line(subject), html=html, text=text, warnings=())

    def subject(self, issue: Issue) -> str:
        """The editors' subject line for this issue, else ``[newsletter] subject``; always one line."""
        if issue.subject.strip():
            return one_line(issue.subject)
        zone = self.settings.newsletter.zone
        first = issue.lead or (issue.articles[0] if issue.articles else None)
        fields = {
            "newsletter": self.settings.newsletter.name,
            "lead_title": first.title if first else "",
            "issue": issue.key,
            "start": f"{issue.window.start.astimezone(zone):%-d %B %Y}",
            "end": f"{(issue.window.end - timedelta(microseconds=1)).astimezone(zone):%-d %B %Y}",
            "count": str(len(issue.articles)),
        }
        return one_line(self.settings.newsletter.subject.format_map(fields))

    def _render(self, name: str, context: dict[str, object], part: Part) -> str:
        recipient = {field: placeholder(field, part) for field in RECIPIENT_FIELDS}
        try:
            return self.env.get_template(name).render(context, recipient=recipient)
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(
                f"template {exc.name!r} not found in {', '.join(map(str, template_dirs(self.settings)))}"
            ) from exc
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"{exc.filename or exc.name}:{exc.lineno}: template syntax error: {exc.message}"
            ) from exc
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"template {name}: {exc.message}", hint="see the README's template guide") from exc

    def _context(self, issue: Issue) -> dict[str, object]:
        s = self.settings
        zone = s.newsletter.zone
        utm = self._utm(issue.key)
        views = {}
        sections = []
        for section in issue.sections:
            shown = []
            for article in section.articles:
                view = self._article(article, section.name, utm)
                views[article.id] = view
                if article is not issue.lead:
                    shown.append(view)
            if shown:
                sections.append(SectionView(section.name, tuple(shown)))
        lead = views[issue.lead.id] if issue.lead else None
        first = lead or sections[0].articles[0]
        base = s.newsletter.base_url
        return {
            "newsletter": s.newsletter,
            "issue": {
                "key": issue.key,
                "dates": format_dates(issue.window.start.astimezone(zone), issue.window.end.astimezone(zone)),
                "count": len(issue.articles),
            },
            "layout": s.render.layout,
            "palette": self.palette,
            "font": s.render.font,
            "note": note_html(issue.note),
            "note_text": note_text(issue.note),
            "contents": [ContentsEntry(sec.name, len(sec.articles)) for sec in sections],
            "lead": lead,
            "sections": sections,
            "preheader": one_line(issue.preheader) or first.excerpt,
            "links": {
                "view_in_browser": f"{base}/issues/{issue.key}",
                "archive": f"{base}/issues/",
                "subscribe": f"{base}/subscribe",
            },
        }

    def _utm(self, key: str) -> dict[str, str]:
        u = self.settings.utm
        if not u.enabled:
            return {}
        campaign = u.campaign.format_map({"issue": key, "newsletter": self.settings.newsletter.name})
        return {"utm_source": u.source, "utm_medium": u.medium, "utm_campaign": campaign}

    def _article(self, article: Article, section: str, utm: dict[str, str]) -> ArticleView:
        zone = self.settings.newsletter.zone
        return ArticleView(
            title=article.title,
            url=add_utm(article.url, utm),
            excerpt=excerpt(article.summary_text, self.settings.issue.excerpt_chars),
            authors=article.authors,
            byline=join_names(article.authors),
            section=section,
            published=f"{article.published.astimezone(zone):%-d %B %Y}" if article.published else "",
            image=self._image(article, self.settings.render.image_width),
            thumb=self._image(article, THUMB_WIDTH),
            kind=self._kind(article),
        )

    def _kind(self, article: Article) -> str:
        """The first of the article's categories listed in ``[render] label_categories``, spelled as listed."""
        listed = {name.casefold(): name for name in self.settings.render.label_categories}
        return next((listed[c.casefold()] for c in article.categories if c.casefold() in listed), "")

    def _image(self, article: Article, width: int) -> ImageView | None:
        """The article's image shown ``width`` px wide, its height kept in proportion."""
        image = article.image
        if image is None:
            return None
        if image.width and image.height:
            height = round(width * image.height / image.width)
        else:
            height = round(width / self.settings.render.image_aspect)
        return ImageView(
            url=image.url, alt=image.alt or article.title, width=width, height=height, credit=credit_line(image.credit)
        )


def credit_line(credit: str) -> str:
    """The publication's credit line, "Top image credit: ...", whether or not the feed wrote the prefix."""
    if not credit or credit.casefold().startswith(CREDIT_PREFIX.strip().casefold()):
        return credit
    return CREDIT_PREFIX + credit


def note_html(source: str) -> markupsafe.Markup:
    """The editor's note (Markdown) as HTML for the email: rendered by markdown-it-py with raw
    HTML off, then cleaned by nh3 to text formatting, lists and http(s)/mailto links."""
    if not source.strip():
        return markupsafe.Markup("")
    import nh3
    from markdown_it import MarkdownIt

    rendered = MarkdownIt("js-default").render(source)
    cleaned = nh3.clean(
        rendered,
        tags=NOTE_TAGS,
        attributes={"a": {"href"}},
        url_schemes={"http", "https", "mailto"},
        link_rel=None,
    )
    return markupsafe.Markup(cleaned.strip())  # nh3 has just sanitised it


def note_text(source: str) -> str:
    """The editor's note for the text part: its Markdown source is already plain text; each
    paragraph is wrapped at 72 columns."""
    import textwrap

    paragraphs = [p.strip() for p in source.strip().split("\n\n") if p.strip()]
    return "\n\n".join(
        "\n".join(textwrap.fill(line, 72, break_long_words=False, break_on_hyphens=False) for line in p.splitlines())
        for p in paragraphs
    )


class _Deferred(types.ModuleType):
    """A stand-in in ``sys.modules`` for a module that is imported only when one of its
    attributes is first used, and from then on forwards every attribute to it.

    The standard library's ``LazyLoader`` does not do here: on Python 3.11 an ``import`` statement
    that finds a lazy module reads its ``__spec__``, and that loads it. A plain module object
    answers ``__spec__`` itself (None), so ``import requests`` inside premailer stays cheap.
    """

    def __getattr__(self, attr: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


def _defer_import(name: str) -> None:
    """Let ``import name`` give a ``_Deferred`` stand-in until the module is used; nothing when it
    is loaded already or not installed."""
    if name not in sys.modules and importlib.util.find_spec(name) is not None:
        sys.modules[name] = _Deferred(name)


@cache
def _premailer() -> type[Premailer]:
    """premailer's class, imported on first use (it is slow to import and only a build needs it),
    with cssutils' property profiles removed.

    ``disable_validation`` is not enough: cssutils checks every declaration of a style sheet
    against its profiles while parsing it, before the rule knows the sheet that says not to,
    and compiles the profiles' regular expressions to do so: about 40 ms of every build, for
    checks whose only outcome is a log line premailer silences. Without profiles nothing is
    checked; the inlined HTML is the same byte for byte (the golden files hold it).

    premailer imports requests (with urllib3 and its character detectors: about 40 ms) only to
    fetch external style sheets, which ``allow_network=False`` forbids: it is deferred, so it is
    only read from disk if something in the process really uses it.
    """
    _defer_import("requests")
    import cssutils
    from premailer import Premailer

    cssutils.profile.removeProfile(all=True)
    return Premailer


def inline_css(html: str) -> str:
    """Inline the template's CSS into style attributes, keeping ``@media`` rules for phones.

    ``strip_important=False`` keeps ``!important`` inside the media queries (they must beat the
    inlined styles); ``allow_network=False`` means a template can never make a build fetch CSS.
    Width and height attributes are written by the template itself, so premailer must not
    derive them from CSS.
    """
    inlined = str(
        _premailer()(
            html,
            strip_important=False,
            allow_network=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
            disable_basic_attributes=["width", "height"],
            remove_classes=False,
        ).transform(pretty_print=False)
    )
    return inlined if inlined.endswith("\n") else inlined + "\n"
