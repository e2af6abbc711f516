"""The namespace epoch and the route-version poll tell a pod that Redis lost its data (on
fakeredis and real Redis): a flushed namespace and a route version that went back each call
the data-loss callbacks once, and an ordinary write never does."""

from __future__ import annotations

import asyncio
from typing import Any

from namesrv_redis.rocketmq.model import QueueConfig
from namesrv_redis.store.events import RouteEvent, RouteEvents
from namesrv_redis.store.route_store import BrokerRegistration, RouteStore


async def _started(redis: Any, namespace: str) -> tuple[RouteStore, RouteEvents, list[str]]:
    store = RouteStore(redis, namespace)
    await store.load_scripts()
    events = RouteEvents(redis, store.keys, store=store, poll_interval_s=0.05)
    losses: list[str] = []
    events.on_data_loss.append(losses.append)
    await events.start()
    for _ in range(100):
        if events.connected and events.epoch is not None:
            break
        await asyncio.sleep(0.02)
    return store, events, losses


async def _register(store: RouteStore, name: str) -> None:
    reg = BrokerRegistration(
        "C", f"10.0.0.{len(name)}:1", name, 0, topics=[QueueConfig("T", 4, 4, 6, 0)] * 2
    )
    await store.register_broker(reg)


async def test_a_flushed_namespace_is_a_data_loss(redis: Any, namespace: str) -> None:
    store, events, losses = await _started(redis, namespace)
    try:
        await _register(store, "b1")
        await asyncio.sleep(0.3)
        assert losses == []  # ordinary writes are not losses
        epoch = events.epoch
        await redis.delete(*[k async for k in redis.scan_iter(match=f"nsr:{{{namespace}}}:*")])
        for _ in range(100):
            if losses:
                break
            await asyncio.sleep(0.02)
        assert len(losses) == 1 and "epoch" in losses[0]
        assert events.epoch is not None and events.epoch != epoch
        await asyncio.sleep(0.3)
        assert len(losses) == 1  # the new epoch is adopted: no second alarm
    finally:
        await events.stop()


async def test_a_version_that_went_back_is_a_data_loss(redis: Any, namespace: str) -> None:
    store, events, losses = await _started(redis, namespace)
    try:
        for name in ("b1", "b22", "b333"):
            await _register(store, name)
        await asyncio.sleep(0.3)
        assert losses == []
        await redis.set(store.keys.version, 1)  # as a failover to a replica that missed writes
        for _ in range(100):
            if losses:
                break
            await asyncio.sleep(0.02)
        assert len(losses) == 1 and "went back" in losses[0]
    finally:
        await events.stop()


async def test_events_newer_than_the_polls_read_are_not_a_data_loss(
    redis: Any, namespace: str
) -> None:
    """Under load the poll's reply can be processed after events published later (they come
    on another connection): found by bench capacity, where every pod then re-applied all of
    its brokers' registrations, silent dead ones included."""
    store, events, losses = await _started(redis, namespace)
    real_mget = redis.mget

    async def mget_overtaken(*keys: Any) -> Any:
        answer = await real_mget(*keys)
        # writes that Redis ran after this read, their event seen before the read's answer
        newer = await redis.incrby(store.keys.version, 5)
        events._deliver(RouteEvent(int(newer), "register", frozenset({"T"})))
        return answer

    try:
        await _register(store, "b1")
        await asyncio.sleep(0.2)
        redis.mget = mget_overtaken
        await asyncio.sleep(0.3)  # several polls, each overtaken by an event
        assert losses == []
    finally:
        redis.mget = real_mget
        await events.stop()
