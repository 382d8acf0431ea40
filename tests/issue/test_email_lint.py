"""The email against its clients and its readers: caniemail's checks per client, and colour contrast.

These run for real: without node or the npm packages of tools/email-lint (``npm ci --prefix
tools/email-lint``, which .ci/run does) the lint tests fail with the reason, they never skip.
"""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from lxml import html as lxml_html

from digest.config import load
from digest.issue import build as pipeline
from digest.issue import rank
from digest.issue.lint import CLIENTS, ENHANCEMENTS, STRICT, LintUnavailable, lint
from digest.issue.palette import MIN_TEXT_CONTRAST, TEXT_PAIRS, contrast, palette
from digest.issue.render import Renderer
from factories import NOW, article, settings

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_NOW = datetime.fromisoformat("2026-11-27T09:00-05:00")


@pytest.fixture(scope="module")
def sample_html(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The bundled sample's HTML part, built from a copy of the checkout's config and feeds."""
    work = tmp_path_factory.mktemp("sample")
    shutil.copy(ROOT / "config.toml", work / "config.toml")
    shutil.copytree(ROOT / "examples", work / "examples")
    return pipeline.build(load(work / "config.toml"), SAMPLE_NOW).rendered.html


def test_gmail_and_apple_mail_support_everything_and_outlook_only_misses_named_enhancements(sample_html):
    report = lint(sample_html)
    assert report.tool == "@jsx-email/doiuse-email 1.0.4"
    assert {c.client for c in report.clients} == set(CLIENTS)
    for c in report.clients:
        if c.client in STRICT:
            assert c.errors == {}, f"{c.name} does not support {c.errors}"
        else:
            unlisted = set(c.errors) - set(ENHANCEMENTS)
            assert not unlisted, f"{c.name}: {unlisted} is not a named progressive enhancement"
    assert report.ok
    # What the issue used to have for Outlook for Windows is gone: outline, opacity.
    assert not {"outline", "opacity"} & set(report.client("outlook.windows").errors)
    assert all(len(reason) > 40 for reason in ENHANCEMENTS.values()), "each enhancement says why"


def test_the_lint_fails_when_a_template_uses_what_gmail_cannot_show(tmp_path):
    custom = tmp_path / "mine"
    custom.mkdir()
    css = (ROOT / "templates" / "email" / "style.css").read_text(encoding="utf-8")
    (custom / "style.css").write_text(css.replace(".thumb-col {", ".thumb-col { position: relative;"), encoding="utf-8")
    s = settings(tmp_path, render={"templates": "mine"})
    arts = [article("a", hours_ago=1), article("b", hours_ago=2)]
    report = lint(Renderer(s).render(rank.build_issue(arts, s, NOW)).html)
    assert not report.ok
    assert report.client("gmail.desktop-webmail").problems == {"position": 1}
    assert report.client("outlook.windows").problems == {"position": 1}


def test_the_lint_says_why_it_cannot_run(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(LintUnavailable, match=r"^node is not installed; install Node\.js"):
        lint("<html><body>x</body></html>")


# --- contrast ----------------------------------------------------------------------------------


@pytest.mark.parametrize("accent", ["#9b1c1c", "#1f5fad", "#ffcc00", "#00ff00", "#000080"])
def test_every_text_colour_reaches_4_5_to_1_on_its_background_in_both_modes(accent):
    p = palette(accent)
    for mode in (p.light, p.dark):
        for fg, bg, pair, ratio in mode.pairs():
            assert ratio >= MIN_TEXT_CONTRAST, f"{fg} on {bg}: {pair} is {ratio:.2f}:1"
    assert len(p.light.pairs()) == len(TEXT_PAIRS)


def test_contrast_is_wcags():
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # the old credit grey: too light


def _colour(style: str, prop: str) -> str | None:
    found = re.search(rf"(?:^|;)\s*{prop}\s*:\s*(#[0-9a-fA-F]{{3,6}})", style or "")
    return found.group(1) if found else None


def light_text_pairs(html: str) -> list[tuple[str, str, str]]:
    """(text, its colour, the background it is drawn on) for every element with its own text, read
    from the inlined styles as a client without a <style> block sees them."""
    doc = lxml_html.fromstring(html)
    out = []
    for el in doc.iter():
        if not isinstance(el.tag, str) or el.tag in ("style", "title", "head", "meta", "html"):
            continue
        own = (el.text or "").strip()
        if not own or any(a.get("class") == "preheader" for a in [el, *el.iterancestors()]):
            continue
        chain = [el, *el.iterancestors()]
        fg = next((c for a in chain if (c := _colour(a.get("style", ""), "color"))), "#000000")
        bg = next((c for a in chain if (c := _colour(a.get("style", ""), "background-color"))), "#ffffff")
        out.append((own[:40], fg, bg))
    return out


def test_the_rendered_issue_keeps_4_5_to_1_for_all_its_text(sample_html):
    pairs = light_text_pairs(sample_html)
    assert len(pairs) > 50
    low = [(t, fg, bg, round(contrast(fg, bg), 2)) for t, fg, bg in pairs if contrast(fg, bg) < MIN_TEXT_CONTRAST]
    assert not low, low


def test_the_contrast_check_catches_a_template_that_greys_out_text(tmp_path):
    custom = tmp_path / "mine"
    custom.mkdir()
    css = (ROOT / "templates" / "email" / "style.css").read_text(encoding="utf-8")
    (custom / "style.css").write_text(
        css.replace("color: {{ c.muted }}; margin: 0 0 6px 0;", "color: #999999; margin: 0 0 6px 0;"), encoding="utf-8"
    )
    s = settings(tmp_path, render={"templates": "mine"})
    html = Renderer(s).render(rank.build_issue([article("a", hours_ago=1), article("b", hours_ago=2)], s, NOW)).html
    low = [t for t, fg, bg in light_text_pairs(html) if contrast(fg, bg) < MIN_TEXT_CONTRAST]
    assert low and all(t.startswith("By Ana Author") for t in low)


def test_the_sample_stays_well_under_gmails_clip(sample_html):
    assert len(sample_html.encode("utf-8")) < 45 * 1024
