"""The .eml parsed back with Python's email package, part by part, as a mail client would."""

from email import message_from_bytes, message_from_string, policy

import pytest

import hostile
from digest.issue import rank
from digest.issue.build import build, write_files
from digest.issue.message import MessageTemplate, build_message, list_id
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


# --- the template SMTP sends from: the same message as build_message, without building one each time ---

AWKWARD = {
    "non-ASCII name": {**VALUES, "name": "Zoë Ñandú 東京"},
    "markup in a name": {**VALUES, "name": "Eve <&\"> O'Neil"},
    "empty name": {**VALUES, "name": ""},
    "dots and equals at line starts": {
        **VALUES,
        "name": ".Dot =Equals",
        "unsubscribe_url": "." + "x" * 74 + ".y=z" + "=" * 80,
    },
    "very long links": {
        **VALUES,
        "unsubscribe_url": "https://news.example.org/unsubscribe?t=" + "A1b2=." * 300,
        "preferences_url": "https://news.example.org/p?" + "&".join(f"k{i}=v{i}" for i in range(200)),
    },
    "spaces and tabs at the ends": {**VALUES, "name": " Spaced\tName \t"},
    "a line break and a percent (built the slow way)": {**VALUES, "name": "Two\nLines 100%"},
}
# A variant whose placeholders sit at line starts, line ends, side by side, and just before the end.
EDGES = Rendered(
    subject="Edges",
    html='%%name%%<p>.%%email%%</p>\n<a href="%%unsubscribe_url%%">x</a>%%preferences_url%%\n. \n%%name%%.',
    text="%%name:text%%\n.%%email:text%% =\n%%unsubscribe_url:text%%%%preferences_url:text%%\r\nend\r%%name:text%%;",
    warnings=(),
)


def same_message(template_bytes: bytes, reference: bytes, *, templated: bool = True) -> None:
    """The two parse to the same headers (the random Message-ID and MIME boundary aside) and the
    same decoded parts, and the template's lines keep to RFC 5322 and RFC 2045. A templated
    message (not one the template left to build_message) has no line starting with a dot."""
    got, want = parse(template_bytes), parse(reference)

    def headers(msg) -> list[tuple[str, str]]:
        return [(k, str(v)) for k, v in msg.items() if k not in ("Message-ID", "Content-Type")]

    assert headers(got) == headers(want)
    assert got.get_content_type() == want.get_content_type() == "multipart/alternative"
    assert got["Message-ID"] != want["Message-ID"] and got["Message-ID"].endswith("@example.org>")
    for mine, theirs in zip(got.iter_parts(), want.iter_parts(), strict=True):
        assert list(mine.items()) == list(theirs.items())
        assert mine.get_content() == theirs.get_content()
    head, _, body = template_bytes.partition(b"\r\n\r\n")
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    if templated:  # nothing for SMTP to stuff
        assert not template_bytes.startswith(b".") and b"\n." not in template_bytes
    assert (
        template_bytes.endswith(b"--\r\n")
        and b"\r\n" in template_bytes
        and b"\n" not in template_bytes.replace(b"\r\n", b"")
    )


@pytest.mark.parametrize("case", AWKWARD)
def test_the_template_gives_build_messages_message_for_awkward_values(tmp_path, case):
    r, s = rendered(tmp_path)
    values = AWKWARD[case]
    template = MessageTemplate.of(s, r)

    for variant, tpl in ((r, template), (EDGES, MessageTemplate.of(s, EDGES, "[TEST] "))):
        prefix = tpl.subject_prefix
        raw = tpl.render(values, now=NOW, to="zoe@example.net")
        reference = build_message(s, variant, values, now=NOW, to="zoe@example.net", subject_prefix=prefix)
        same_message(raw, reference.as_bytes(), templated="slow way" not in case)


@pytest.mark.parametrize("name", ["Reader", ""])
def test_a_part_ending_with_a_placeholder_still_gives_build_messages_message(tmp_path, name):
    s = settings(tmp_path)
    odd = Rendered(subject="Odd", html="<p>Hi</p>\n%%name%%", text="Hi\n%%name:text%%", warnings=())
    values = {**VALUES, "name": name}
    raw = MessageTemplate.of(s, odd).render(values, now=NOW, to="zoe@example.net")
    same_message(raw, build_message(s, odd, values, now=NOW, to="zoe@example.net").as_bytes(), templated=False)


def test_the_templates_header_lines_are_build_messages_byte_for_byte(tmp_path):
    r, s = rendered(tmp_path)
    names = (
        "Reader 1",
        "Reader <1>",
        "Zoë",
        "O'Neil",
        "Mr. Smith",
        "",
        "a  b",
        "=?utf-8?q?x?=",
        "a?b=c",
        "Word " * 150,
    )
    links = ("https://x.example/u?t=" + "a" * 900, "https://x.example/u?t=a b", "https://x.example/" + "b" * 1200)
    for name, link in [(n, VALUES["unsubscribe_url"]) for n in names] + [("Reader", link) for link in links]:
        values = {**VALUES, "name": name, "unsubscribe_url": link}
        mine = MessageTemplate.of(s, r).render(values, now=NOW, to="zoe@example.net")
        theirs = build_message(s, r, values, now=NOW, to="zoe@example.net").as_bytes()

        def head(raw: bytes) -> list[bytes]:
            lines = raw.partition(b"\r\n\r\n")[0].split(b"\r\n")
            return [line for line in lines if not line.startswith((b"Message-ID:", b"Content-Type:", b" boundary"))]

        assert head(mine) == head(theirs), name


def test_a_non_ascii_address_gets_build_messages_message_in_utf8(tmp_path):
    r, s = rendered(tmp_path)
    raw = MessageTemplate.of(s, r).render(VALUES, now=NOW, to="zoë@example.net")
    msg = message_from_string(raw.decode("utf-8"), policy=policy.default)  # RFC 6532: UTF-8 headers
    assert msg["To"].addresses[0].addr_spec == "zoë@example.net"
    reference = parse(build_message(s, r, VALUES, now=NOW, to="zoë@example.net").as_bytes())
    assert [p.get_content() for p in msg.iter_parts()] == [p.get_content() for p in reference.iter_parts()]


def test_a_test_copy_template_is_marked_and_an_empty_unsubscribe_link_drops_its_headers(tmp_path):
    r, s = rendered(tmp_path)
    values = {**VALUES, "unsubscribe_url": ""}
    raw = MessageTemplate.of(s, r, "[TEST] ").render(values, now=NOW, to="zoe@example.net")
    msg = parse(raw)
    assert msg["Subject"] == "[TEST] Statecraft Weekly: Title of a"
    assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None
    same_message(raw, build_message(s, r, values, now=NOW, to="zoe@example.net", subject_prefix="[TEST] ").as_bytes())
