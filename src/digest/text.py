"""Small text functions shared by rendering and message building.

Kept apart so that the rules (how an excerpt is cut, what may reach a mail header) live in one
place and are tested directly.
"""

from __future__ import annotations

import re
from email import policy

_SPACE = re.compile(r"\s+")
# Control characters (C0, DEL, C1) other than tab, line feed and carriage return, which are
# whitespace: kept by ``without_controls`` for text with lines, turned to spaces by ``one_line``.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Lone surrogates: what an encoded word in an unknown or wrong charset decodes to. They cannot be
# written as UTF-8, so a header (or SendGrid's JSON) gets U+FFFD instead.
_SURROGATES = re.compile("[\ud800-\udfff]")
# The email package's own parser for unstructured headers: it decodes RFC 2047 encoded words
# exactly as it will when a value is set on a message (and more eagerly than it does in names).
_HEADER = policy.default.header_factory
# Encoded words nested deeper than this are not decoded further but defused (see header_text).
_MAX_DECODES = 8
ELLIPSIS = "\u2026"


def without_controls(text: str) -> str:
    """``text`` without control characters (NUL, ESC, DEL, C1...); tabs and line breaks stay.

    Feeds carry them as raw bytes or character references (``&#0;``); nothing a reader sees
    needs one, and a NUL cannot even be stored in PostgreSQL.
    """
    return _CONTROLS.sub("", text)


def one_line(value: str) -> str:
    """Collapse every run of whitespace, line breaks included, to one space; drop control characters.

    Applied to anything from a feed that can reach a mail header, so no feed value can ever
    start a new header line (header injection) or fold a subject oddly.
    """
    return _SPACE.sub(" ", without_controls(value)).strip()


def header_text(value: str) -> str:
    """``value`` as one line of text that stays one line of text in a mail header.

    The one cleaning step for every header value (message.py and the SendGrid request). The
    email package decodes RFC 2047 encoded words when a header is set, and mail programs when
    they show one, so ``=?utf-8?q?Hi=0D=0ABcc:_x?=`` is a line break and a Bcc header once
    decoded, though ``one_line`` finds none in it. So the value is decoded as the email package
    decodes it, then cleaned, until decoding changes nothing: what is written is what is read.
    Each decode that changes the text shortens it; past ``_MAX_DECODES`` nested encoded words,
    what is left is defused (``=?`` -> ``= ?``) so it can never decode at all.
    """
    if _plain_header(value):  # most values (every address and link): nothing to clean or decode
        return value
    text = _clean_header(value)
    if "=?" not in text:  # no encoded word: decoding gives it back unchanged, so skip the parser
        return text
    for _ in range(_MAX_DECODES):
        decoded = _clean_header(str(_HEADER("subject", text)))
        if decoded == text:
            return text
        text = decoded
    return text.replace("=?", "= ?")


def _plain_header(value: str) -> bool:
    """True when ``header_text`` gives ``value`` back unchanged, told without a regular
    expression: printable ASCII has no control, surrogate or line break, its only space is
    ' ', so with no run of spaces, none at either end and no encoded word, nothing changes."""
    return (
        value.isascii()
        and value.isprintable()
        and "  " not in value
        and "=?" not in value
        and value[:1] != " "
        and value[-1:] != " "
    )


def _clean_header(value: str) -> str:
    return _SURROGATES.sub("\ufffd", one_line(value))


def excerpt(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters at a word boundary, adding an ellipsis.

    Never cuts inside a word; if the first word alone is longer than the limit it is cut hard,
    because an over-long excerpt is worse than a broken word.
    """
    text = one_line(text)
    if len(text) <= limit:
        return text
    room = limit - len(ELLIPSIS)
    cut = text[: room + 1]
    space = cut.rfind(" ")
    head = cut[:space] if space > 0 else text[:room]
    return head.rstrip(" ,;:-\u2013\u2014") + ELLIPSIS


def join_names(names: tuple[str, ...] | list[str]) -> str:
    """ "A", "A and B", "A, B and C": how bylines read in English."""
    names = [n for n in names if n]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]
