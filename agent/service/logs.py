"""Logging: one JSON object per line for machines (journald), readable lines for people.

Modules log through ``logging.getLogger("fair_agent...")`` and pass context as ``extra=``; the
fields below are lifted out of the record into the JSON object when present.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

CONTEXT_FIELDS = (
    "batch_id",
    "session",
    "file",
    "sequence",
    "attempt",
    "category",
    "error_class",
    "task",
    "root",
    "files",
    "bytes",
    "delay_s",
    "sha256",
    "parts",
    "parts_sent",
    "parts_resumed",
    "already_stored",
    "lost",
    "backlog_files",
    "processes",
    "pid",
    "exit_status",
)


def _task_name() -> str:
    """The asyncio task logging, or the thread when it is not on the event loop."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop in this thread (a worker thread)
        task = None
    return task.get_name() if task is not None else threading.current_thread().name


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        entry.setdefault("task", _task_name())
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS level event key=value ...`` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        context = " ".join(
            f"{name}={record.__dict__[name]}"
            for name in CONTEXT_FIELDS
            if record.__dict__.get(name) is not None
        )
        line = f"{stamp} {record.levelname.lower():7} {record.getMessage()}" + (
            f"  {context}" if context else ""
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(
    level: str = "info", *, stream: TextIO | None = None, json_lines: bool | None = None
) -> None:
    """JSON lines unless the stream is a terminal (or ``json_lines`` says otherwise)."""
    stream = stream or sys.stdout
    if json_lines is None:
        json_lines = not stream.isatty()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json_lines else ConsoleFormatter())
    logger = logging.getLogger("fair_agent")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
