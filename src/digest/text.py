"""Small text functions shared by rendering and message building.

Kept apart so that the rules (how an excerpt is cut, what may reach a mail header) live in one
place and are tested directly.
"""

from __future__ import annotations

import re

_SPACE = re.compile(r"\s+")
ELLIPSIS = "\u2026"


def one_line(value: str) -> str:
    """Collapse every run of whitespace, line breaks included, to one space.

    Applied to anything from a feed that can reach a mail header, so no feed value can ever
    start a new header line (header injection) or fold a subject oddly.
    """
    return _SPACE.sub(" ", value).strip()


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
