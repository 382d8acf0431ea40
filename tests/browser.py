"""Headless Chromium for tests: screenshots, the DOM, layout measurements and pixel checks.

Drives Debian's ``chromium`` through its command line only (``--screenshot``, ``--dump-dom``), one
short-lived process per call, each with its own throw-away profile and a timeout, so nothing is
left running and no browser-automation package is needed. Nothing reaches the internet: every
host name except the loopback ones resolves to nothing (``--host-resolver-rules``), so remote
images in an email simply fail to load, quickly.

Measuring a page (its ``scrollWidth`` at a given viewport width, images without width/height...)
needs JavaScript running next to the page. Chromium's command line cannot inject any, so the page
is loaded into an iframe of the wanted width by a small wrapper page that must come from the same
origin: wrap the ASGI app under test in ``BrowserRoutes`` (it answers a few ``/__browser__/``
paths and passes everything else through) and call ``Browser.measure(base_url, path, width=...)``.
The same middleware serves placeholder images (``image_url``), so a test can point a fixture's
remote image URLs at it and see the page with its images really loaded.

To act on a page as a person does (click a button or a checkbox, submit a form, read the page
that comes back), ``Browser.session()`` keeps one Chromium open and drives it over the DevTools
protocol on a pipe (``--remote-debugging-pipe``): real mouse clicks, no extra package. See
``Session``.

Use ``browser()`` to get a ``Browser``: it fails the test with a clear message when chromium is
missing (CI installs it; a silent skip would hide that the layout was never checked) unless the
environment sets ``DIGEST_SKIP_BROWSER=1``, in which case it skips with that reason.
"""

from __future__ import annotations

import contextlib
import functools
import html
import io
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import pytest

CHROMIUM = os.environ.get("DIGEST_CHROMIUM", "/usr/bin/chromium")
SKIP_ENV = "DIGEST_SKIP_BROWSER"
MEASURE_PATH = "/__browser__/measure"
IMAGE_PREFIX = "/__browser__/image/"
RESULT_ID = "browser-result"

# Flags for a quiet, private, offline, deterministic headless run.
BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    # Only loopback resolves: the test never depends on (or leaks to) the network.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
)


def browser(timeout: float = 30.0) -> Browser:
    """A ``Browser``; fails (or skips, with ``DIGEST_SKIP_BROWSER=1``) when chromium is missing."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"browser tests skipped: {SKIP_ENV}=1")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"browser test needs Chromium at {CHROMIUM} but it is missing: install Debian's 'chromium' "
            f"package (apt-get install chromium), point DIGEST_CHROMIUM at a binary, or set "
            f"{SKIP_ENV}=1 to skip the browser tests",
            pytrace=False,
        )
    return Browser(CHROMIUM, timeout=timeout)


class BrowserError(RuntimeError):
    """Chromium failed, timed out or produced nothing; carries the tail of its stderr."""


@dataclass(frozen=True)
class Metrics:
    """What the measuring wrapper found in the page, at one viewport width."""

    viewport_width: int
    inner_width: int
    scroll_width: int
    scroll_height: int
    title: str
    text: str
    html: str
    images: list[dict[str, Any]] = field(default_factory=list)
    overflowing: list[str] = field(default_factory=list)

    @property
    def overflows(self) -> bool:
        return self.scroll_width > self.viewport_width

    def images_without_size(self) -> list[str]:
        return [i["src"] for i in self.images if not (i["width_attr"] and i["height_attr"])]


@dataclass
class Browser:
    binary: str
    timeout: float = 30.0

    def run(self, url: str, *flags: str, width: int = 1024, height: int = 768) -> str:
        """Run chromium once on ``url`` with extra flags; returns its stdout."""
        with tempfile.TemporaryDirectory(prefix="digest-chromium-", ignore_cleanup_errors=True) as profile:
            args = [
                self.binary,
                *BASE_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                *flags,
                url,
            ]
            proc = subprocess.Popen(
                args,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its helpers share our process group: killed together
            )
            try:
                out, err = proc.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                out, err = proc.communicate()
                raise BrowserError(f"chromium timed out after {self.timeout:.0f} s on {url}{_tail(err)}") from None
            finally:
                _kill_group(proc)  # helpers that outlived the browser process
        if proc.returncode != 0:
            raise BrowserError(f"chromium exited with {proc.returncode} on {url}{_tail(err)}")
        return out.decode("utf-8", "replace")

    def dump_dom(self, url: str, *, width: int = 1024, height: int = 768) -> str:
        """The serialised DOM after the page (and its frames) loaded and its load handlers ran."""
        dom = self.run(url, "--dump-dom", width=width, height=height)
        if "<html" not in dom.lower():
            raise BrowserError(f"chromium printed no DOM for {url}")
        return dom

    def screenshot(self, url: str, path: Path, *, width: int, height: int) -> Path:
        """A PNG of the top ``height`` px of the page in a ``width`` px wide viewport."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        self.run(url, f"--screenshot={path}", width=width, height=height)
        if not path.is_file() or path.stat().st_size == 0:
            raise BrowserError(f"chromium wrote no screenshot of {url} to {path}")
        return path

    def measure(self, base_url: str, path: str, *, width: int, height: int = 900) -> Metrics:
        """Load ``path`` in a ``width`` px viewport (an iframe of the wrapper that ``BrowserRoutes``
        serves from the same origin) and measure it."""
        url = f"{base_url.rstrip('/')}{MEASURE_PATH}?path={quote(path)}&width={width}&height={height}"
        dom = self.dump_dom(url, width=width + 40, height=height)
        match = re.search(rf'<pre id="{RESULT_ID}">(.*?)</pre>', dom, re.S)
        if not match:
            raise BrowserError(f"the measuring page produced no result for {path}")
        data = json.loads(html.unescape(match.group(1)))
        if "error" in data:
            raise BrowserError(f"measuring {path} failed in the page: {data['error']}")
        return Metrics(**data)

    def session(self, *, width: int = 1024, height: int = 768) -> Session:
        """A browser kept open to drive a page like a person: open a URL, click a button or a
        checkbox (real mouse events at the element's place on the screen), read the DOM. Use it
        as a context manager; see ``Session``."""
        return Session(self.binary, timeout=self.timeout, width=width, height=height)


# --- Driving a page: the DevTools protocol over a pipe -----------------------------------------


# Where to click an element: its centre, after scrolling it into view; or why it cannot be clicked.
_CLICK_POINT = """(() => {
  const el = document.querySelector(SELECTOR);
  if (!el) return null;
  el.scrollIntoView({block: 'center'});
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) return 'hidden';
  const x = r.left + r.width / 2, y = r.top + r.height / 2;
  const hit = document.elementFromPoint(x, y);
  if (hit !== el && !el.contains(hit)) return 'covered by ' + (hit ? hit.tagName.toLowerCase() : 'nothing');
  return [x, y];
})()"""


class Session:
    """One headless Chromium driven over the Chrome DevTools Protocol (CDP) on a pipe.

    ``--remote-debugging-pipe`` makes Chromium read commands on fd 3 and write answers on fd 4,
    each a JSON object ended by a NUL byte: no port, no websocket client, nothing to install.
    Clicks are real mouse events (``Input.dispatchMouseEvent``) at the centre of the element, so
    a button that is hidden, covered or outside the page cannot be clicked by accident, and a form
    is submitted by the browser itself (its own encoding, the page's CSP ``form-action`` applied).
    Reading the page uses ``Runtime.evaluate``, which DevTools runs whatever the page's CSP says.

        with chromium.session(width=375) as page:
            page.open(url)
            page.click_and_wait("button[type=submit]")
            assert "unsubscribed" in page.dom()
    """

    def __init__(self, binary: str, *, timeout: float = 30.0, width: int = 1024, height: int = 768) -> None:
        self.binary = binary
        self.timeout = timeout
        self.width = width
        self.height = height
        self.proc: subprocess.Popen[bytes] | None = None
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self._to_browser = -1
        self._from_browser = -1
        self._buffer = b""
        self._next_id = 0
        self._session_id = ""
        self.events: list[dict[str, Any]] = []

    # -- lifecycle --

    def __enter__(self) -> Session:
        self._profile = tempfile.TemporaryDirectory(prefix="digest-chromium-", ignore_cleanup_errors=True)
        commands_read, commands_write = os.pipe()  # we write, chromium reads on its fd 3
        answers_read, answers_write = os.pipe()  # chromium writes on its fd 4, we read
        os.set_inheritable(commands_read, True)
        os.set_inheritable(answers_write, True)

        def remap() -> None:  # in the child, before exec: put the two ends where chromium looks
            os.dup2(commands_read, 3)
            os.dup2(answers_write, 4)

        args = [
            self.binary,
            *BASE_FLAGS,
            f"--user-data-dir={self._profile.name}",
            f"--window-size={self.width},{self.height}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self._to_browser, self._from_browser = commands_write, answers_read
        try:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(3, 4),
                preexec_fn=remap,
                start_new_session=True,  # its helpers share our process group: killed together
            )
        except BaseException:
            self.close()
            raise
        finally:
            os.close(commands_read)  # chromium has its copies; ours would keep the pipe open
            os.close(answers_write)
        try:
            targets = self.call("Target.getTargets", browser=True)["targetInfos"]
            page = next((t for t in targets if t.get("type") == "page"), None)
            target_id = (
                page["targetId"]
                if page
                else self.call("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
            )
            attached = self.call("Target.attachToTarget", {"targetId": target_id, "flatten": True}, browser=True)
            self._session_id = attached["sessionId"]
            self.call("Page.enable")
            # The window cannot be narrower than 500 px in headless mode: emulate the screen instead,
            # as a phone (its viewport meta honoured) when it is phone-sized.
            self.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": self.width <= 480},
            )
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(BrowserError, OSError):
                self.call("Browser.close", browser=True, timeout=5)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            _kill_group(self.proc)  # helpers that outlived the browser process
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            self.proc = None
        for fd in (self._to_browser, self._from_browser):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._to_browser = self._from_browser = -1
        if self._profile is not None:
            self._profile.cleanup()
            self._profile = None

    # -- the protocol --

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send one CDP command (to the page, or with ``browser`` to the browser) and return its
        result; events that arrive meanwhile are kept in ``events``."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if not browser:
            message["sessionId"] = self._session_id
        data = json.dumps(message).encode("utf-8") + b"\0"
        while data:
            data = data[os.write(self._to_browser, data) :]
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            answer = self._read(deadline, f"the answer to {method}")
            if answer.get("id") == message["id"]:
                if "error" in answer:
                    raise BrowserError(f"{method} failed: {answer['error'].get('message', answer['error'])}")
                return dict(answer.get("result", {}))
            if "method" in answer:
                self.events.append(answer)

    def wait_for_event(self, method: str, *, timeout: float | None = None) -> dict[str, Any]:
        """The first ``method`` event seen since the last ``clear_events`` (waiting for it)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for event in self.events:
                if event["method"] == method:
                    self.events.remove(event)
                    return event
            message = self._read(deadline, f"the event {method}")
            if "method" in message:
                self.events.append(message)

    def clear_events(self) -> None:
        self.events.clear()

    def _read(self, deadline: float, what: str) -> dict[str, Any]:
        import select

        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"chromium did not send {what} within {self.timeout:.0f} s")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise BrowserError(f"chromium closed the DevTools pipe while we waited for {what}")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return dict(json.loads(raw))

    # -- what a person does --

    def open(self, url: str) -> None:
        """Load ``url`` and wait for its load event."""
        self.clear_events()
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"chromium could not open {url}: {result['errorText']}")
        self.wait_for_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (DevTools is not bound by its CSP)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"evaluating {expression!r} failed: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def click(self, selector: str) -> None:
        """Click the element ``selector`` matches with the mouse, where it is drawn."""
        where = self.evaluate(_CLICK_POINT.replace("SELECTOR", json.dumps(selector)))
        if where is None:
            raise BrowserError(f"nothing in the page matches {selector!r}")
        if isinstance(where, str):
            raise BrowserError(f"{selector!r} cannot be clicked: it is {where}")
        x, y = where
        self.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def click_and_wait(self, selector: str) -> None:
        """Click something that loads a new page (a submit button, a link) and wait for it."""
        self.clear_events()
        self.click(selector)
        self.wait_for_event("Page.loadEventFired")

    def dom(self) -> str:
        """The page's DOM as HTML now."""
        return str(self.evaluate("document.documentElement.outerHTML"))

    def url(self) -> str:
        return str(self.evaluate("location.href"))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _tail(err: bytes, lines: int = 8) -> str:
    text = err.decode("utf-8", "replace").strip().splitlines()
    useful = [line for line in text if "dbus" not in line.lower()][-lines:]
    return (":\n" + "\n".join(useful)) if useful else ""


# --- The measuring wrapper: an ASGI middleware answering one extra path -----------------------

_MEASURE_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>measure</title>
<style>html,body{margin:0;padding:0}iframe{border:0;display:block}</style></head>
<body><iframe id="frame" src="%(src)s" width="%(width)d" height="%(height)d"
style="width:%(width)dpx;height:%(height)dpx"></iframe><pre id="%(result_id)s">pending</pre>
<script>
(function () {
  var frame = document.getElementById('frame');
  var out = document.getElementById('%(result_id)s');
  frame.addEventListener('load', function () {
    try {
      var win = frame.contentWindow, doc = frame.contentDocument, root = doc.documentElement;
      var vw = %(width)d, over = [];
      doc.querySelectorAll('body *').forEach(function (el) {
        var r = el.getBoundingClientRect();
        if (r.width > 0 && r.right > vw + 0.5 && over.length < 10) {
          over.push(el.tagName.toLowerCase() + (el.className ? '.' + String(el.className).split(' ').join('.') : '')
                    + ' right=' + Math.round(r.right));
        }
      });
      var images = Array.prototype.map.call(doc.images, function (img) {
        return {src: img.getAttribute('src') || '', alt: img.getAttribute('alt'),
                width_attr: img.getAttribute('width'), height_attr: img.getAttribute('height'),
                rendered_width: Math.round(img.getBoundingClientRect().width),
                loaded: img.complete && img.naturalWidth > 0};
      });
      out.textContent = JSON.stringify({
        viewport_width: vw, inner_width: win.innerWidth,
        scroll_width: Math.max(root.scrollWidth, doc.body ? doc.body.scrollWidth : 0),
        scroll_height: root.scrollHeight, title: doc.title,
        text: doc.body ? doc.body.innerText : '', html: root.outerHTML, images: images, overflowing: over
      });
    } catch (e) {
      out.textContent = JSON.stringify({error: String(e)});
    }
  });
})();
</script></body></html>
"""


def image_url(base_url: str, width: int, height: int, name: str = "image") -> str:
    """A placeholder image of that size, served by ``BrowserRoutes``."""
    return f"{base_url.rstrip('/')}{IMAGE_PREFIX}{width}x{height}/{quote(name)}"


class BrowserRoutes:
    """ASGI middleware for browser tests: the measuring wrapper at ``MEASURE_PATH`` and
    placeholder images under ``IMAGE_PREFIX``; every other request goes to the app."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == MEASURE_PATH:
            query = parse_qs(scope.get("query_string", b"").decode())
            page = _MEASURE_PAGE % {
                "src": html.escape(query.get("path", ["/"])[0]),
                "width": int(query.get("width", ["600"])[0]),
                "height": int(query.get("height", ["900"])[0]),
                "result_id": RESULT_ID,
            }
            await _respond(send, 200, "text/html; charset=utf-8", page.encode("utf-8"))
        elif path.startswith(IMAGE_PREFIX):
            size, _, name = path.removeprefix(IMAGE_PREFIX).partition("/")
            match = re.fullmatch(r"(\d{1,4})x(\d{1,4})", size)
            if not match:
                await _respond(send, 404, "text/plain", b"bad placeholder size")
                return
            png = placeholder_png(int(match.group(1)), int(match.group(2)), name)
            await _respond(send, 200, "image/png", png)
        else:
            await self.app(scope, receive, send)


async def _respond(send: Any, status: int, content_type: str, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


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


@contextlib.contextmanager
def serve_app(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Run an ASGI app with uvicorn in a thread on a free port; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


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
