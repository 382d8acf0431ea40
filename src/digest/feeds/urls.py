"""URLs as the feeds give them: made absolute, and put in the canonical form that decides when two
feed items are the same article.

Canonical URLs live with the feeds because they de-duplicate with them; the issue (editors' pins
and exclusions, already-sent articles) compares URLs the same way by importing them from here.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# Most of a long feed's links: lower-case http(s), a plain lower-case host, no port, no query
# and no fragment. Such a URL is already absolute, and its canonical form is read off it
# directly, exactly as the general path would give it (tests/feeds/test_urls.py compares them).
_PLAIN = re.compile(r"(https?://[a-z0-9.-]+)(/[A-Za-z0-9_.~%/-]*)?")

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
    plain = _PLAIN.fullmatch(url)
    if plain is not None:  # a long feed's ids pass here by the thousand: skip the parsing
        return plain[1] + ((plain[2] or "").rstrip("/") or "/")
    return _canonical(url)


def _canonical(url: str) -> str:
    """``canonical_url`` for any URL, by parsing it."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port if parts.port and (scheme, parts.port) not in {("http", 80), ("https", 443)} else None
    netloc = f"{host}:{port}" if port else host
    path = parts.path.rstrip("/") or "/"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)]
    return urlunsplit((scheme, netloc, path, urlencode(query), ""))


def is_plain(url: str) -> bool:
    """Whether ``url`` is a plain absolute link: lower-case http(s), a plain lower-case host, no
    port, query or fragment, nothing to escape. Such a link is absolute whatever the base, and
    resolving it against any base gives it back unchanged."""
    return _PLAIN.fullmatch(url) is not None


def has_scheme(value: str) -> bool:
    """Whether ``value`` starts with a URI scheme (``https:``, ``mailto:``, ``tag:``...), i.e. is not relative."""
    return bool(_SCHEME.match(value))


def absolute_url(href: str, base: str, site: str = "") -> str:
    """``href`` as an absolute http(s) URL, resolved against ``base`` then the site; else "".

    A feed's links reach readers' mail programs, which cannot resolve a relative link, and any
    other scheme (``javascript:``, ``data:``) is no link to follow: both give "".
    """
    if is_plain(href):  # absolute already, whatever the base
        return href
    return _absolute(href, base, site)


def _absolute(href: str, base: str, site: str) -> str:
    """``absolute_url`` for any reference, by resolving it."""
    href = href.strip()
    if not href:
        return ""
    for root in (base, site):
        candidate = urljoin(root, href) if root else href
        parts = urlsplit(candidate)
        if parts.scheme in {"http", "https"} and parts.netloc:
            return candidate
    return ""
