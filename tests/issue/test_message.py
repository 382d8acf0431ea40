"""The .eml parsed back with Python's email package, part by part, as a mail client would."""

from email import message_from_bytes, policy

import pytest

import hostile
from digest.issue import rank
from digest.issue.build import build, write_files
from digest.issue.message import build_message, list_id
from digest.issue.render import Rendered, Renderer, fill
from factories import NOW, article, settings

VALUES = {
    "name": "Zoë Example",
    "email": "zoe@example.net",
    "unsubscribe_url": "https://news.example.org/unsubscribe?t=tok",
    "preferences_url": "https://news.example.org/preferences?t=tok",
}


def parse(raw: bytes):
    return message_from_bytes(raw, policy=policy.default)


def rendered(tmp_path) -> tuple[Rendered, object]:
    s = settings(tmp_path)
    issue = rank.build_issue([article("a"), article("b", hours_ago=30)], s, NOW)
    return Renderer(s).render(issue), s


def test_multipart_alternative_text_then_html_utf8_quoted_printable(tmp_path):
    r, s = rendered(tmp_path)
    raw = build_message(s, r, VALUES, now=NOW, to="zoe@example.net").as_bytes()
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert b"base64" not in raw
    # On the wire every line ends in CRLF; decoded, the parts are exactly what was rendered.
    assert parts[0].get_content().replace("\r\n", "\n") == fill(r.text, VALUES, "text")
    assert parts[1].get_content().replace("\r\n", "\n") == fill(r.html, VALUES, "html")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))  # RFC 2045 quoted-printable
    assert b"\nSubject: Statecraft Weekly: Title of a\r\n" in b"\n" + raw  # never folded after the colon


def test_headers_a_mailbox_provider_expects(tmp_path):
    r, s = rendered(tmp_path)
    msg = parse(build_message(s, r, VALUES, now=NOW, to="zoe@example.net").as_bytes())
    assert msg["Subject"] == "Statecraft Weekly: Title of a"
    assert msg["From"] == "Statecraft Weekly <news@example.org>"
    assert msg["To"] == "Zoë Example <zoe@example.net>"
    assert msg["Reply-To"] == "editors@example.org"
    assert msg["Date"].datetime == NOW
    assert msg["Message-ID"].endswith("@example.org>")
    assert msg["List-Id"] == "Statecraft Weekly <statecraft-weekly.example.org>" == list_id(s)
    assert msg["List-Unsubscribe"] == "<https://news.example.org/unsubscribe?t=tok>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_message_ids_are_unique(tmp_path):
    r, s = rendered(tmp_path)
    ids = {build_message(s, r, VALUES, now=NOW)["Message-ID"] for _ in range(50)}
    assert len(ids) == 50


def test_no_value_can_add_a_header(tmp_path):
    r, s = rendered(tmp_path)
    evil = Rendered(subject="Hi\r\nBcc: all@example.org", html=r.html, text=r.text, warnings=())
    values = {**VALUES, "name": "Eve\nBcc: all@example.org", "unsubscribe_url": "https://x/u\r\nX-Evil: 1"}
    raw = build_message(s, evil, values, now=NOW, to="zoe@example.net").as_bytes()
    msg = parse(raw)
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert msg["Subject"] == "Hi Bcc: all@example.org"
    assert msg["List-Unsubscribe"] == "<https://x/u X-Evil: 1>"


def test_without_recipient_the_copy_is_addressed_to_nobody(tmp_path):
    r, s = rendered(tmp_path)
    msg = parse(build_message(s, r, VALUES, now=NOW).as_bytes())
    assert msg["To"] == "undisclosed-recipients:;"


# --- hostile values: nothing from a feed or a name adds a header (see tests/hostile.py) -----------


@pytest.mark.parametrize("lead", hostile.SUBJECTS)
def test_a_hostile_feed_adds_no_header_to_the_eml_that_build_writes(tmp_path, lead):
    result = build(
        settings(tmp_path, feeds=[{"url": str(hostile.FEED)}], issue={"min_items": 1}), hostile.NOW, pins=[lead]
    )
    paths = write_files(result, settings(tmp_path), tmp_path / "out", hostile.NOW)
    raw = paths["eml"].read_bytes()

    assert hostile.header_names(raw) == hostile.expected()
    msg = hostile.parsed(raw)
    assert msg["Subject"] == hostile.SUBJECTS[lead]
    assert all(ord(c) >= 32 for name, value in msg.items() for c in str(value)), msg.items()


@pytest.mark.parametrize("lead", hostile.SUBJECTS)
def test_a_hostile_title_and_name_add_no_header_to_a_recipients_message(tmp_path, lead):
    values = {**VALUES, "name": hostile.NAME, "unsubscribe_url": hostile.URL}
    raw = build_message(
        settings(tmp_path), hostile.variant(tmp_path, lead), values, now=NOW, to="eve@example.net"
    ).as_bytes()

    assert hostile.header_names(raw) == hostile.expected()
    msg = hostile.parsed(raw)
    assert msg["Subject"] == hostile.SUBJECTS[lead]
    assert msg["To"].addresses[0].display_name == hostile.NAME_SHOWN
    assert msg["To"].addresses[0].addr_spec == "eve@example.net"
    assert msg["List-Unsubscribe"] == f"<{hostile.URL_SHOWN}>"


def test_header_values_are_cleaned_after_decoding_whatever_the_header(tmp_path):
    s = settings(tmp_path)
    s = s.model_copy(
        update={"newsletter": s.newsletter.model_copy(update={"name": "=?utf-8?b?V2Vla2x5DQpYLUxpc3Q6IDE=?="})}
    )
    r = Rendered(subject="=?utf-8?q?A=00B?= =?utf-8?q?=1B[31m?=", html="<p>x</p>\n", text="x\n", warnings=())
    raw = build_message(s, r, VALUES, now=NOW, to="zoe@example.net").as_bytes()

    assert hostile.header_names(raw) == hostile.expected()
    msg = hostile.parsed(raw)
    assert msg["Subject"] == "AB[31m"
    assert msg["List-Id"].partition(" <")[0] == "Weekly X-List: 1"
