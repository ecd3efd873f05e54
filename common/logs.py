"""Structured logs for both programs: JSON lines to a rotating file, readable lines on
the console, a correlation id carried through contextvars, and redaction of card
numbers, secrets and customer contact on every handler.

Standard library only, so the relay can use it without importing the agent.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import logging.handlers
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from .redact import redact_text, redact_value

__all__ = [
    "ConsoleFormatter",
    "JsonFormatter",
    "RedactionFilter",
    "SafeRotatingFileHandler",
    "bind",
    "configure_logging",
    "correlation_id",
    "new_correlation_id",
]

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar(
    "tillbridge_log_context",
    default={},  # noqa: B039 - never mutated, only replaced
)

# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}


def new_correlation_id() -> str:
    """A fresh correlation id (hex uuid4)."""
    return uuid.uuid4().hex


def correlation_id() -> str | None:
    """The correlation id bound in the current context, if any."""
    return _context.get().get("correlation_id")


@contextlib.contextmanager
def bind(**fields: str) -> Iterator[None]:
    """Attach fields (correlation_id, file, batch_id, …) to every log line in this context."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class RedactionFilter(logging.Filter):
    """Rewrites a record so no card number, secret or contact detail reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):
            return True
        record.msg = redact_text(record.getMessage())
        record.args = None
        for key, value in _extras(record).items():
            setattr(record, key, redact_value(value, key))
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        record.exc_info = None
        record._redacted = True
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, context fields, extras."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_context.get())
        doc.update(_extras(record))
        if record.exc_text:
            doc["error_trace"] = record.exc_text
        return json.dumps(doc, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """`12:04:05 INFO  Batch acknowledged. store=0042 seq=17` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {**_context.get(), **_extras(record)}
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = f"{when} {record.levelname:<7} {record.getMessage()}"
        if tail:
            line = f"{line} {tail}"
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        return line


class SafeRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating file handler whose rollover survives Windows' file locking.

    On Windows a file that another process holds open (a technician's editor, an
    antivirus scan) cannot be renamed. Rollover then copies the file and truncates
    it instead; if even that fails, writing goes on in the current file and the
    rollover is tried again later. No line is ever dropped for a rollover.
    """

    def rotate(self, source: str, dest: str) -> None:
        try:
            os.replace(source, dest)
        except PermissionError:
            try:
                shutil.copyfile(source, dest)
                with open(source, "r+b") as handle:
                    handle.truncate(0)
            except OSError:
                return  # keep writing to the current file; the next rollover tries again

    def doRollover(self) -> None:
        try:
            super().doRollover()
        except OSError:
            # A backup could not be renamed: keep the current file open and carry on.
            if self.stream is None:
                self.stream = self._open()


CHATTY_LOGGERS = ("apscheduler", "aiomqtt", "paho", "httpx", "httpcore", "watchdog")

MQTT_CLIENT_LOGGER = "mqtt"
"""aiomqtt's logger, where paho's own lines arrive: a connection reset is an ERROR there
("failed to receive on socket"), though the uplink and intake handle it and say so in
their own words. Its lines are debug lines, shown only when debug is asked for."""


class DemoteToDebug(logging.Filter):
    """Re-level a library's lines to DEBUG; drop them unless debug is on."""

    def __init__(self, debug: bool) -> None:
        super().__init__()
        self.debug = debug

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self.debug


def configure_logging(
    *,
    level: str = "info",
    file: Path | None = None,
    max_bytes: int = 10 * 1024 * 1024,
    backups: int = 5,
    console: bool = True,
    console_stream: TextIO | None = None,
) -> None:
    """Set up the root logger: redacted JSON lines to `file`, readable lines to the console.

    Only the daemon passes `file` (one writer per log file); commands log to the console.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level.upper())
    # Libraries' routine lines ("Running job …", "… executed successfully": most of an
    # idle agent's log) only when asked for debug.
    for chatty in CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(
            logging.NOTSET if level.lower() == "debug" else logging.WARNING
        )
    client_logger = logging.getLogger(MQTT_CLIENT_LOGGER)
    for old in [f for f in client_logger.filters if isinstance(f, DemoteToDebug)]:
        client_logger.removeFilter(old)
    client_logger.addFilter(DemoteToDebug(level.lower() == "debug"))
    redaction = RedactionFilter()
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = SafeRotatingFileHandler(
            file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        file_handler.addFilter(redaction)
        file_handler.setFormatter(JsonFormatter())
        root.addHandler(file_handler)
    if console:
        console_handler = logging.StreamHandler(console_stream or sys.stderr)
        console_handler.addFilter(redaction)
        console_handler.setFormatter(ConsoleFormatter())
        root.addHandler(console_handler)
