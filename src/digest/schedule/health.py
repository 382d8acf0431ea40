"""`digest health`: is a scheduler alive on this database? Read by the container HEALTHCHECK.

Kept apart from the service so the check, run every minute beside a busy scheduler, loads
neither APScheduler nor anything that writes.
"""

from __future__ import annotations

import time

from digest.config import Settings

HEARTBEAT_SECONDS = 30  # how often a running scheduler records that it is alive


def health(settings: Settings, *, max_age: float | None = None) -> tuple[bool, str]:
    """Whether a scheduler has beaten within ``max_age`` seconds (default: four beats), and why.

    It only reads: no migration, nothing written.
    """
    from digest.store import Store, make_engine

    max_age = 4 * HEARTBEAT_SECONDS if max_age is None else max_age
    store = Store(make_engine(settings.database_url))
    try:
        beat = store.runs.last_beat()
    except Exception as exc:  # no database yet, or not migrated: not healthy, and say why
        return False, f"cannot read the scheduler's heartbeat: {type(exc).__name__}"
    finally:
        store.close()
    if beat is None:
        return False, "no scheduler has ever run against this database"
    holder, at = beat
    age = time.time() - at.timestamp()
    if age > max_age:
        return False, f"the scheduler ({holder}) last beat {age:.0f} s ago"
    return True, f"the scheduler ({holder}) beat {age:.0f} s ago"
