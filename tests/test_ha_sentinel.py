"""Sentinel failover under load, on real processes: a master, a replica and three sentinels
(``redis-server --sentinel``), two ``namesrv-redis serve`` pods, heartbeating brokers, one-shot
registrations and route readers. A planned failover and a killed master must lose no
acknowledged registration and remove no heartbeating broker, and afterwards a dead broker must
again be found by its expiry notification (not by the sweeper, set to 10 s here)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.ha_load import HaLoad
from tests.redis_topologies import SentinelSet, command, kill
from tests.serverproc import NamesrvProcess

pytestmark = [pytest.mark.slow, pytest.mark.real_redis]

SWEEP_MS = 10_000
POD_ENV = {"NAMESRV_SCAN_NOT_ACTIVE_BROKER_INTERVAL": str(SWEEP_MS)}


@pytest.fixture
def sentinels() -> Iterator[SentinelSet]:
    s = SentinelSet().start()
    for server in s.servers:  # as a stock server: the pods must turn expiry events on
        command(server.port, "CONFIG", "SET", "notify-keyspace-events", "")
    yield s
    s.stop()


@pytest.fixture
def pods(sentinels: SentinelSet, namespace: str) -> Iterator[list[NamesrvProcess]]:
    started = [NamesrvProcess(sentinels.url, namespace, env=POD_ENV).start() for _ in range(2)]
    yield started
    for p in started:
        p.stop()


async def _wait_for_new_master(sentinels: SentinelSet, old: int, limit_s: float = 30) -> int:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        port = await asyncio.to_thread(sentinels.master_port)
        if port != old:
            return port
        await asyncio.sleep(0.1)
    raise AssertionError("Sentinel did not fail over")


async def _run(sentinels: SentinelSet, pods: list[NamesrvProcess], fail: str) -> HaLoad:
    load = HaLoad([p.addr for p in pods], brokers=10, timeout_ms=4000)
    await load.start()
    await asyncio.sleep(2.0)
    old = sentinels.master_port()
    load.mark()
    if fail == "planned":
        sentinels.failover()
    else:
        kill(sentinels.server_on(old))
    await _wait_for_new_master(sentinels, old)
    await asyncio.sleep(8.0)  # well past the old master's demotion and resync
    await load.stop()
    await asyncio.sleep(1.5)  # every pod's cache has seen the last events
    await load.verify(pods[0].addr)
    return load


async def _check(load: HaLoad, pods: list[NamesrvProcess]) -> None:
    report = load.report
    assert report.acked, "no registration was acknowledged at all"
    assert report.lost == [], f"acknowledged registrations lost: {report.lost}"
    assert report.removed_heartbeating == [], report.removed_heartbeating
    assert not report.route_failures, f"{len(report.route_failures)} route failures"
    detection = await load.measure_detection()
    print(f"\n{report.summary()}")
    assert detection < 1500, f"dead broker found {detection:.0f} ms after its deadline"
    for p in pods:
        assert "Traceback" not in p.log()


async def test_planned_failover_loses_no_acknowledged_write(
    sentinels: SentinelSet, pods: list[NamesrvProcess]
) -> None:
    load = await _run(sentinels, pods, "planned")
    try:
        await _check(load, pods)
        assert any("switched from" in p.log() for p in pods)
    finally:
        await load.close()


async def test_killed_master_loses_no_acknowledged_write(
    sentinels: SentinelSet, pods: list[NamesrvProcess]
) -> None:
    load = await _run(sentinels, pods, "kill")
    try:
        await _check(load, pods)
    finally:
        await load.close()
