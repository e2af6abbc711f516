"""With ``--redis-url`` the pod reads what the server promises for its data (CONFIG GET, or
INFO when CONFIG is refused), logs it, warns when KV config would be lost on a Redis restart,
and shows it in ``/v1/status`` and ``/metrics``."""

from __future__ import annotations

import logging
import time

import httpx
import pytest
import redis.asyncio as aioredis

from namesrv_redis.store.persistence import (
    PersistenceReport,
    classify,
    log_persistence,
    read_persistence,
    server_options,
)
from tests.conftest import RedisServerProcess
from tests.serverproc import NamesrvProcess


@pytest.mark.parametrize(
    ("options", "mode", "kv_durable"),
    [
        ((), "none", False),
        (("--save", "60 1"), "rdb", True),
        (("--appendonly", "yes"), "aof-everysec", True),
        (("--appendonly", "yes", "--appendfsync", "always"), "aof-always", True),
        (("--appendonly", "yes", "--appendfsync", "no"), "aof-no", True),
    ],
)
async def test_read_persistence_of_a_real_server(
    options: tuple[str, ...], mode: str, kv_durable: bool
) -> None:
    server = RedisServerProcess(*options).start()
    client = aioredis.Redis.from_url(server.url)
    try:
        report = await read_persistence(client)
    finally:
        await client.aclose()
        server.stop()
    assert (report.mode, report.source, report.kv_durable) == (mode, "config", kv_durable)


async def test_refused_config_falls_back_to_info() -> None:
    server = RedisServerProcess("--rename-command", "CONFIG", "", "--appendonly", "yes").start()
    client = aioredis.Redis.from_url(server.url)
    try:
        report = await read_persistence(client)
    finally:
        await client.aclose()
        server.stop()
    assert (report.mode, report.source, report.appendonly) == ("unknown", "info", "yes")
    assert report.kv_durable is True
    assert "CONFIG GET refused" in report.detail


def test_modes_map_to_server_options_and_back() -> None:
    for mode in ("none", "rdb", "aof-everysec", "aof-always"):
        opts = server_options(mode)
        conf = dict(zip(opts[::2], opts[1::2], strict=True))
        assert classify(conf["--save"], conf["--appendonly"], conf["--appendfsync"]) == mode
    with pytest.raises(ValueError, match="persistence must be one of"):
        server_options("aof")


def test_no_persistence_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        log_persistence(PersistenceReport("none", "config", "", "no", "everysec", False), "x")
        log_persistence(
            PersistenceReport("aof-everysec", "config", "", "yes", "everysec", True), "y"
        )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "would be LOST on a Redis restart" in warnings[0]


@pytest.mark.slow
def test_serve_reports_persistence_of_its_redis(
    redis_server: RedisServerProcess, namespace: str
) -> None:
    pod = NamesrvProcess(redis_server.url, namespace).start()
    try:
        base = f"http://127.0.0.1:{pod.http_port}"
        status = httpx.get(f"{base}/v1/status").json()
        metrics = httpx.get(f"{base}/metrics").text
        time.sleep(0.2)
        log = pod.log()
    finally:
        pod.stop()
    assert status["persistence"]["mode"] == "none"
    assert status["persistence"]["kv_durable"] is False
    assert status["embedded"] is None
    assert status["namespace"] == namespace
    assert 'namesrv_redis_persistence{mode="none",source="config"} 1.0' in metrics
    assert "namesrv_redis_kv_durable 0.0" in metrics
    assert "would be LOST on a Redis restart" in log
