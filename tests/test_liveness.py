"""Broker liveness against a real redis-server and valkey-server (``server_kind``; fakeredis
emits no expired-key events):
the expired-key cleaner, the deadline sweeper, both together across several "pods", lost
subscriptions and a Redis restart. Timeouts are short (about a second) to keep this fast."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from namesrv_redis.rocketmq.model import QueueConfig
from namesrv_redis.store.check import check_namespace
from namesrv_redis.store.liveness import ExpiryCleaner, Liveness
from namesrv_redis.store.route_store import BrokerRegistration, RemovalReason, RouteStore
from tests.conftest import RedisServerProcess

TIMEOUT_MS = 1000
SWEEP_MS = 300


def reg(
    name: str, addr: str, topics: list[str], broker_id: int = 0, counter: int = 1
) -> BrokerRegistration:
    return BrokerRegistration(
        cluster="C",
        broker_addr=addr,
        broker_name=name,
        broker_id=broker_id,
        data_version=f'{{"counter":{counter},"timestamp":1}}',
        # every broker also reports its system topics (a first registration of a single
        # topic is refused, as RocketMQ 5 does)
        topics=[QueueConfig(t, 4, 4, 6) for t in [*topics, "SELF_TEST_TOPIC"]],
        heartbeat_timeout_ms=TIMEOUT_MS,
    )


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float) -> float:
    """Seconds until ``check`` holds; fails after ``within_s``."""
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {within_s}s")


async def new_store(url: str, namespace: str) -> RouteStore:
    store = RouteStore(aioredis.Redis.from_url(url), namespace)
    await store.load_scripts()
    return store


@pytest.fixture
async def pod(
    real_server: RedisServerProcess, namespace: str
) -> AsyncIterator[tuple[RouteStore, Liveness]]:
    store = await new_store(real_server.url, namespace)
    liveness = Liveness(store, store.redis, scan_interval_ms=SWEEP_MS)
    await liveness.start()
    await eventually(lambda: _true(liveness.cleaner.subscribed), 5)
    yield store, liveness
    await liveness.stop()
    await store.redis.aclose()


async def _true(v: bool) -> bool:
    return v


async def gone(store: RouteStore, topic: str) -> bool:
    return await store.get_route(topic) is None


async def test_silent_broker_leaves_within_timeout_plus_sweep(
    pod: tuple[RouteStore, Liveness],
) -> None:
    store, _ = pod
    await store.register_broker(reg("b1", "127.0.0.1:1001", ["T1", "T2"]))
    assert await store.get_route("T1") is not None
    elapsed = await eventually(lambda: gone(store, "T1"), (TIMEOUT_MS + SWEEP_MS) / 1000 + 1.0)
    assert elapsed >= TIMEOUT_MS / 1000 - 0.05
    assert await gone(store, "T2")
    assert (await store.get_cluster_info()).broker_addr_table == {}
    assert await check_namespace(store.redis, store.keys.namespace) == []


async def test_heartbeating_broker_never_leaves(pod: tuple[RouteStore, Liveness]) -> None:
    store, _ = pod
    await store.register_broker(reg("b1", "127.0.0.1:1001", ["T1"]))
    for _ in range(12):  # 2.4 s, well past the 1 s timeout
        await asyncio.sleep(0.2)
        assert await store.heartbeat("C", "127.0.0.1:1001")
        assert await store.get_route("T1") is not None


async def test_slave_expiry_keeps_master_routes(pod: tuple[RouteStore, Liveness]) -> None:
    store, _ = pod
    await store.register_broker(reg("b1", "127.0.0.1:1001", ["T1"]))
    await store.register_broker(reg("b1", "127.0.0.1:1002", ["T1"], broker_id=1))
    route = await store.get_route("T1")
    assert route is not None and route.broker_datas[0].broker_addrs == {
        0: "127.0.0.1:1001",
        1: "127.0.0.1:1002",
    }

    async def slave_gone() -> bool:
        await store.heartbeat("C", "127.0.0.1:1001")
        r = await store.get_route("T1")
        return r is not None and r.broker_datas[0].broker_addrs == {0: "127.0.0.1:1001"}

    await eventually(slave_gone, 3)


async def test_last_broker_takes_the_topic_with_it(pod: tuple[RouteStore, Liveness]) -> None:
    store, _ = pod
    await store.register_broker(reg("b1", "127.0.0.1:1001", ["Shared", "OnlyB1"]))
    await store.register_broker(reg("b2", "127.0.0.1:2001", ["Shared"]))

    async def b1_gone() -> bool:
        await store.heartbeat("C", "127.0.0.1:2001")
        return await gone(store, "OnlyB1")

    await eventually(b1_gone, 3)
    shared = await store.get_route("Shared")
    assert shared is not None and [b.broker_name for b in shared.broker_datas] == ["b2"]
    await eventually(lambda: gone(store, "Shared"), 3)
    assert await store.all_topics() == []


async def test_stale_expiry_does_not_remove_a_reregistered_broker(
    real_server: RedisServerProcess, namespace: str
) -> None:
    store = await new_store(real_server.url, namespace)
    await store.register_broker(reg("b1", "127.0.0.1:1001", ["T1"]))
    # An expiry event processed late, after the broker re-registered: nothing happens.
    result = await store.remove_broker(RemovalReason.EXPIRED, "C", "127.0.0.1:1001")
    assert not result.removed
    assert await store.get_route("T1") is not None
    await store.redis.aclose()


async def test_sweeper_alone_when_notifications_are_forbidden(
    namespace: str, server_kind: str
) -> None:
    server = RedisServerProcess(
        "--notify-keyspace-events", "", "--rename-command", "CONFIG", "", kind=server_kind
    ).start()
    store = await new_store(server.url, namespace)
    liveness = Liveness(store, store.redis, scan_interval_ms=SWEEP_MS)
    try:
        await liveness.start()
        await eventually(lambda: _true(liveness.cleaner.subscribed), 5)
        # judged by a probe key whose expiry event never comes
        await eventually(lambda: _true(liveness.cleaner.notifications is False), 5)
        await store.register_broker(reg("b1", "127.0.0.1:1001", ["T1"]))
        await eventually(lambda: gone(store, "T1"), (TIMEOUT_MS + SWEEP_MS) / 1000 + 1.0)
    finally:
        await liveness.stop()
        await store.redis.aclose()
        server.stop()


async def test_cleaner_alone_removes_on_expiry_event(
    real_server: RedisServerProcess, namespace: str
) -> None:
    store = await new_store(real_server.url, namespace)
    cleaner = ExpiryCleaner(store, store.redis)
    task = asyncio.create_task(cleaner.run())
    try:
        await eventually(lambda: _true(cleaner.subscribed), 5)
        await eventually(lambda: _true(cleaner.notifications is True), 5)  # a probe key's event
        await store.register_broker(reg("b1", "127.0.0.1:1001", ["T1"]))
        # Redis deletes expired keys lazily or in its 10 Hz cycle: within a few hundred ms.
        await eventually(lambda: gone(store, "T1"), TIMEOUT_MS / 1000 + 1.0)
    finally:
        task.cancel()
        await store.redis.aclose()


async def test_cut_subscription_reconnects_and_catches_up(pod: tuple[RouteStore, Liveness]) -> None:
    store, liveness = pod
    reconnects = liveness.cleaner.reconnects
    await store.register_broker(reg("b1", "127.0.0.1:1001", ["T1"]))
    killer = aioredis.Redis(connection_pool=store.redis.connection_pool)
    await killer.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    await eventually(
        lambda: _true(liveness.cleaner.reconnects > reconnects and liveness.cleaner.subscribed), 8
    )
    await eventually(lambda: gone(store, "T1"), (TIMEOUT_MS + SWEEP_MS) / 1000 + 2.0)


async def test_three_pods_remove_a_dead_broker_exactly_once(
    real_server: RedisServerProcess, namespace: str
) -> None:
    stores = [await new_store(real_server.url, namespace) for _ in range(3)]
    pods = [Liveness(s, s.redis, scan_interval_ms=100) for s in stores]
    removed_by: list[int] = []
    from namesrv_redis.store import liveness as liveness_module

    original = liveness_module.remove_expired

    async def counting(store: RouteStore, cluster: str, addr: str, source: str) -> bool:
        removed = await original(store, cluster, addr, source)
        if removed:
            removed_by.append(stores.index(store))
        return removed

    liveness_module.remove_expired = counting  # type: ignore[assignment]
    try:
        for p in pods:
            await p.start()
        for i in range(20):
            await stores[i % 3].register_broker(reg(f"b{i}", f"127.0.0.1:{3000 + i}", [f"T{i}"]))
        await eventually(lambda: _no_topics(stores[0]), (TIMEOUT_MS + 100) / 1000 + 2.0)

        async def all_counted() -> bool:  # the last removal's caller may not have resumed yet
            return len(removed_by) >= 20

        await eventually(all_counted, 2.0)
        await asyncio.sleep(0.5)  # a second removal of any broker would show up by now
        assert len(removed_by) == 20  # each broker exactly once, whichever pod got there first
        assert await check_namespace(stores[0].redis, namespace) == []
    finally:
        liveness_module.remove_expired = original  # type: ignore[assignment]
        for p in pods:
            await p.stop()
        for s in stores:
            await s.redis.aclose()


async def _no_topics(store: RouteStore) -> bool:
    return await store.all_topics() == []


async def test_redis_restart_loops_survive(namespace: str, server_kind: str) -> None:
    server = RedisServerProcess(kind=server_kind).start()
    store = await new_store(server.url, namespace)
    liveness = Liveness(store, store.redis, scan_interval_ms=SWEEP_MS)
    try:
        await liveness.start()
        await eventually(lambda: _true(liveness.cleaner.subscribed), 5)
        server.stop()
        await asyncio.sleep(0.5)
        restarted = RedisServerProcess(kind=server_kind)
        restarted.port = server.port
        server = restarted.start()
        await eventually(lambda: _true(liveness.cleaner.subscribed), 10)
        await store.register_broker(
            reg("b1", "127.0.0.1:1001", ["T1"])
        )  # scripts reload (NOSCRIPT)
        await eventually(lambda: gone(store, "T1"), (TIMEOUT_MS + SWEEP_MS) / 1000 + 2.0)
    finally:
        await liveness.stop()
        await store.redis.aclose()
        server.stop()
