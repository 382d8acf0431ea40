"""What the browser tests need beside Playwright: the app under test served on loopback,
placeholder images for remote ones, and pixel checks of screenshots.

Playwright (pytest-playwright's ``page`` fixture, launched on Debian's chromium by
``tests/conftest.py``) drives the page; this module only serves it and judges the pictures.
"""

from __future__ import annotations

import contextlib
import functools
import io
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Route

from digest.listen import listen
from digest.listen import url as url_for

HOST = "127.0.0.1"
PLACEHOLDER_SIZE = (1200, 675)  # a wide photo, the shape of the sample's lead images


@contextlib.contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn in a thread on a free loopback port; yields its base URL
    (without the trailing slash)."""
    import uvicorn

    sock = listen(HOST, 0)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:  # uvicorn has no "started" event to wait on
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        yield url_for(HOST, sock.getsockname()[1]).rstrip("/")
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def answer_with_placeholder(route: Route) -> None:
    """A Playwright route handler: answer an image request with a placeholder PNG, so a page whose
    images live on hosts the tests cannot reach is laid out with its images really loaded."""
    width, height = PLACEHOLDER_SIZE
    png = placeholder_png(width, height, urlsplit(route.request.url).path)
    route.fulfill(status=200, content_type="image/png", body=png, headers={"cache-control": "no-store"})


@functools.lru_cache(maxsize=64)
def placeholder_png(width: int, height: int, name: str = "") -> bytes:
    """A flat-coloured PNG with a frame and a diagonal: plainly an image, plainly not a photo."""
    from PIL import Image, ImageDraw

    hue = zlib.crc32(name.encode()) % 5
    fill = ((70, 96, 140), (96, 120, 80), (140, 90, 70), (110, 80, 130), (60, 110, 120))[hue]
    img = Image.new("RGB", (width, height), fill)
    draw = ImageDraw.Draw(img)
    inset = max(2, min(width, height) // 20)
    line = max(1, min(width, height) // 100)
    draw.rectangle((inset, inset, width - inset, height - inset), outline=(255, 255, 255), width=line)
    draw.line((inset, inset, width - inset, height - inset), fill=(255, 255, 255), width=line)
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


# --- Pixel checks (Pillow) --------------------------------------------------------------------


def _rgb(path: Path) -> Any:
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def content_fraction(path: Path, background: tuple[int, int, int] | None = None) -> float:
    """Share of pixels that differ from the background (default: the top-left pixel's colour)."""
    from PIL import Image, ImageChops

    img = _rgb(path)
    bg = background or img.getpixel((0, 0))
    diff = ImageChops.difference(img, Image.new("RGB", img.size, bg)).convert("L")
    differing = sum(diff.histogram()[25:])
    return differing / max(1, img.width * img.height)


def is_blank(path: Path) -> bool:
    """True when the screenshot is one flat colour (or nearly): nothing was drawn."""
    img = _rgb(path)
    colors = img.getcolors(maxcolors=1 << 16)
    if colors is not None and len(colors) <= 2:
        return True
    return content_fraction(path) < 0.005


def right_edge_clear(path: Path, strip: int = 6, tolerance: int = 24) -> list[int]:
    """Rows whose rightmost ``strip`` px are not one flat colour: something (text, an image) is
    drawn into the right edge, i.e. cut off. Full-width rules and backgrounds pass. Returns the
    offending row numbers (empty when the edge is clear)."""
    img = _rgb(path)
    width, height = img.size
    bad = []
    for y in range(height):
        row = [img.getpixel((x, y)) for x in range(width - strip, width)]
        if any(_distance(p, row[0]) > tolerance for p in row[1:]):
            bad.append(y)
    return bad


def _distance(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return max(abs(x - y) for x, y in zip(a, b, strict=False))
