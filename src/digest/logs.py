"""Logging for every command: one line per event on stderr, as text for people or JSON for machines.

Only the ``digest`` logger hierarchy is configured, never the root logger, so a program that
imports digest keeps its own logging. APScheduler's lines (missed jobs, job errors) go through the
same handler at WARNING and above, so a log collector sees one format from the scheduler process.

Text is what the CLI has always written (``digest: <message>``), with the issue key in brackets
when a record carries one (``log.info(..., extra={"issue": key})``). JSON is one object per line
(``time``, ``level``, ``logger``, ``message``, ``issue``, any other ``extra`` fields, ``error``
for a traceback): what Docker's and journald's collectors forward without guessing where an event
ends. A traceback never spans lines in JSON; in text it does only at level ``debug``, where a
person is reading.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

Format = Literal["text", "json"]

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Loggers whose records take digest's handler; apscheduler is held at WARNING and above because
# at INFO it logs every heartbeat job ("Running job ..."), twice a minute.
_DIGEST = "digest"
_APSCHEDULER = "apscheduler"
_MARK = "_digest_handler"  # set on the handler configure() installs, so a second call finds it


class TextFormatter(logging.Formatter):
    """``digest: [2026-W48] <message>``, on one line.

    A message with line breaks (an editors' notice) is joined with `` | ``: a log line per event
    is what ``grep`` and journald expect. An exception is shown as `` (Type: text)``; the full
    traceback follows only when ``tracebacks`` is set (level debug).
    """

    def __init__(self, *, tracebacks: bool = False) -> None:
        super().__init__("digest: %(message)s")
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        message = " | ".join(line for line in record.getMessage().splitlines() if line.strip())
        issue = getattr(record, "issue", None)
        line = f"digest: [{issue}] {message}" if issue else f"digest: {message}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if self.tracebacks:
                line += "\n" + self.formatException(record.exc_info)
            else:
                line += f" ({type(exc).__name__}: {exc})".replace("\n", " ")
        return line


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601 with ``Z``), ``level``, ``logger``,
    ``message``, then the record's ``extra`` fields (``issue`` among them), and ``error`` holding
    the formatted traceback when there is one. Newlines inside values are escaped by JSON, so an
    event is always exactly one line."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={
                "asctime": "time",
                "levelname": "level",
                "name": "logger",
                "exc_info": "error",
                "stack_info": "stack",
            },
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        # Lower case, as `[logging] level` spells levels; collectors match either.
        log_data["level"] = str(log_data.get("level", "")).lower()
        return log_data


def configure(format: Format = "text", level: str = "info", *, stream: TextIO | None = None) -> None:
    """Send the ``digest`` loggers (and APScheduler's warnings) to ``stream`` in ``format``.

    Safe to call again, e.g. once per command in one test process: the handler installed before is
    replaced, never added twice, so each event is written once and to the latest stream.
    ``stream`` defaults to ``sys.stderr`` as it is at call time (click's test runner swaps it).
    """
    try:
        threshold = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}") from None
    if format not in ("text", "json"):
        raise ValueError(f"unknown log format {format!r}; use text or json")

    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter(tracebacks=threshold <= logging.DEBUG))
    setattr(handler, _MARK, True)

    for name, floor in ((_DIGEST, threshold), (_APSCHEDULER, max(threshold, logging.WARNING))):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, _MARK, False)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(floor)
