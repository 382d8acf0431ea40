"""The sample issue in Debian's chromium, its images loaded from a local server: at 600 and 375 px,
light and dark. What a reader would notice: something cut off or wider than the screen, an image
not at its size, text too faint to read, and an issue twice as long as it needs to be."""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from browsing import is_blank, placeholder_png, right_edge_clear
from digest.config import load
from digest.issue import build as pipeline
from digest.issue.palette import MIN_TEXT_CONTRAST
from digest.issue.render import Renderer, fill

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path("/tmp/email-shots")  # kept for a person to look at
SAMPLE_NOW = datetime.fromisoformat("2026-11-27T09:00-05:00")
SAMPLE_MEDIA = "https://responsiblestatecraft.example/media/"
HEIGHT_BEFORE = 8150  # px: the sample at 600 px before the compact layout (every card a 560 px image)
NOTE = "A week of **arms deals and second thoughts**. Start with the lead, then [the archive](https://example.org/a)."

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The sample issue with an editor's note at <base>/issue.html and as built (no note) at
    <base>/sample.html; its images at <base>/media/: 1200 x 675 placeholder PNGs, the shape of
    the sample's photos."""
    work = tmp_path_factory.mktemp("sample")
    shutil.copy(ROOT / "config.toml", work / "config.toml")
    shutil.copytree(ROOT / "examples", work / "examples")
    settings = load(work / "config.toml")
    issue = pipeline.build(settings, SAMPLE_NOW).issue
    values = pipeline.preview_values(settings)
    noted = fill(Renderer(settings).render(replace(issue, note=NOTE)).html, values, "html")
    as_built = fill(Renderer(settings).render(issue).html, values, "html")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path in pages:
                body, kind = pages[self.path].encode("utf-8"), "text/html; charset=utf-8"
            elif self.path.startswith("/media/"):
                body, kind = placeholder_png(1200, 675, self.path), "image/png"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    pages = {
        "/issue.html": noted.replace(SAMPLE_MEDIA, f"{base}/media/"),
        "/sample.html": as_built.replace(SAMPLE_MEDIA, f"{base}/media/"),
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()


# Everything measured in one pass: size, overflow, clipping, images, and each text's contrast
# (its computed colour on the first opaque background behind it).
_MEASURE = """() => {
  const vw = window.innerWidth, root = document.documentElement;
  const rgb = s => { const m = s.match(/[\\d.]+/g) || []; return m.map(Number); };
  const lum = c => { const f = v => { v /= 255; return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
                     return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const background = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const texts = [], clipped = [], over = [];
  document.querySelectorAll('body *').forEach(el => {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > vw + 0.5) over.push(el.tagName + '.' + el.className + ' right=' + Math.round(r.right));
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || r.width === 0 || getComputedStyle(el).display === 'none' || el.closest('.preheader')) return;
    if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0) {
      clipped.push(el.tagName + ': ' + el.textContent.trim().slice(0, 40));
    }
    const fg = rgb(getComputedStyle(el).color).slice(0, 3), bg = background(el);
    const [a, b] = [lum(fg), lum(bg)];
    texts.push({text: el.textContent.trim().slice(0, 40), ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)});
  });
  const img = el => {
    const r = el.getBoundingClientRect();
    return {src: el.getAttribute('src'), cls: el.className, width: Math.round(r.width), height: Math.round(r.height),
            w: +el.getAttribute('width'), h: +el.getAttribute('height'), alt: el.getAttribute('alt'),
            loaded: el.complete && el.naturalWidth > 0};
  };
  const pad = el => parseFloat(getComputedStyle(el).paddingLeft) + parseFloat(getComputedStyle(el).paddingRight);
  const lead = document.querySelector('td.lead');
  return {scroll_width: Math.max(root.scrollWidth, document.body.scrollWidth), height: root.scrollHeight,
          lead_inner: lead.clientWidth - pad(lead),
          images: [...document.images].map(img), texts, clipped, over: over.slice(0, 10)};
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [600, 375])
def test_the_issue_in_chromium(browser: Browser, served: str, tmp_path: Path, width: int, scheme: str) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
    try:
        page = context.new_page()
        page.goto(f"{served}/issue.html", wait_until="load")
        m = page.evaluate(_MEASURE)
        shot = tmp_path / f"email-{width}-{scheme}.png"
        page.screenshot(path=shot, full_page=True)
        page.goto(f"{served}/sample.html", wait_until="load")
        sample_height = page.evaluate("document.documentElement.scrollHeight")
    finally:
        context.close()
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SHOTS / shot.name)

    assert m["scroll_width"] <= width, f"horizontal overflow at {width} px: {m['over']}"
    assert not m["over"], m["over"]
    assert not m["clipped"], f"text cut off: {m['clipped']}"
    assert not is_blank(shot)
    cut = right_edge_clear(shot)
    assert not cut, f"something is drawn into the right edge at {width} px (rows {cut[:5]}...)"

    images = m["images"]
    assert images and all(i["loaded"] for i in images), [i["src"] for i in images if not i["loaded"]]
    assert all(i["alt"] for i in images), "every content image has alt text"
    lead, *thumbs = images
    assert lead["cls"] == "fluid" and lead["width"] == round(m["lead_inner"]), "the lead image fills the column"
    assert thumbs and all(t["cls"] == "thumb" for t in thumbs)
    assert all((t["width"], t["height"]) == (t["w"], t["h"]) for t in thumbs), "thumbnails at their declared size"

    low = [t for t in m["texts"] if t["ratio"] < MIN_TEXT_CONTRAST]
    assert not low, f"text under {MIN_TEXT_CONTRAST}:1 in {scheme} mode: {low[:5]}"
    assert any("arms deals" in t["text"] for t in m["texts"]), "the editor's note is shown"
    if width == 600:
        assert sample_height <= HEIGHT_BEFORE / 2, (
            f"{sample_height} px tall at 600 px, more than half of {HEIGHT_BEFORE}"
        )
