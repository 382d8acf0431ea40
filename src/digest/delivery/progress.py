"""How a long send shows its progress: a bar on a terminal, log lines anywhere else."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("digest.progress")


class BarProgress:
    """tqdm's bar: submitted of total, rate and time left, redrawn in place on stderr."""

    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, total: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit="recipient", unit_scale=True, file=sys.stderr, dynamic_ncols=True)

    def advance(self, count: int) -> None:
        if self._bar is not None:
            self._bar.update(count)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class LogProgress:
    """One plain line per batch (for logs, cron mail, journald): done of total, rate, time left."""

    def __init__(self, issue: str = "") -> None:
        self.total = 0
        self.done = 0
        self.started = time.monotonic()
        self.extra = {"issue": issue} if issue else {}

    def start(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()
        log.info("sending to %d recipient(s)", total, extra=self.extra)

    def advance(self, count: int) -> None:
        self.done += count
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate else 0.0
        log.info("submitted %d of %d (%.0f/s, about %.0f s left)", self.done, self.total, rate, left, extra=self.extra)

    def close(self) -> None:
        return None
