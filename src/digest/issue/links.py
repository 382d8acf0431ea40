"""URL handling in one place: canonical forms for de-duplication and UTM tagging for the email.

Both must leave the parts of a URL they do not own exactly as they were (other query parameters,
their order, fragments), because publishers' links carry meaning in them.
"""

from __future__ import annotations

from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urlsplit, urlunsplit

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
    a trailing slash on the path ignored. Used only as a key: links shown keep their own form.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port if parts.port and (scheme, parts.port) not in {("http", 80), ("https", 443)} else None
    netloc = f"{host}:{port}" if port else host
    path = parts.path.rstrip("/") or "/"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)]
    return urlunsplit((scheme, netloc, path, urlencode(query), ""))


def add_utm(url: str, params: dict[str, str]) -> str:
    """Add ``utm_*`` parameters to an http(s) link, keeping its query and fragment intact.

    Parameters the link already carries win: a publisher who tagged a link on purpose keeps it.
    Non-web links (``mailto:``, relative or empty) are returned unchanged.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"http", "https"} or not params:
        return url
    existing = parse_qsl(parts.query, keep_blank_values=True)
    present = {k.lower() for k, _ in existing}
    extra = [(k, v) for k, v in params.items() if k.lower() not in present and v]
    if not extra:
        return url
    query = f"{parts.query}&{urlencode(extra, quote_via=quote)}" if parts.query else urlencode(extra, quote_via=quote)
    return urlunsplit(SplitResult(parts.scheme, parts.netloc, parts.path, query, parts.fragment))
