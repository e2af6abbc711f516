"""Repair end to end, on real pods and a real redis-server (docs/ha.md, Repair): two pods
whose brokers stay connected and never register again; a part of the state is deleted
behind their back; within the repair window every pod answers every route again, the pods
agree, and ``check`` is clean. And under a ``volatile-*`` eviction policy with another client
filling memory, no heartbeating broker is removed.

Set ``NSR_REPAIR_RUNS=5`` to measure each window over several runs (median printed)."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.sim.broker import SimBroker
from namesrv_redis.store.check import check_namespace
from namesrv_redis.store.connection import create_redis
from namesrv_redis.store.keys import Keys
from tests.conftest import RedisServerProcess
from tests.serverproc import NamesrvProcess
from tests.test_ha_redis import _connected_brokers
from tests.test_reconcile import partial_losses

pytestmark = [pytest.mark.real_redis, pytest.mark.slow]

INTERVAL_MS = 1000
"""The pods' reconcileIntervalMs here (30 s by default)."""
WINDOW_S = 2 * INTERVAL_MS / 1000 + 1.0
"""Lost state must be back within one period (plus a loaded machine's slack)."""
RUNS = int(os.environ.get("NSR_REPAIR_RUNS", "1"))
POD_ENV = {"NAMESRV_RECONCILE_INTERVAL_MS": str(INTERVAL_MS)}


@pytest.fixture
def own_redis() -> Iterator[RedisServerProcess]:
    server = RedisServerProcess().start()
    yield server
    server.stop()


@pytest.fixture
async def two_pods(
    own_redis: RedisServerProcess, namespace: str
) -> AsyncIterator[list[NamesrvProcess]]:
    pods = [NamesrvProcess(own_redis.url, namespace, env=POD_ENV).start() for _ in range(2)]
    yield pods
    for p in pods:
        p.stop()


async def _route(client: RemotingClient, topic: str) -> bytes | None:
    try:
        resp = await client.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic}, timeout=1)
    except (TimeoutError, ConnectionError):
        return None
    return resp.body if resp is not None and resp.code == 0 else None


async def _agreed(readers: list[RemotingClient], topics: list[str]) -> bool:
    """Every pod answers every topic, with the same route."""
    for t in topics:
        answers = [await _route(r, t) for r in readers]
        if any(a is None for a in answers) or len(set(answers)) != 1:
            return False
    return True


def _losses(k: Keys) -> dict[str, list[str]]:
    return {
        **partial_losses(k, "b0", "10.0.0.0:10911", "T0"),
        "epoch": [k.epoch],
        "version": [k.version],
    }


async def test_each_partial_deletion_is_repaired_on_every_pod(
    own_redis: RedisServerProcess, two_pods: list[NamesrvProcess], namespace: str
) -> None:
    brokers, topics = await _connected_brokers(two_pods)  # b0…b5, topics T0…T5
    readers = [await RemotingClient.connect("127.0.0.1", p.port) for p in two_pods]
    redis: Any = create_redis(own_redis.url)
    keys = Keys(namespace)
    windows: dict[str, list[float]] = {}
    try:
        assert await _agreed(readers, topics)  # every pod has cached every route
        for loss, lost in _losses(keys).items():
            for _ in range(RUNS):
                await redis.delete(*lost)
                t = time.monotonic()
                while time.monotonic() - t < WINDOW_S + 5:
                    problems = await check_namespace(redis, namespace)
                    back = await redis.exists(*lost) == len(lost)
                    if back and not problems and await _agreed(readers, topics):
                        break
                    await asyncio.sleep(0.02)
                took = time.monotonic() - t
                assert back and not problems, (loss, problems)
                assert took < WINDOW_S, f"{loss}: repaired after {took:.2f}s"
                windows.setdefault(loss, []).append(took)
                await asyncio.sleep(0.3)  # let both pods' pacing move on
        print()
        for loss, w in windows.items():
            print(
                f"repair window {loss}: median {statistics.median(w) * 1000:.0f} ms "
                f"(max {max(w) * 1000:.0f} ms, {len(w)} runs)"
            )
        # a pod started after the loss agrees too (it never had the route cached)
        await redis.delete(keys.topic("T1"))
        late = NamesrvProcess(own_redis.url, namespace, env=POD_ENV).start()
        try:
            reader = await RemotingClient.connect("127.0.0.1", late.port)
            t = time.monotonic()
            while time.monotonic() - t < WINDOW_S and not await _agreed([*readers, reader], topics):
                await asyncio.sleep(0.05)
            assert await _agreed([*readers, reader], topics)
            await reader.close()
        finally:
            late.stop()
        logs = "".join(p.log_path.read_text() for p in two_pods)
        assert "repaired what Redis lost of broker" in logs
        assert "Traceback" not in logs
    finally:
        for c in brokers + readers:
            await c.close()
        await redis.aclose()


# ------------------------------------------------------------------ volatile-* eviction


async def _fill(redis: Any, stop: asyncio.Event) -> int:
    """Another client of the same Redis filling memory with keys that have a TTL."""
    n = 0
    blob = b"x" * 4096
    while not stop.is_set():
        async with redis.pipeline(transaction=False) as pipe:
            for _ in range(50):
                pipe.set(f"tenant:{n}", blob, px=600_000)
                n += 1
            try:
                await pipe.execute()
            except Exception:  # OOM answers while Redis catches up on evictions
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.002)
    return n


async def _heartbeat(client: RemotingClient, broker: SimBroker, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await client.request(
            RequestCode.BROKER_HEARTBEAT,
            {"clusterName": broker.cluster, "brokerAddr": broker.addr, "brokerName": broker.name},
            timeout=2,
        )
        await asyncio.sleep(0.5)


@pytest.mark.parametrize("policy", ["volatile-lru", "volatile-ttl"])
async def test_no_heartbeating_broker_is_removed_under_volatile_eviction(
    namespace: str, policy: str
) -> None:
    server = RedisServerProcess(
        "--maxmemory", "8mb", "--maxmemory-policy", policy, "--maxmemory-samples", "10"
    ).start()
    pod = NamesrvProcess(
        server.url,
        namespace,
        env={**POD_ENV, "NAMESRV_SCAN_NOT_ACTIVE_BROKER_INTERVAL": "200"},
    ).start()
    client = await RemotingClient.connect("127.0.0.1", pod.port)
    filler: Any = create_redis(server.url)
    stop = asyncio.Event()
    try:
        brokers = []
        for i in range(6):
            # a short heartbeat timeout: a liveness key lost without the fix is swept in 3 s
            b = SimBroker("C", f"b{i}", f"10.0.1.{i}:10911", heartbeat_timeout_ms=3000)
            b.add_topics([f"V{i}", f"V{i}x"])
            assert (await b.register(client)).code == 0
            brokers.append(b)
        beats = [asyncio.create_task(_heartbeat(client, b, stop)) for b in brokers]
        fill = asyncio.create_task(_fill(filler, stop))
        missing = samples = 0
        t = time.monotonic()
        while time.monotonic() - t < 10:
            for b in brokers:
                samples += 1
                if await _route(client, f"V{b.name[1:]}") is None:
                    missing += 1
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*beats)
        written = await fill
        info = await filler.info("stats")
        evicted = int(info["evicted_keys"])
        log = pod.log_path.read_text()
        recreated = log.count("recreated by its refresh")
        print(
            f"\n{policy}: {written} tenant keys written, {evicted} keys evicted, "
            f"{recreated} liveness keys recreated, {missing}/{samples} route samples missing"
        )
        assert evicted > 0, "the test did not put Redis under memory pressure"
        assert "broker removed" not in log
        assert missing == 0
    finally:
        stop.set()
        await client.close()
        await filler.aclose()
        pod.stop()
        server.stop()
