"""The long-running weekly scheduler (APScheduler), its jobs and its heartbeat.

``send_job`` and ``review_job`` are reached from here because the job store names them
``digest.schedule:send_job`` and ``digest.schedule:review_job`` (see service.JOB_FUNCTIONS).
They are looked up only when asked for, so `digest health` does not load the jobs' imports.
"""

from __future__ import annotations

from typing import Any

__all__ = ["review_job", "send_job"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from digest.schedule import jobs

        return getattr(jobs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
