from digest.text import ELLIPSIS, excerpt, join_names, one_line


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


def test_join_names_reads_like_a_byline():
    assert join_names(()) == ""
    assert join_names(("A",)) == "A"
    assert join_names(("A", "B")) == "A and B"
    assert join_names(("A", "B", "C")) == "A, B and C"
