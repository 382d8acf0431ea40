from digest.feeds.urls import canonical_url
from digest.issue.links import add_utm

UTM = {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "2026-W48"}


def test_canonical_url_ignores_tracking_case_fragment_and_trailing_slash():
    a = canonical_url("HTTPS://Example.org:443/2026/11/story/?utm_source=rss&id=3&fbclid=x#comments")
    b = canonical_url("https://example.org/2026/11/story?id=3")
    assert a == b == "https://example.org/2026/11/story?id=3"


def test_canonical_url_keeps_meaningful_query():
    assert canonical_url("https://e.org/a?p=1") != canonical_url("https://e.org/a?p=2")


def test_add_utm_to_plain_link():
    assert add_utm("https://e.org/a", UTM) == (
        "https://e.org/a?utm_source=newsletter&utm_medium=email&utm_campaign=2026-W48"
    )


def test_add_utm_keeps_existing_query_and_fragment():
    out = add_utm("https://e.org/a?id=3&x=a%20b#part-2", UTM)
    assert out == "https://e.org/a?id=3&x=a%20b&utm_source=newsletter&utm_medium=email&utm_campaign=2026-W48#part-2"


def test_add_utm_keeps_the_publishers_own_utm_values():
    out = add_utm("https://e.org/a?utm_source=partner", UTM)
    assert "utm_source=partner" in out
    assert "utm_source=newsletter" not in out
    assert "utm_campaign=2026-W48" in out


def test_add_utm_leaves_non_web_links_alone():
    assert add_utm("mailto:editors@e.org", UTM) == "mailto:editors@e.org"
    assert add_utm("/relative", UTM) == "/relative"
