"""The pod route cache: invalidation by events, the staleness bound when an event is lost,
one Redis read for concurrent misses, and stale answers while Redis is down."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from namesrv_redis.model import QueueConfig
from namesrv_redis.route_reader import RouteReader
from namesrv_redis.store import BrokerRegistration, RouteStore
from tests.conftest import RedisServerProcess


def registration(topics: list[str], counter: int = 1, name: str = "broker-a") -> BrokerRegistration:
    return BrokerRegistration(
        cluster="C",
        broker_addr=f"127.0.0.1:{10911 if name == 'broker-a' else 10921}",
        broker_name=name,
        broker_id=0,
        data_version=f'{{"counter":{counter},"timestamp":1}}',
        topics=[QueueConfig(t, 8, 8, 6) for t in topics],
    )


class CountingStore(RouteStore):
    """A RouteStore that counts route reads (each one Redis round trip)."""

    reads = 0

    async def get_route_raw(self, topic: str, *, with_order_conf: bool = False) -> Any:
        self.reads += 1
        return await super().get_route_raw(topic, with_order_conf=with_order_conf)


async def make_store(client: Any, namespace: str) -> CountingStore:
    store = CountingStore(client, namespace)
    await store.load_scripts()
    return store


async def test_hit_after_miss_costs_no_read(real_redis: Any, namespace: str) -> None:
    store = await make_store(real_redis, namespace)
    await store.register_broker(registration(["T1", "T2"]))
    reader = RouteReader(store, max_age_s=30)
    first = await reader.route("T1")
    assert first is not None and store.reads == 1
    assert await reader.route("T1") is first
    assert store.reads == 1
    hit, body = reader.cached_body("T1", standard=True)
    assert (
        hit and body is not None and orjson.loads(body)["queueDatas"][0]["brokerName"] == "broker-a"
    )


async def test_unknown_topic_is_cached_as_no_route(real_redis: Any, namespace: str) -> None:
    store = await make_store(real_redis, namespace)
    reader = RouteReader(store, max_age_s=30)
    assert await reader.route("missing") is None
    assert await reader.route("missing") is None
    assert store.reads == 1


async def test_concurrent_misses_share_one_read(real_redis: Any, namespace: str) -> None:
    store = await make_store(real_redis, namespace)
    await store.register_broker(registration(["T1", "T2"]))
    reader = RouteReader(store, max_age_s=30)
    routes = await asyncio.gather(*(reader.route("T1") for _ in range(50)))
    assert all(r is not None for r in routes)
    assert store.reads == 1


async def test_event_invalidates_topic_and_broker(real_redis: Any, namespace: str) -> None:
    store = await make_store(real_redis, namespace)
    await store.register_broker(registration(["T1", "T2"]))
    reader = RouteReader(store, max_age_s=30)
    await reader.route("T1")
    await reader.route("T2")
    reader.invalidate(frozenset({"T1"}))
    await reader.route("T1")
    await reader.route("T2")
    assert store.reads == 3  # T1 twice, T2 once
    reader.invalidate(frozenset(), frozenset({"broker-a"}))  # both topics name broker-a
    await reader.route("T1")
    await reader.route("T2")
    assert store.reads == 5
    reader.invalidate(None)
    assert len(reader) == 0


async def test_lost_event_is_bounded_by_max_age(real_redis: Any, namespace: str) -> None:
    store = await make_store(real_redis, namespace)
    await store.register_broker(registration(["T1", "T2"]))
    reader = RouteReader(store, max_age_s=0.3)
    assert await reader.route("T3") is None
    # A write whose event this pod never sees: T3 appears.
    await store.register_broker(registration(["T1", "T2", "T3"], counter=2))
    assert await reader.route("T3") is None  # stale within the bound
    await asyncio.sleep(0.35)
    assert await reader.route("T3") is not None


async def test_event_during_read_is_not_overwritten(real_redis: Any, namespace: str) -> None:
    """A read that raced with a write must not be cached as if it were fresh."""
    store = await make_store(real_redis, namespace)
    await store.register_broker(registration(["T1", "T2"]))
    reader = RouteReader(store, max_age_s=30)
    original = store.get_route_raw

    async def slow_read(topic: str, *, with_order_conf: bool = False) -> Any:
        route = await original(topic, with_order_conf=with_order_conf)
        reader.invalidate(frozenset({topic}))  # the event arrives while the answer is in flight
        return route

    store.get_route_raw = slow_read  # type: ignore[method-assign]
    await reader.route("T1")
    store.get_route_raw = original  # type: ignore[method-assign]
    assert len(reader) == 0
    await reader.route("T1")
    assert len(reader) == 1


async def test_serves_stale_while_redis_is_down(namespace: str) -> None:
    server = RedisServerProcess().start()
    client = aioredis.Redis.from_url(server.url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        store = await make_store(client, namespace)
        await store.register_broker(registration(["T1", "T2"]))
        reader = RouteReader(store, max_age_s=0.05)
        assert await reader.route("T1") is not None
        server.stop()
        await asyncio.sleep(0.1)
        route = await reader.route("T1")  # expired, Redis gone: the last answer
        assert route is not None and route.queue_datas[0].broker_name == "broker-a"
        with pytest.raises(RedisError):
            await reader.route("T2")  # never cached: the error surfaces
    finally:
        await client.aclose()
        server.stop()
