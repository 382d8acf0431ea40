"""Request bodies, read with a size limit before anything is parsed.

A body past its limit is refused (413) as soon as that is known, from ``Content-Length`` or while
streaming, so an absurd post costs neither memory nor a database call.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

from digest.web.pages import PageError

FORM_LIMIT = 64 * 1024  # a preferences form or a one-click body is a few hundred bytes
UNREADABLE = "This form could not be read"
TRY_AGAIN = "Please go back, reload the page and try again."


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) past ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PageError(413, "Request too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PageError(413, "Request too large")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request, limit: int = FORM_LIMIT) -> list[tuple[str, str]]:
    """A form-urlencoded body (what a browser posts for our forms) as (name, value) pairs, refused
    (413) past ``limit`` bytes.

    Parsed with the standard library: Starlette's own form parser needs python-multipart, a
    dependency this one form does not justify.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("", "application/x-www-form-urlencoded"):
        raise PageError(415, UNREADABLE, TRY_AGAIN)
    body = await read_body(request, limit)
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise PageError(400, UNREADABLE, TRY_AGAIN) from exc
