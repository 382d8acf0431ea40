import pytest

from digest.errors import EmptyIssueError
from digest.issue import rank
from factories import NOW, article, settings


def test_window_is_the_days_before_the_run(tmp_path):
    s = settings(tmp_path)
    inside = article("inside", hours_ago=24 * 7 - 1)
    too_old = article("old", hours_ago=24 * 7 + 1)
    future = article("future", hours_ago=-1)
    other = article("other", hours_ago=2)
    at_start = article("at-start", hours_ago=24 * 7)  # belongs to the previous week's issue
    at_run = article("at-run", hours_ago=0)  # e.g. an undated item first seen by this run
    issue = rank.build_issue([inside, too_old, future, other, at_start, at_run], s, NOW)
    assert {a.id for a in issue.articles} == {"id-inside", "id-other", "id-at-run"}
    assert issue.window.end == NOW


def test_article_goes_to_first_matching_section_only(tmp_path):
    s = settings(tmp_path)
    both = article("both", categories=("military industrial complex", "asia-pacific"))
    mic = article("mic", categories=("Military Industrial Complex",))
    issue = rank.build_issue([both, mic], s, NOW)
    names = {sec.name: [a.id for a in sec.articles] for sec in issue.sections}
    assert names == {"Asia-Pacific": ["id-both"], "Military Industrial Complex": ["id-mic"]}


def test_unmatched_articles_left_out_or_go_to_catch_all(tmp_path):
    arts = [article("a"), article("africa", categories=("Africa",))]
    without = rank.build_issue(arts, settings(tmp_path), NOW)
    assert [a.id for a in without.articles] == ["id-a"]
    s = settings(tmp_path, issue={"catch_all": "Also this week", "min_items": 1})
    issue = rank.build_issue(arts, s, NOW)
    assert [sec.name for sec in issue.sections] == ["Asia-Pacific", "Also this week"]
    assert [a.id for a in issue.sections[-1].articles] == ["id-africa"]


def test_ranking_pins_then_featured_then_newest_and_limit(tmp_path):
    s = settings(tmp_path, issue={"pins": ["https://example.org/old-pinned/?utm_source=x"]})
    arts = [
        article("newest", hours_ago=1),
        article("newer", hours_ago=5),
        article("featured", hours_ago=50, categories=("Asia-Pacific", "Featured")),
        article("old-pinned", hours_ago=100),
        article("oldest", hours_ago=120),
    ]
    issue = rank.build_issue(arts, s, NOW)
    ids = [a.id for a in issue.sections[0].articles]
    assert ids == ["id-old-pinned", "id-featured", "id-newest"]  # limit 3 drops the rest


def test_editor_pins_and_excludes_for_one_issue(tmp_path):
    s = settings(tmp_path)
    arts = [article("a", hours_ago=1), article("b", hours_ago=2), article("c", hours_ago=3)]
    issue = rank.build_issue(arts, s, NOW, pins=["https://example.org/c"], exclude=["https://example.org/a"])
    assert [a.id for a in issue.articles] == ["id-c", "id-b"]


def test_lead_is_top_ranked_article_with_image(tmp_path):
    s = settings(tmp_path)
    arts = [
        article("no-image-newest", hours_ago=1, image=False),
        article("mic-with-image", hours_ago=2, categories=("Military Industrial Complex",)),
        article("asia-with-image", hours_ago=3),
    ]
    issue = rank.build_issue(arts, s, NOW)
    assert issue.lead is not None and issue.lead.id == "id-mic-with-image"


def test_no_lead_when_no_article_has_an_image(tmp_path):
    issue = rank.build_issue([article("a", image=False), article("b", image=False)], settings(tmp_path), NOW)
    assert issue.lead is None


def test_thin_week_is_flagged_with_a_plain_warning(tmp_path):
    s = settings(tmp_path, issue={"min_items": 3})
    issue = rank.build_issue([article("a"), article("b")], s, NOW)
    assert issue.thin
    assert issue.warnings == ("thin week: 2 article(s), fewer than [issue] min_items = 3; it will not be sent",)


def test_empty_window_raises_instead_of_building_an_empty_issue(tmp_path):
    with pytest.raises(EmptyIssueError, match="no articles published between"):
        rank.build_issue([article("old", hours_ago=24 * 30)], settings(tmp_path), NOW)


def test_the_empty_window_is_named_in_the_newsletters_zone(tmp_path):
    # NOW is 14:00 UTC, 09:00 in New York: the message gives the local times and names the zone.
    with pytest.raises(EmptyIssueError) as caught:
        rank.build_issue([article("old", hours_ago=24 * 30)], settings(tmp_path), NOW)
    assert "between 2026-11-20 09:00 and 2026-11-27 09:00 (America/New_York) in 1 feed(s)" in str(caught.value)
    assert "UTC" not in str(caught.value)


def test_a_window_whose_articles_were_all_left_out_says_so(tmp_path):
    articles = [article("a"), article("b")]
    with pytest.raises(EmptyIssueError) as caught:
        rank.build_issue(articles, settings(tmp_path), NOW, exclude=[a.url for a in articles])
    assert str(caught.value).startswith(
        "no new articles published between 2026-11-20 09:00 and 2026-11-27 09:00 (America/New_York): "
        "all 2 were already sent in an earlier issue or excluded by an editor; nothing to build"
    )


def test_undated_article_counts_from_when_it_was_first_seen(tmp_path):
    undated = article("undated", hours_ago=2, published=False)
    issue = rank.build_issue([undated, article("b")], settings(tmp_path), NOW)
    assert "id-undated" in {a.id for a in issue.articles}


def test_editors_moves_arrange_a_section_without_making_a_new_lead(tmp_path):
    s = settings(tmp_path)
    newest, middle, oldest = article("new", hours_ago=1), article("mid", hours_ago=5), article("old", hours_ago=9)
    plain = rank.build_issue([newest, middle, oldest], s, NOW)
    assert [a.id for a in plain.articles] == ["id-new", "id-mid", "id-old"] and plain.lead == newest
    moved = rank.build_issue([newest, middle, oldest], s, NOW, order=[oldest.url, newest.url])
    assert [a.id for a in moved.articles] == ["id-old", "id-new", "id-mid"]  # moved ones first, in their order
    assert moved.lead == newest  # the lead is still the best-ranked article with an image
    pinned = rank.build_issue([newest, middle, oldest], s, NOW, pins=[middle.url], order=[oldest.url])
    assert [a.id for a in pinned.articles] == ["id-mid", "id-old", "id-new"]  # pins above moves
