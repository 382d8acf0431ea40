"""What an issue looks like to its readers, for the people who check it before it goes out.

``snapshot`` turns what ``weekly.outgoing`` says would be sent into the parts a reviewer looks
at: the inbox card (from, subject, preheader), each variant's HTML and text filled with the
preview recipient values, its .eml, its size against Gmail's clip, and the build's warnings.
`digest preview` and the web desk both show this, so they cannot disagree about an issue.
"""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr

from digest.config import Settings
from digest.delivery.weekly import Outgoing
from digest.issue import build as pipeline
from digest.issue.lint import LintReport
from digest.issue.message import build_message
from digest.issue.rank import restrict
from digest.issue.render import Rendered, fill, format_dates
from digest.models import ALL_SECTIONS, Issue, SectionChoice

# The desktop frame is wider than the 600 px column so the email's phone rules (its @media
# breakpoint is 599 px) do not apply: it shows what a desktop mail client shows.
DESKTOP_WIDTH = 680
PHONE_WIDTH = 375
GMAIL_CLIP_BYTES = 102 * 1024


@dataclass(frozen=True, slots=True)
class Variant:
    """One variant of the issue as its readers get it, filled with the preview recipient values."""

    name: str  # "all", or the chosen sections' positions in config order ("1,3")
    label: str
    subject: str
    preheader: str
    count: int
    sections: tuple[tuple[str, int], ...]
    lead_title: str
    html: str
    text: str
    eml: bytes

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One good build: the whole issue first, then each variant subscribers' choices call for.

    ``unsent`` names the variants whose sections have no article this week: their readers are
    sent nothing. ``recorded`` is the recorded issue's status when the snapshot is the recorded
    one (draft, approved, sending, sent), None for a fresh build.
    """

    key: str
    from_name: str
    from_email: str
    dates: str
    thin: bool
    warnings: tuple[str, ...]
    built_at: datetime
    variants: tuple[Variant, ...]
    unsent: tuple[str, ...] = ()
    recorded: str | None = None
    lint: LintReport | None = None  # the whole issue's client lint
    lint_unavailable: str | None = None  # why there is no lint, when there is none

    @property
    def whole(self) -> Variant:
        """The issue every subscriber who chose no sections gets."""
        return self.variants[0]

    def variant(self, name: str | None) -> Variant | None:
        """The variant called ``name`` (the whole issue for None or ``all``); None if there is none."""
        return next((v for v in self.variants if v.name == (name or ALL_SECTIONS)), None)

    # The whole issue's parts: what most readers get, and what the page shows first.
    @property
    def subject(self) -> str:
        return self.whole.subject

    @property
    def preheader(self) -> str:
        return self.whole.preheader

    @property
    def count(self) -> int:
        return self.whole.count

    @property
    def sections(self) -> tuple[tuple[str, int], ...]:
        return self.whole.sections

    @property
    def lead_title(self) -> str:
        return self.whole.lead_title

    @property
    def html(self) -> str:
        return self.whole.html

    @property
    def text(self) -> str:
        return self.whole.text

    @property
    def eml(self) -> bytes:
        return self.whole.eml

    @property
    def html_bytes(self) -> int:
        return self.whole.html_bytes


_PREHEADER = re.compile(r'<div class="preheader"[^>]*>(.*?)</div>', re.S)


def snapshot(settings: Settings, out: Outgoing, now: datetime) -> Snapshot:
    """What ``out`` looks like to its readers at run time ``now``: the whole issue first, then each
    variant, every one filled with the preview recipient values (no one's links)."""
    issue = out.issue
    zone = settings.newsletter.zone
    from_name, from_email = parseaddr(settings.newsletter.from_address)
    variants = [variant_of(settings, ALL_SECTIONS, issue, out.whole, now)]
    unsent = []
    for name, rendered in out.variants.items():
        part = restrict(issue, SectionChoice.of_variant(name, settings.section_names).sections)
        if rendered is None or part is None:
            unsent.append(label(settings, name))
        else:
            variants.append(variant_of(settings, name, part, rendered, now))
    return Snapshot(
        key=issue.key,
        from_name=from_name or settings.newsletter.name,
        from_email=from_email,
        dates=format_dates(issue.window.start.astimezone(zone), issue.window.end.astimezone(zone)),
        thin=issue.thin,
        warnings=out.warnings,
        built_at=datetime.now(UTC),
        variants=tuple(variants),
        unsent=tuple(unsent),
        recorded=out.recorded,
    )


def variant_of(settings: Settings, name: str, issue: Issue, rendered: Rendered, now: datetime) -> Variant:
    """One variant filled with the preview recipient values; ``issue`` holds its own sections."""
    values = pipeline.preview_values(settings)
    page = fill(rendered.html, values, "html")
    found = _PREHEADER.search(page)
    first = issue.lead or (issue.articles[0] if issue.articles else None)
    return Variant(
        name=name,
        label=label(settings, name),
        subject=rendered.subject,
        preheader=" ".join(html_lib.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split()) if found else "",
        count=len(issue.articles),
        sections=tuple((s.name, len(s.articles)) for s in issue.sections),
        lead_title=first.title if first else "",
        html=page,
        text=fill(rendered.text, values, "text"),
        eml=build_message(settings, rendered, values, now=now).as_bytes(),
    )


def label(settings: Settings, name: str) -> str:
    choice = SectionChoice.of_variant(name, settings.section_names)
    return "All sections" if choice.everything else " + ".join(choice.sections)
