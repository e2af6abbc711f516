"""Redis Cluster on real processes (three masters, three replicas) under load, with two
``namesrv-redis serve`` pods: dead brokers are found by expiry notifications from the node that
owns the namespace's slot — also after that slot migrates to another master and after its
master fails and a replica takes over — and no acknowledged registration is lost. On Redis and
on Valkey (``server_kind``), except the slot migration: Redis only, to keep the suite short."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from namesrv_redis.store.keys import Keys
from tests.ha_load import assert_nothing_lost, run_failure, running_pods
from tests.redis_topologies import ClusterSet, command, key_slot, kill
from tests.serverproc import NamesrvProcess

pytestmark = [pytest.mark.slow, pytest.mark.real_redis]


@pytest.fixture(scope="module")
def cluster(server_kind: str) -> Iterator[ClusterSet]:
    c = ClusterSet(kind=server_kind).start()
    for n in c.nodes:  # as stock servers: the pods must turn expiry events on where needed
        command(n.port, "CONFIG", "SET", "notify-keyspace-events", "")
    yield c
    c.stop()


@pytest.fixture
def pods(cluster: ClusterSet, namespace: str) -> Iterator[list[NamesrvProcess]]:
    yield from running_pods(cluster.url, namespace)


def migrate(cluster: ClusterSet, namespace: str) -> Callable[[], None]:
    """Move the namespace's slot, keys included, to another master."""
    slot = key_slot(Keys(namespace).prefix)
    owner = cluster.owner_of(slot)
    target = next(m for m in cluster.masters() if m != owner)
    return lambda: cluster.migrate_slot(slot, target)


def promote(cluster: ClusterSet, namespace: str) -> Callable[[], None]:
    """Kill the master of the namespace's slot; return once its replica took over."""
    slot = key_slot(Keys(namespace).prefix)
    owner = cluster.owner_of(slot)
    replica = cluster.replica_of(owner)

    def fail() -> None:
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

    return fail


async def test_expiry_events_come_from_the_slot_owner(pods: list[NamesrvProcess]) -> None:
    load = await run_failure(pods, lambda: None, brokers=6, timeout_ms=6000, settle_s=1.0)
    try:
        assert_nothing_lost(load, pods)
    finally:
        await load.close()


@pytest.mark.parametrize("server_kind", ["redis"], indirect=True)
async def test_slot_migration_moves_the_subscription(
    cluster: ClusterSet, pods: list[NamesrvProcess], namespace: str
) -> None:
    load = await run_failure(
        pods, migrate(cluster, namespace), brokers=6, timeout_ms=6000, settle_s=6.0
    )
    try:
        assert_nothing_lost(load, pods)
        assert any("moved from" in p.log_path.read_text() for p in pods)
    finally:
        await load.close()


async def test_replica_promotion_is_followed(
    cluster: ClusterSet, pods: list[NamesrvProcess], namespace: str
) -> None:
    load = await run_failure(pods, promote(cluster, namespace), brokers=6, timeout_ms=6000)
    try:
        assert_nothing_lost(load, pods)
    finally:
        await load.close()
