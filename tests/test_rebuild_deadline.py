"""A registration re-applied after Redis lost data keeps the broker's own deadline: a broker
that fell silent before the loss is not given a fresh heartbeat timeout by the pod that
re-applies it (found by tests/test_fault_history.py)."""

from __future__ import annotations

from typing import Any

from namesrv_redis.rocketmq.model import QueueConfig
from namesrv_redis.store.keys import broker_ident
from namesrv_redis.store.route_store import (
    BrokerRegistration,
    RegisterStatus,
    RouteStore,
    now_ms,
    queue_configs,
)

ADDR = "10.0.0.1:10911"


def registration(timeout_ms: int) -> BrokerRegistration:
    topics: list[QueueConfig] = queue_configs([("T1", 8, 8, 6, 0), ("T2", 8, 8, 6, 0)])
    return BrokerRegistration(
        "C1",
        ADDR,
        "broker-a",
        0,
        data_version='{"counter":1,"timestamp":1}',
        topics=topics,
        conn_id="conn-1",
        heartbeat_timeout_ms=timeout_ms,
    )


async def test_lower_deadline_only_moves_it_earlier(redis: Any, namespace: str) -> None:
    store = RouteStore(redis, namespace)
    await store.load_scripts()
    now = now_ms()
    assert (await store.register_broker(registration(30_000))).status is RegisterStatus.OK
    ident_deadline = await redis.zscore(store.keys.deadlines, broker_ident("C1", ADDR))
    assert ident_deadline is not None and ident_deadline >= now + 29_000

    assert await store.lower_deadline("C1", ADDR, now + 5_000, now=now)
    assert await redis.zscore(store.keys.deadlines, broker_ident("C1", ADDR)) == now + 5_000
    assert 0 < await redis.pttl(store.keys.live("C1", ADDR)) <= 5_000

    # never later, and never for a broker that is not registered
    assert not await store.lower_deadline("C1", ADDR, now + 20_000, now=now)
    assert await redis.zscore(store.keys.deadlines, broker_ident("C1", ADDR)) == now + 5_000
    assert not await store.lower_deadline("C1", "10.9.9.9:1", now + 1_000, now=now)
    assert await redis.zscore(store.keys.deadlines, broker_ident("C1", "10.9.9.9:1")) is None
