"""Redis Cluster on real processes (three masters, three replicas) under load, with two
``namesrv-redis serve`` pods: dead brokers are found by expiry notifications from the node that
owns the namespace's slot — also after that slot migrates to another master and after its
master fails and a replica takes over — and no acknowledged registration is lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from namesrv_redis.store.keys import Keys
from tests.ha_load import HaLoad
from tests.redis_topologies import ClusterSet, command, kill
from tests.serverproc import NamesrvProcess

pytestmark = [pytest.mark.slow, pytest.mark.real_redis]

SWEEP_MS = 10_000
POD_ENV = {"NAMESRV_SCAN_NOT_ACTIVE_BROKER_INTERVAL": str(SWEEP_MS)}


def key_slot(key: str) -> int:
    """CRC16 (XMODEM) of the hash tag, mod 16384: Redis Cluster's key slot."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    crc = 0
    for byte in key.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc % 16384


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterSet]:
    c = ClusterSet().start()
    for n in c.nodes:  # as stock servers: the pods must turn expiry events on where needed
        command(n.port, "CONFIG", "SET", "notify-keyspace-events", "")
    yield c
    c.stop()


@pytest.fixture
def pods(cluster: ClusterSet, namespace: str) -> Iterator[list[NamesrvProcess]]:
    started = [NamesrvProcess(cluster.url, namespace, env=POD_ENV).start() for _ in range(2)]
    yield started
    for p in started:
        p.stop()


async def _under_load(pods: list[NamesrvProcess], action: object, settle_s: float = 6.0) -> HaLoad:
    load = HaLoad([p.addr for p in pods], brokers=6, timeout_ms=6000)
    await load.start()
    await asyncio.sleep(1.5)
    load.mark()
    await asyncio.to_thread(action)  # type: ignore[arg-type]
    await asyncio.sleep(settle_s)
    await load.stop()
    await asyncio.sleep(1.5)
    await load.verify(pods[0].addr)
    return load


async def _check(load: HaLoad, pods: list[NamesrvProcess]) -> None:
    report = load.report
    detection = await load.measure_detection()
    print(f"\n{report.summary()}")
    assert report.acked
    assert report.lost == [], f"acknowledged registrations lost: {report.lost}"
    assert report.removed_heartbeating == [], report.removed_heartbeating
    assert detection < 1500, f"dead broker found {detection:.0f} ms after its deadline"
    for p in pods:
        assert "Traceback" not in p.log()


async def test_expiry_events_come_from_the_slot_owner(pods: list[NamesrvProcess]) -> None:
    load = await _under_load(pods, lambda: None, settle_s=1.0)
    try:
        await _check(load, pods)
    finally:
        await load.close()


async def test_slot_migration_moves_the_subscription(
    cluster: ClusterSet, pods: list[NamesrvProcess], namespace: str
) -> None:
    slot = key_slot(Keys(namespace).prefix)
    owner = cluster.owner_of(slot)
    masters = {cluster.owner_of(s) for s in (0, 6000, 12000)}
    target = next(m for m in masters if m != owner)
    load = await _under_load(pods, lambda: cluster.migrate_slot(slot, target))
    try:
        assert cluster.owner_of(slot) == target
        await _check(load, pods)
        assert any("moved from" in p.log() for p in pods)
    finally:
        await load.close()


async def test_replica_promotion_is_followed(
    cluster: ClusterSet, pods: list[NamesrvProcess], namespace: str
) -> None:
    slot = key_slot(Keys(namespace).prefix)
    owner = cluster.owner_of(slot)
    replica = cluster.replica_of(owner)

    def fail_master() -> None:
        kill(next(n for n in cluster.nodes if n.port == owner))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if cluster.owner_of(slot) == replica:
                    return
            except (AssertionError, OSError):
                pass
            time.sleep(0.1)
        raise AssertionError("the replica was not promoted")

    load = await _under_load(pods, fail_master, settle_s=8.0)
    try:
        await _check(load, pods)
    finally:
        await load.close()
