"""The small values the pipeline names things with: an issue's key and a subscriber's sections."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from digest.models import ALL_SECTIONS, IssueKey, SectionChoice
from factories import NOW, article

SECTIONS = ("Asia-Pacific", "Europe", "Middle East", "Also this week")


def test_issue_key_is_iso_week_in_newsletter_zone():
    ny = ZoneInfo("America/New_York")
    assert str(IssueKey.at(NOW, ny)) == "2026-W48"
    # 03:00 UTC Monday is still Sunday evening in New York: the previous ISO week.
    assert str(IssueKey.at(datetime(2026, 11, 30, 3, 0, tzinfo=UTC), ny)) == "2026-W48"
    assert str(IssueKey.at(datetime(2026, 11, 30, 3, 0, tzinfo=UTC), ZoneInfo("UTC"))) == "2026-W49"
    # ISO year differs from calendar year at the turn of the year.
    assert str(IssueKey.at(datetime(2026, 12, 31, 12, tzinfo=UTC), ZoneInfo("UTC"))) == "2026-W53"
    assert str(IssueKey.at(datetime(2027, 1, 1, 12, tzinfo=UTC), ZoneInfo("UTC"))) == "2026-W53"
    assert str(IssueKey.at(datetime(2026, 1, 5, 12, tzinfo=UTC), ZoneInfo("UTC"))) == "2026-W02"


def test_issue_key_parses_what_it_prints_and_orders_by_week():
    assert IssueKey.parse("2026-W48") == IssueKey(2026, 48)
    assert IssueKey.parse(" 2026-w05 ") == IssueKey(2026, 5)  # typed by hand: case and spaces do not matter
    assert str(IssueKey.parse("2026-w05")) == "2026-W05"
    assert sorted([IssueKey(2027, 1), IssueKey(2026, 53), IssueKey(2026, 9)]) == [
        IssueKey(2026, 9),
        IssueKey(2026, 53),
        IssueKey(2027, 1),
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2026-48", "is not an issue key; issue keys are ISO weeks like 2026-W48"),
        ("W48", "is not an issue key"),
        ("2026-W48; drop", "is not an issue key"),
        ("", "is not an issue key"),
        ("2025-W53", "2025 has no ISO week 53"),  # 2025 has 52 weeks; 2026 has 53
        ("2026-W00", "2026 has no ISO week 0"),
    ],
)
def test_a_mistyped_issue_key_is_refused_saying_what_a_key_looks_like(text, problem):
    with pytest.raises(ValueError, match=problem):
        IssueKey.parse(text)


def test_a_choice_is_matched_to_the_configured_names_without_regard_to_case():
    choice = SectionChoice.of(["middle east", " EUROPE ", "Europe"], SECTIONS)
    assert choice.names == ("Middle East", "Europe")  # configured spelling, as chosen, once each
    assert choice.sections == ("Europe", "Middle East")  # what the reader gets: config order
    assert (choice.variant, choice.everything) == ("2,3", False)


def test_every_section_or_none_still_configured_is_the_whole_issue():
    for names in ([], list(SECTIONS), ["Arctic"], ["asia-pacific", "europe", "middle east", "also this week"]):
        choice = SectionChoice.of(names, SECTIONS)
        assert choice.everything, names
        assert (choice.variant, choice.sections) == (ALL_SECTIONS, SECTIONS)
        assert choice.normalised().names == ()  # stored as none, so sections added later come too
    renamed = SectionChoice.of(["Arctic", "Europe"], SECTIONS)  # a section renamed since is ignored
    assert (renamed.variant, renamed.sections) == ("2", ("Europe",))


def test_a_variant_name_gives_back_its_sections():
    for names in (["Middle East", "Asia-Pacific"], ["Also this week"], []):
        choice = SectionChoice.of(names, SECTIONS)
        again = SectionChoice.of_variant(choice.variant, SECTIONS)
        assert again.sections == choice.sections and again.variant == choice.variant
    assert SectionChoice.of(["Europe", "Asia-Pacific"], SECTIONS).normalised().names == ("Asia-Pacific", "Europe")


def test_a_typed_choice_splits_on_either_separator_and_refuses_an_unknown_name():
    assert SectionChoice.parse("Asia-Pacific; europe | Middle East;;", SECTIONS).names == (
        "Asia-Pacific",
        "Europe",
        "Middle East",
    )
    assert SectionChoice.parse("  ", SECTIONS).everything
    with pytest.raises(ValueError, match=r"unknown section 'Arctic' \(known: Asia-Pacific, Europe, Middle East, "):
        SectionChoice.parse("Europe; Arctic", SECTIONS)
    with pytest.raises(ValueError, match="unknown section 'Arctic'"):
        SectionChoice.of(["Arctic"], SECTIONS, strict=True)


# --- what the ledger keeps of an issue ----------------------------------------------------------


def _issue():
    from datetime import timedelta

    from digest.models import Issue, Section, Window
    from factories import article

    lead, other = article("lead"), article("other", categories=("Europe",), image=False)
    return Issue(
        key="2026-W48",
        window=Window(NOW - timedelta(days=7), NOW),
        sections=(Section("Asia-Pacific", (lead,)), Section("Europe", (other,))),
        lead=lead,
        ranked=(lead, other),
    )


def test_an_issue_record_gives_back_the_same_issue_and_keeps_no_build_json():
    import json

    from digest.models import issue_of_record, issue_record

    issue = _issue()
    record = json.loads(json.dumps(issue_record(issue, ["feed down"])))  # as the database keeps it
    assert set(record) == {"issue", "warnings"}
    assert record["warnings"] == ["feed down"]
    assert issue_of_record(record) == issue


def test_an_issue_recorded_by_an_earlier_release_is_still_read():
    from digest.models import issue_of_record, issue_to_data

    issue = _issue()
    # Earlier releases kept the `build --json` object, with the issue's data beside it.
    earlier = {"issue": "2026-W48", "subject": "S", "sections": [], "warnings": [], "issue_data": issue_to_data(issue)}
    assert issue_of_record(earlier) == issue
    assert issue_of_record({"issue": "2026-W48", "warnings": []}) is None  # recorded without its articles
    assert issue_of_record({}) is None


def test_the_editors_note_survives_the_recorded_snapshot():
    from dataclasses import replace as _replace

    from digest.models import Issue, Section, Window, issue_from_data, issue_to_data

    a = article("a")
    issue = Issue(key="2026-W48", window=Window(NOW, NOW), sections=(Section("Asia-Pacific", (a,)),), lead=a)
    noted = _replace(issue, note="A **busy** week.")
    assert issue_from_data(issue_to_data(noted)).note == "A **busy** week."
    assert "note" not in issue_to_data(issue)  # no note: the recorded data is as before


def test_an_arranged_section_order_and_the_editors_subject_and_preheader_survive_the_record():
    from dataclasses import replace as _replace

    from digest.models import Issue, Section, Window, issue_from_data, issue_to_data

    first, second, third = article("a", hours_ago=1), article("b", hours_ago=2), article("c", hours_ago=3)
    ranked = (first, second, third)
    issue = Issue(
        key="2026-W48", window=Window(NOW, NOW), sections=(Section("Asia-Pacific", ranked),), lead=first, ranked=ranked
    )
    assert "arranged" not in issue_to_data(issue)  # in rank order: recorded as before
    moved = _replace(issue, sections=(Section("Asia-Pacific", (third, first, second)),), subject="S", preheader="P")
    back = issue_from_data(issue_to_data(moved))
    assert [a.id for a in back.articles] == ["id-c", "id-a", "id-b"]
    assert [a.id for a in back.ranked] == ["id-a", "id-b", "id-c"]
    assert (back.subject, back.preheader) == ("S", "P")
