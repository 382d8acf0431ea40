"""digest.logs: what an operator reads on stderr, as text and as JSON lines."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from digest import logs


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure() changes process-wide loggers; put them back so other tests see no difference."""
    saved = {
        name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers))
        for name in ("digest", "apscheduler")
    }
    root_handlers = list(logging.getLogger().handlers)
    yield
    for name, (level, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
    assert logging.getLogger().handlers == root_handlers, "configure() must leave the root logger alone"


def configured(format: logs.Format, level: str = "info") -> io.StringIO:
    stream = io.StringIO()
    logs.configure(format, level, stream=stream)
    return stream


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def raise_and_log(log: logging.Logger, message: str, **extra: object) -> None:
    try:
        raise KeyError("missing")
    except KeyError:
        log.exception(message, extra=extra)


# --- text ---------------------------------------------------------------------------------


def test_text_is_the_familiar_one_line_per_event() -> None:
    out = configured("text")
    log = logging.getLogger("digest.deliver")
    log.info("sending to %d recipient(s)", 3)
    log.warning("feed %s is down", "Statecraft")
    assert out.getvalue() == "digest: sending to 3 recipient(s)\ndigest: feed Statecraft is down\n"


def test_text_shows_the_issue_key_in_brackets() -> None:
    out = configured("text")
    logging.getLogger("digest.weekly").info("draft built: %s", "Statecraft Weekly: A", extra={"issue": "2026-W48"})
    assert out.getvalue() == "digest: [2026-W48] draft built: Statecraft Weekly: A\n"


def test_text_keeps_an_event_on_one_line() -> None:
    out = configured("text")
    log = logging.getLogger("digest.notify")
    log.warning("2026-W48 is not sent: thin week\nonly 2 articles\n", extra={"issue": "2026-W48"})
    raise_and_log(log, "could not email the editors")
    assert out.getvalue().splitlines() == [
        "digest: [2026-W48] 2026-W48 is not sent: thin week | only 2 articles",
        "digest: could not email the editors (KeyError: 'missing')",
    ]


def test_text_at_debug_shows_the_traceback() -> None:
    out = configured("text", "debug")
    raise_and_log(logging.getLogger("digest.preview"), "preview rebuild failed")
    text = out.getvalue()
    assert text.startswith("digest: preview rebuild failed\nTraceback (most recent call last):")
    assert "KeyError: 'missing'" in text


def test_level_filters_and_is_read_without_regard_to_case() -> None:
    out = configured("text", "WARNING")
    log = logging.getLogger("digest.progress")
    log.info("submitted 1000 of 5000")
    log.debug("detail")
    log.warning("rate limited; waiting 12 s")
    assert out.getvalue() == "digest: rate limited; waiting 12 s\n"


# --- JSON ---------------------------------------------------------------------------------


def test_json_is_one_object_per_line_with_the_documented_keys() -> None:
    out = configured("json")
    before = datetime.now(UTC)
    logging.getLogger("digest.weekly").info("draft built: %s", "A title", extra={"issue": "2026-W48", "articles": 12})
    logging.getLogger("digest.progress").info("submitted %d of %d", 1000, 5000)
    first, second = json_lines(out)

    assert first == {
        "time": first["time"],
        "level": "info",
        "logger": "digest.weekly",
        "message": "draft built: A title",
        "issue": "2026-W48",
        "articles": 12,
    }
    stamp = str(first["time"])
    assert stamp.endswith("Z")
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert when.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= when <= datetime.now(UTC) + timedelta(seconds=1)
    assert "issue" not in second and second["message"] == "submitted 1000 of 5000"


def test_json_puts_a_traceback_in_error_on_the_same_line() -> None:
    out = configured("json")
    raise_and_log(logging.getLogger("digest.notify"), "could not email the editors\nabout it", issue="2026-W48")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    (event,) = json_lines(out)
    assert event["level"] == "error"
    assert event["message"] == "could not email the editors\nabout it"
    assert event["issue"] == "2026-W48"
    error = str(event["error"])
    assert error.startswith("Traceback (most recent call last):") and error.endswith("KeyError: 'missing'")
    assert "exc_info" not in event and "exc_text" not in event


def test_json_writes_values_json_cannot_hold_as_text() -> None:
    from pathlib import Path

    out = configured("json")
    logging.getLogger("digest.store").warning("moved", extra={"path": Path("/data/digest.sqlite3")})
    (event,) = json_lines(out)
    assert event["path"] == "/data/digest.sqlite3"


# --- scope and idempotence ------------------------------------------------------------------


def test_apscheduler_warnings_share_the_format_and_its_chatter_is_hidden() -> None:
    out = configured("json")
    aps = logging.getLogger("apscheduler.scheduler")
    aps.info('Running job "heartbeat" (scheduled at 2026-11-27 09:00:00+00:00)')
    aps.warning('Run time of job "weekly-send" was missed by 0:03:00')
    (event,) = json_lines(out)
    assert event["logger"] == "apscheduler.scheduler" and event["level"] == "warning"


def test_other_loggers_are_left_alone() -> None:
    out = configured("text")
    logging.getLogger("httpx").warning("not ours")
    logging.getLogger("uvicorn.error").error("not ours either")
    assert out.getvalue() == ""


def test_configuring_twice_writes_each_event_once_to_the_latest_stream() -> None:
    first = configured("text")
    second = configured("text")
    third = configured("json")
    logging.getLogger("digest.deliver").info("batch 1 submitted")
    logging.getLogger("apscheduler.scheduler").error("job raised")
    assert first.getvalue() == second.getvalue() == ""
    assert [e["message"] for e in json_lines(third)] == ["batch 1 submitted", "job raised"]
    assert sum(getattr(h, "_digest_handler", False) for h in logging.getLogger("digest").handlers) == 1


def test_unknown_level_or_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        logs.configure("text", "loud")
    with pytest.raises(ValueError, match="unknown log format"):
        logs.configure(cast(Any, "xml"), "info")


def test_a_process_writes_json_lines_to_stderr_by_default() -> None:
    """The way `digest schedule` runs under Docker: nothing on stdout, JSON lines on stderr."""
    code = (
        "import logging; from digest import logs; logs.configure('json', 'info'); "
        "log = logging.getLogger('digest.schedule'); log.info('scheduler started', extra={'issue': '2026-W48'})\n"
        "try:\n    1/0\nexcept ZeroDivisionError:\n    log.exception('send failed')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == ""
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(e["level"], e["message"]) for e in events] == [("info", "scheduler started"), ("error", "send failed")]
    assert events[0]["issue"] == "2026-W48"
    assert "ZeroDivisionError" in str(events[1]["error"])
