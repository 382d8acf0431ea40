"""UTM tagging of the links in an email, so the publisher's analytics can tell the newsletter's visits.

It must leave the parts of a URL it does not own exactly as they were (other query parameters,
their order, fragments), because publishers' links carry meaning in them. Comparing URLs
(canonical forms) is the feeds' business: ``digest.feeds.urls``.
"""

from __future__ import annotations

from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urlsplit, urlunsplit


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
