"""The pod route cache: invalidation by events, the staleness bound when an event is lost,
one Redis read for concurrent misses, and stale answers while Redis is down."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from namesrv_redis.domain.route_reader import RouteReader
from namesrv_redis.rocketmq.model import QueueConfig
from namesrv_redis.store.route_store import BrokerRegistration, RouteStore
from tests.conftest import RedisServerProcess, cached_routes


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


async def route_of(reader: RouteReader, topic: str) -> Any:
    """The standard-JSON answer through the cache, decoded (None: no route)."""
    body = await reader.route_body(topic, standard=True)
    return orjson.loads(body) if body is not None else None


async def make_store(client: Any, namespace: str) -> CountingStore:
    store = CountingStore(client, namespace)
    await store.load_scripts()
    return store


async def test_hit_after_miss_costs_no_read(real_redis: Any, namespace: str) -> None:
    store = await make_store(real_redis, namespace)
    await store.register_broker(registration(["T1", "T2"]))
    reader = RouteReader(store)
    first = await reader.route_body("T1", standard=True)
    assert first is not None and store.reads == 1
    assert await reader.route_body("T1", standard=True) is first
    assert store.reads == 1
    hit, body = reader.cached_body("T1", standard=True)
    assert (
        hit and body is not None and orjson.loads(body)["queueDatas"][0]["brokerName"] == "broker-a"
    )


async def test_unknown_topic_is_cached_as_no_route(real_redis: Any, namespace: str) -> None:
    store = await make_store(real_redis, namespace)
    reader = RouteReader(store)
    assert await route_of(reader, "missing") is None
    assert await route_of(reader, "missing") is None
    assert store.reads == 1


async def test_concurrent_misses_share_one_read(real_redis: Any, namespace: str) -> None:
    store = await make_store(real_redis, namespace)
    await store.register_broker(registration(["T1", "T2"]))
    reader = RouteReader(store)
    routes = await asyncio.gather(*(route_of(reader, "T1") for _ in range(50)))
    assert all(r is not None for r in routes)
    assert store.reads == 1


async def test_event_invalidates_topic_and_broker(real_redis: Any, namespace: str) -> None:
    store = await make_store(real_redis, namespace)
    await store.register_broker(registration(["T1", "T2"]))
    reader = RouteReader(store)
    await route_of(reader, "T1")
    await route_of(reader, "T2")
    reader.invalidate(frozenset({"T1"}))
    await route_of(reader, "T1")
    await route_of(reader, "T2")
    assert store.reads == 3  # T1 twice, T2 once
    reader.invalidate(frozenset(), frozenset({"broker-a"}))  # both topics name broker-a
    await route_of(reader, "T1")
    await route_of(reader, "T2")
    assert store.reads == 5
    reader.invalidate(None)
    assert len(reader) == 0


async def test_lost_event_is_bounded_by_max_age(real_redis: Any, namespace: str) -> None:
    """A write whose event never arrives (the version moved, nothing was published) is seen
    within two version polls; an answer that did not change is not read again meanwhile."""
    store = await make_store(real_redis, namespace)
    await store.register_broker(registration(["T1", "T2"]))
    reader, events = await cached_routes(real_redis, store, poll_interval_s=0.15)
    try:
        assert await route_of(reader, "T3") is None
        assert (await route_of(reader, "T1"))["queueDatas"][0]["perm"] == 6
        reads = store.reads
        await asyncio.sleep(0.4)
        assert await route_of(reader, "T1") is not None
        assert store.reads == reads  # no event, no expiry: still cached
        # T3 appears and T1 loses its write permission, and the event is lost
        await real_redis.hset(store.keys.topic("T3"), "broker-a", "8,8,6,0")
        await real_redis.hset(store.keys.topic("T1"), "broker-a", "8,8,4,0")
        await real_redis.sadd(store.keys.topics, "T3")
        await real_redis.incr(store.keys.version)
        assert await route_of(reader, "T3") is None  # stale within the bound
        waited = 0.0
        while await route_of(reader, "T3") is None and waited < 3.0:
            await asyncio.sleep(0.05)  # two polls (0.3 s) normally; slack for a busy machine
            waited += 0.05
        assert await route_of(reader, "T3") is not None
        assert (await route_of(reader, "T1"))["queueDatas"][0]["perm"] == 4
    finally:
        await events.stop()


async def test_event_during_read_is_not_overwritten(real_redis: Any, namespace: str) -> None:
    """A read that raced with a write must not be cached as if it were fresh."""
    store = await make_store(real_redis, namespace)
    await store.register_broker(registration(["T1", "T2"]))
    reader = RouteReader(store)
    original = store.get_route_raw

    async def slow_read(topic: str, *, with_order_conf: bool = False) -> Any:
        route = await original(topic, with_order_conf=with_order_conf)
        reader.invalidate(frozenset({topic}))  # the event arrives while the answer is in flight
        return route

    store.get_route_raw = slow_read  # type: ignore[method-assign]
    await route_of(reader, "T1")
    store.get_route_raw = original  # type: ignore[method-assign]
    assert len(reader) == 0
    await route_of(reader, "T1")
    assert len(reader) == 1


async def test_serves_stale_while_redis_is_down(namespace: str) -> None:
    server = RedisServerProcess().start()
    client = aioredis.Redis.from_url(server.url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        store = await make_store(client, namespace)
        await store.register_broker(registration(["T1", "T2"]))
        reader = RouteReader(store)
        assert await route_of(reader, "T1") is not None
        server.stop()
        reader.invalidate(frozenset(), frozenset({"broker-a"}))  # an event, then Redis is gone
        route = await route_of(reader, "T1")  # the last answer it had
        assert route is not None and route["queueDatas"][0]["brokerName"] == "broker-a"
        with pytest.raises(RedisError):
            await route_of(reader, "T2")  # never cached: the error surfaces
    finally:
        await client.aclose()
        server.stop()


async def test_same_answers_share_one_body_and_broker_events_hit_only_theirs(
    real_redis: Any, namespace: str
) -> None:
    store = await make_store(real_redis, namespace)
    await store.register_broker(registration([f"T{i}" for i in range(50)]))
    await store.register_broker(registration(["U1", "U2"], name="broker-b"))
    reader = RouteReader(store)
    bodies = [await reader.route_body(f"T{i}", standard=True) for i in range(50)]
    assert all(b is bodies[0] for b in bodies)  # one copy for fifty topics
    u1 = await route_of(reader, "U1")
    assert u1["queueDatas"][0]["brokerName"] == "broker-b"
    assert reader.distinct_answers == 2
    reads = store.reads
    reader.invalidate(frozenset(), frozenset({"broker-b"}))
    await route_of(reader, "T7")
    assert store.reads == reads  # broker-a's answers stay cached
    await route_of(reader, "U1")
    await route_of(reader, "U2")
    assert store.reads == reads + 2
    reader.invalidate(frozenset(), frozenset({"broker-b"}))  # the new set goes stale too
    await route_of(reader, "U1")
    assert store.reads == reads + 3


async def test_a_reset_namespace_flushes_the_cache(real_redis: Any, namespace: str) -> None:
    """The route version going down (FLUSHALL, a fresh Redis behind the same address) means
    the cached answers describe data that is gone."""
    store = await make_store(real_redis, namespace)
    await store.register_broker(registration(["T1", "T2"]))
    reader, events = await cached_routes(real_redis, store, poll_interval_s=0.1)
    try:
        assert await route_of(reader, "T1") is not None
        assert len(reader) == 1
        await real_redis.set(store.keys.version, 0)
        for _ in range(50):
            if len(reader) == 0:
                break
            await asyncio.sleep(0.05)
        assert len(reader) == 0
    finally:
        await events.stop()


async def test_topics_with_any_text_are_cached_and_dropped_by_their_events(
    real_redis: Any, namespace: str
) -> None:
    """The cache is keyed by the topic's UTF-8 bytes: a non-ASCII name is cached, hit and
    invalidated like any other; a lone surrogate (no client decoder lets one through: orjson
    and strict UTF-8 refuse it) is a miss, never an encoding error."""
    store = await make_store(real_redis, namespace)
    await store.register_broker(registration(["T1", "Tópico-Ω"]))
    reader = RouteReader(store)
    for topic in ("Tópico-Ω", "T1", "missing-ü"):
        await reader.route_body(topic, standard=True)
        assert reader.cached_body(topic, standard=True)[0], topic
    assert store.reads == 3 and len(reader) == 3
    assert reader.cached_body("missing-ü", standard=True) == (True, None)  # no route, cached
    assert reader.cached_body("bad-\ud800", standard=True) == (False, None)
    reader.invalidate(frozenset({"Tópico-Ω", "bad-\ud800"}))
    assert reader.cached_body("Tópico-Ω", standard=True) == (False, None)
    assert reader.cached_body("T1", standard=True)[0]
    assert (await route_of(reader, "Tópico-Ω"))["queueDatas"][0]["brokerName"] == "broker-a"
