"""The email's colours, declared once for light and dark mode, and the WCAG contrast they must keep.

The templates read every colour from here (``palette.light.ink``, ``palette.dark.muted``...), so
the pairs a reader sees (``TEXT_PAIRS``: a text colour on the background it is drawn on) can be
checked in one place, in both modes. The accent comes from ``[render] accent``; where it is too
light (or, in dark mode, too dark) to read as text, it is mixed towards black (or white) until it
reaches WCAG's 4.5:1, and the renderer says so in a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

MIN_TEXT_CONTRAST = 4.5  # WCAG 2.x AA, body text

# (text colour, background) as the templates use them: every text role on every surface it sits on.
TEXT_PAIRS: tuple[tuple[str, str], ...] = (
    ("ink", "card"),
    ("text", "card"),
    ("muted", "card"),
    ("accent", "card"),
    ("ink", "panel"),
    ("text", "panel"),
    ("muted", "panel"),
    ("accent", "panel"),
    ("muted", "page"),
)


@dataclass(frozen=True, slots=True)
class Colours:
    """One mode's colours, by role."""

    page: str  # around the 600 px column
    card: str  # the column itself
    panel: str  # the editor's note and "In this issue"
    ink: str  # headlines, the masthead
    text: str  # excerpts, the note
    muted: str  # bylines, dates, credits, the footer
    accent: str  # labels, section names, "Keep reading"
    rule: str  # lines between parts (not text)
    plate: str  # behind the logo, in both modes: logos are drawn for a light background

    def pairs(self) -> list[tuple[str, str, str, float]]:
        """Every text pair as (text role, background role, text colour on background, ratio)."""
        out = []
        for fg, bg in TEXT_PAIRS:
            a, b = getattr(self, fg), getattr(self, bg)
            out.append((fg, bg, f"{a} on {b}", contrast(a, b)))
        return out


LIGHT = Colours(
    page="#f2f1ee",
    card="#ffffff",
    panel="#f6f4ef",
    ink="#111111",
    text="#222222",
    muted="#595959",
    accent="#9b1c1c",
    rule="#dddddd",
    plate="#ffffff",
)
DARK = Colours(
    page="#0e0e0e",
    card="#1b1b1b",
    panel="#262626",
    ink="#f4f4f4",
    text="#e2e2e2",
    muted="#b3b3b3",
    accent="#f08a8a",
    rule="#3a3a3a",
    plate="#ffffff",
)


@dataclass(frozen=True, slots=True)
class Palette:
    light: Colours
    dark: Colours
    adjusted: tuple[str, ...] = ()  # what had to change for the accent to be readable, one line each


def palette(accent: str) -> Palette:
    """The palette with ``accent`` as the light-mode accent and a readable counterpart for dark mode."""
    adjusted = []
    light_accent = readable(accent, [LIGHT.card, LIGHT.panel], towards="#000000")
    if light_accent != accent:
        adjusted.append(
            f"[render] accent {accent} has only {contrast(accent, LIGHT.card):.1f}:1 contrast on white; "
            f"{light_accent} is used for text so it reaches {MIN_TEXT_CONTRAST}:1"
        )
    dark_accent = readable(accent, [DARK.card, DARK.panel], towards="#ffffff")
    return Palette(
        light=replace(LIGHT, accent=light_accent),
        dark=replace(DARK, accent=dark_accent),
        adjusted=tuple(adjusted),
    )


def readable(colour: str, backgrounds: list[str], *, towards: str, minimum: float = MIN_TEXT_CONTRAST) -> str:
    """``colour`` itself when it reaches ``minimum`` on every background, else the least mix of it
    with ``towards`` (black or white) that does."""
    for step in range(0, 101):
        mixed = mix(colour, towards, step / 100)
        if all(contrast(mixed, bg) >= minimum for bg in backgrounds):
            return mixed
    return towards


def mix(a: str, b: str, amount: float) -> str:
    """``a`` moved ``amount`` (0..1) of the way to ``b``, in sRGB."""
    ra, rb = _rgb(a), _rgb(b)
    return "#" + "".join(f"{round(x + (y - x) * amount):02x}" for x, y in zip(ra, rb, strict=True))


def contrast(a: str, b: str) -> float:
    """WCAG 2.x contrast ratio of two #rrggbb colours, 1.0 to 21.0."""
    la, lb = luminance(a), luminance(b)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def luminance(colour: str) -> float:
    """WCAG relative luminance of a #rrggbb colour."""

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in _rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _rgb(colour: str) -> tuple[int, int, int]:
    value = colour.lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
