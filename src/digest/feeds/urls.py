"""The canonical form of an article's URL, which decides when two feed items are the same article.

It lives with the feeds because they de-duplicate with it; the issue (editors' pins and
exclusions, already-sent articles) compares URLs the same way by importing it from here.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Query parameters that identify a click, not a page: ignored when comparing URLs.
TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "_hsenc", "_hsmi", "igshid", "ref_src"}
)


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith("utm_") or lowered in TRACKING_PARAMS


def canonical_url(url: str) -> str:
    """The URL two feeds would agree on for the same article.

    Lower-cased scheme and host, default port and fragment dropped, tracking parameters removed,
    a trailing slash on the path ignored. Used only as a key: links shown keep their own form,
    and every other part (the other query parameters and their order) is kept as it was.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port if parts.port and (scheme, parts.port) not in {("http", 80), ("https", 443)} else None
    netloc = f"{host}:{port}" if port else host
    path = parts.path.rstrip("/") or "/"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)]
    return urlunsplit((scheme, netloc, path, urlencode(query), ""))
