"""One log format for the whole process: our lines and uvicorn's (its loggers propagate to
ours: the pod passes ``log_config=None`` to uvicorn), as text or as one JSON object per line.

``text``: ``2026-01-02 03:04:05,678 INFO 4242 namesrv_redis.process.pod: message``
``json``: ``{"time": "2026-01-02T03:04:05.678+00:00", "level": "INFO", "logger": "…",
"message": "…", "pid": 4242}`` plus ``exc_info`` (the formatted traceback) when there is one.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text") -> None:
    """Replace the root logger's handlers with one on stderr in ``log_format``; uvicorn's
    loggers drop any handler of their own and pass their records up to it."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in UVICORN_LOGGERS:
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
