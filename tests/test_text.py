import pytest

from digest.text import ELLIPSIS, excerpt, header_text, join_names, one_line, without_controls


def test_excerpt_cuts_at_word_boundary_within_limit():
    text = "The nations are demonstrating their commitment to security against China"
    out = excerpt(text, 40)
    assert len(out) <= 40
    assert out.endswith(ELLIPSIS)
    assert text.startswith(out[:-1])
    assert out[:-1].split()[-1] in text.split()  # no word cut in half


def test_excerpt_keeps_short_text_and_collapses_whitespace():
    assert excerpt("  Short\n\n text  ", 40) == "Short text"


def test_excerpt_does_not_end_in_punctuation_before_ellipsis():
    out = excerpt("Alpha beta, gamma delta epsilon zeta", 14)
    assert out == "Alpha beta" + ELLIPSIS


def test_excerpt_cuts_a_single_overlong_word_hard():
    out = excerpt("x" * 100, 20)
    assert out == "x" * 19 + ELLIPSIS


def test_one_line_removes_header_breaking_characters():
    assert one_line("Subject\r\nBcc: victim@example.org") == "Subject Bcc: victim@example.org"


def test_one_line_and_without_controls_drop_control_characters():
    assert one_line("A\x00B\x1b[31m C\x7f\x85") == "AB[31m C"
    assert without_controls("line one\x00\nline\ttwo\x07") == "line one\nline\ttwo"


def test_header_text_cleans_what_an_encoded_word_hides():
    assert header_text("=?utf-8?q?Hello=0D=0ABcc:_evil@example.com?=") == "Hello Bcc: evil@example.com"
    assert header_text("=?UTF-8?B?SGVsbG8NCkJjYzogeA==?=") == "Hello Bcc: x"
    assert header_text("=?utf-8?q?A=00B?=") == "AB"
    # An encoded word that decodes to another one is decoded again, until nothing changes.
    assert header_text("=?utf-8?q?=3D=3Futf-8=3Fq=3FX=3D0AY=3F=3D?=") == "X Y"
    assert header_text("=?utf-8?b?/w==?=") == "\ufffd"  # bytes that are not UTF-8: no lone surrogate
    assert header_text("Plain =? text ?=, Zoë") == "Plain =? text ?=, Zoë"


def test_header_text_defuses_encoded_words_nested_too_deep():
    value = "X=0AY"
    for _ in range(12):
        value = "=?utf-8?q?" + "".join(f"={ord(c):02X}" for c in value) + "?="
    cleaned = header_text(value)
    assert "=?" not in cleaned and header_text(cleaned) == cleaned


def test_join_names_reads_like_a_byline():
    assert join_names(()) == ""
    assert join_names(("A",)) == "A"
    assert join_names(("A", "B")) == "A and B"
    assert join_names(("A", "B", "C")) == "A, B and C"


def test_header_text_without_an_encoded_word_is_what_the_email_package_reads():
    """The shortcut for values with no ``=?`` must give what decoding would: checked against
    the email package on many values (seeded, so a failure repeats)."""
    import random
    import string
    from email.headerregistry import HeaderRegistry

    read = HeaderRegistry()
    alphabet = string.printable + "éü’—\u2028\x00\x85 "
    rng = random.Random(48)
    checked = 0
    for _ in range(3000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        shown = header_text(value)
        if "=?" in value:
            continue
        assert shown == one_line(str(read("subject", shown))), repr(value)  # decoding changes nothing
        checked += 1
    assert checked > 2000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "https://example.org/unsubscribe?t=MTI.abc-_x&i=2026-W48",
            "https://example.org/unsubscribe?t=MTI.abc-_x&i=2026-W48",
        ),
        ("Reader 7", "Reader 7"),
        (" lead", "lead"),
        ("trail ", "trail"),
        ("two  spaces", "two spaces"),
        ("tab\there", "tab here"),
        ("del\x7fete", "delete"),
        ("Zoë  Ünal", "Zoë Ünal"),
        ("=?utf-8?q?Hi=0D=0ABcc:_x?=", "Hi Bcc: x"),
        ("", ""),
    ],
)
def test_header_text_gives_plain_values_back_and_still_cleans_the_rest(value, expected):
    """Plain printable ASCII skips the cleaning (the SendGrid request has two such values per
    recipient); anything that looks plain but is not still goes through it."""
    assert header_text(value) == expected
