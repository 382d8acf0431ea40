"""Fixtures of the scheduler's tests (this folder)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from digest.schedule import jobs


@pytest.fixture(autouse=True)
def _stop_is_clear() -> Iterator[None]:
    """``jobs.STOP`` is process-global: a test that stopped a service must not leak it to the next."""
    jobs.STOP.clear()
    yield
    jobs.STOP.clear()
