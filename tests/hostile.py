"""Hostile values for the header-injection tests of every transport, and the check they share.

``fixtures/feeds/hostile.xml`` holds items whose titles hide a line break in an RFC 2047 encoded
word, or carry NUL and other control characters (as character references and as raw bytes).
Each test sends a variant whose lead (and so whose Subject) is one of them, to a recipient whose
name hides a line break the same way, and reads the finished bytes back with
``email.policy.strict``: a header the code did not write would show up in ``header_names``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

from digest.issue.build import build
from digest.issue.render import Rendered
from factories import FEED_FIXTURES, settings

FEED = FEED_FIXTURES / "hostile.xml"
NOW = datetime(2025, 11, 11, 12, tzinfo=UTC)  # the day after the fixture's items

# Lead URL -> the Subject a reader must see (newsletter name from factories.settings).
SUBJECTS = {
    "https://hostile.example/encoded-word": "Statecraft Weekly: Hello Bcc: evil@example.com X-Injected: yes",
    "https://hostile.example/char-refs": "Statecraft Weekly: Nullbyte and bell title",
    "https://hostile.example/raw-bytes": "Statecraft Weekly: Raw NUL and raw escape title",
}
# A subscriber name as it may sit in a ledger filled before names were checked on import.
NAME = "=?utf-8?q?Eve=0D=0ABcc:_all@example.com=0D=0AX-Name:_1?="
NAME_SHOWN = "Eve Bcc: all@example.com X-Name: 1"
URL = "https://example.org/unsubscribe?t=tok=?utf-8?q?=0D=0AX-Url:_1?="
URL_SHOWN = "https://example.org/unsubscribe?t=tok X-Url: 1"

# Every header build_message writes, and no other (and Reply-To, which every test configuration sets).
WRITTEN = ["Subject", "From", "To", "Date", "Message-ID", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post"]
MIME = ["Content-Type", "MIME-Version"]
# The text part, then the HTML part (add_alternative gives it a MIME-Version of its own).
PARTS = [["Content-Type", "Content-Transfer-Encoding"], ["Content-Type", "Content-Transfer-Encoding", "MIME-Version"]]


def variant(tmp_path: Path, lead: str) -> Rendered:
    """The rendered issue of the hostile feed with ``lead`` pinned, so its title is in the Subject."""
    s = settings(tmp_path / "hostile", feeds=[{"url": str(FEED)}], issue={"min_items": 1})
    return build(s, NOW, pins=[lead]).rendered


def header_names(raw: bytes) -> list[str]:
    """Parse ``raw`` strictly (a defect raises) and check each part carries only its own headers.

    Returns the top-level header names, sorted with repeats kept, to compare with ``expected``.
    """
    msg = message_from_bytes(raw, policy=policy.strict)
    assert [part.keys() for part in msg.iter_parts()] == PARTS
    return sorted(msg.keys())


def expected() -> list[str]:
    return sorted([*WRITTEN, "Reply-To", *MIME])


def parsed(raw: bytes):
    """The message as a mail client reads it (strict: a defect raises)."""
    return message_from_bytes(raw, policy=policy.strict)
