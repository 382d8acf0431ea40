"""Feed HTML made safe and small for an email: summaries sanitised with nh3, titles as plain text.

Everything a feed says is untrusted. Summaries keep a small allowlist of tags (links made
absolute), anything else is plain one-line text; both are used by the parser and the images.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

import nh3

from digest.feeds.urls import has_scheme
from digest.text import one_line

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


def plain_text(value: str, *, is_html: bool) -> str:
    """``value`` as one line of plain text: for HTML, tags stripped and entities decoded."""
    if is_html and ("<" in value or "&" in value):
        # nh3 with no allowed tags is a real HTML parser: "a < b" survives, <script> bodies go.
        value = html.unescape(nh3.clean(value, tags=set()))
    return one_line(value)


def clean_summary(raw: str, is_html: bool, base: str) -> tuple[str, str]:
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
        if attribute != "href" or has_scheme(value):
            return value
        joined = urljoin(base, value) if base else value
        return joined if urlsplit(joined).scheme in {"http", "https"} else None

    return resolve
