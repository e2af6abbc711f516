"""namesrv_redis/process/logs.py: one handler and format for our loggers and uvicorn's."""

from __future__ import annotations

import json
import logging
import logging.config
import sys
from collections.abc import Iterator

import pytest
import uvicorn.config

from namesrv_redis.process.logs import UVICORN_LOGGERS, JsonFormatter, configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    uv = {
        n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate)
        for n in UVICORN_LOGGERS
    }
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for n, (handlers, propagate) in uv.items():
        logging.getLogger(n).handlers[:] = handlers
        logging.getLogger(n).propagate = propagate


def test_json_record_with_a_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "namesrv_redis.x", logging.ERROR, __file__, 1, "failed %s", ("here",), None
        )
        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "ERROR" and entry["logger"] == "namesrv_redis.x"
    assert entry["message"] == "failed here" and isinstance(entry["pid"], int)
    assert entry["time"].endswith("+00:00")
    assert "ValueError: boom" in entry["exc_info"]


def test_uvicorn_records_go_through_our_handler(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # as uvicorn configures itself by default: its own handlers, not propagating
    logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)
    configure_logging("INFO", "json")
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 1)
    logging.getLogger("namesrv_redis.t").warning("ours")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["logger"], r["message"]) for r in lines] == [
        ("uvicorn.error", "Started server process [1]"),
        ("namesrv_redis.t", "ours"),
    ]
