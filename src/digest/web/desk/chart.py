"""The history's chart of subscribers week by week, as plain SVG geometry for a template.

Server-rendered, so the desk needs no charting script: ``line_chart`` works out where each
week's point goes in a fixed ``viewBox`` (the browser scales it to the page's width), with a
few round ticks on the y axis and a label every few weeks on the x axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from digest.delivery.desk import Week

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 32  # room for the axes' labels


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    week: str
    active: int


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    points: tuple[Point, ...]
    y_ticks: tuple[tuple[float, int], ...]  # (y, value)
    x_labels: tuple[tuple[float, str, str], ...]  # (x, week, text-anchor)
    baseline: float

    @property
    def line(self) -> str:
        """The polyline's ``points`` attribute."""
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)

    @property
    def summary(self) -> str:
        """What the chart shows, in words, for screen readers."""
        if not self.points:
            return "No weeks to show."
        first, last = self.points[0], self.points[-1]
        return f"Active subscribers from {first.week} ({first.active}) to {last.week} ({last.active})."


def _step(top: int) -> int:
    """A round tick step (1, 2 or 5 times a power of ten) giving about four ticks up to ``top``."""
    raw = max(1.0, top / 4)
    power = 10 ** math.floor(math.log10(raw))
    return int(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def line_chart(weeks: list[Week]) -> Chart:
    top = max((w.active for w in weeks), default=0)
    step = _step(top)
    ceiling = max(step, math.ceil(top / step) * step)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    baseline = TOP + inner_h

    def x(i: int) -> float:
        return LEFT + (inner_w * i / (len(weeks) - 1) if len(weeks) > 1 else inner_w / 2)

    def y(value: int) -> float:
        return baseline - inner_h * value / ceiling

    points = tuple(Point(x(i), y(w.active), w.key, w.active) for i, w in enumerate(weeks))
    every = max(1, math.ceil(len(weeks) / 6))
    last = len(points) - 1
    labels = tuple(
        (p.x, p.week, "end" if i == last and last else "middle")
        for i, p in enumerate(points)
        if i == last or (i % every == 0 and last - i >= every / 2)  # no two labels on top of each other
    )
    ticks = tuple((y(v), v) for v in range(0, ceiling + 1, step))
    return Chart(WIDTH, HEIGHT, points, ticks, labels, baseline)
