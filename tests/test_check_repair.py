"""``namesrv-redis check`` reports what Redis lost by itself (KV tables, the epoch, the route
version), and ``check --repair`` fixes the drift no connected broker vouches for — orphaned
queue data, reverse-index and topics-set drift — idempotently, printing what it changed (on
fakeredis and a real redis-server)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from namesrv_redis.store.check import check_and_repair, check_namespace
from namesrv_redis.store.keys import ORDER_TOPIC_CONFIG
from namesrv_redis.store.route_store import BrokerRegistration, RouteStore, queue_configs
from tests.conftest import RedisServerProcess


async def _estate(redis: Any, namespace: str) -> RouteStore:
    store = RouteStore(redis, namespace)
    await store.load_scripts()
    for name, addr in (("b1", "10.0.0.1:1"), ("b2", "10.0.0.2:1")):
        await store.register_broker(
            BrokerRegistration(
                "C", addr, name, 0, topics=queue_configs([("A", 4, 4, 6, 0), ("B", 4, 4, 6, 0)])
            )
        )
    await store.put_kv(ORDER_TOPIC_CONFIG, "A", "b1:4")
    await store.put_kv("emptied", "k", "v")
    await store.delete_kv("emptied", "k")  # emptied on purpose: not a loss
    assert await check_namespace(redis, namespace) == []
    return store


async def test_lost_kv_epoch_and_version_are_reported(redis: Any, namespace: str) -> None:
    store = await _estate(redis, namespace)
    k = store.keys
    await redis.set(k.epoch, "e1")
    await redis.zadd(k.pods, {"127.0.0.1:9876": 2**40})  # a pod serves the namespace
    assert await check_namespace(redis, namespace) == []
    await redis.delete(k.kv(ORDER_TOPIC_CONFIG), k.epoch, k.version)
    kinds = sorted(p.kind for p in await check_namespace(redis, namespace))
    assert kinds == ["lost_epoch", "lost_kv_namespace", "lost_route_version"]
    # a namespace emptied and filled again is not "emptied" any more
    await store.put_kv("emptied", "k2", "v")
    await redis.delete(k.kv("emptied"))
    lost = [p.subject for p in await check_namespace(redis, namespace) if "kv" in p.kind]
    assert sorted(lost) == [(ORDER_TOPIC_CONFIG,), ("emptied",)]


async def _drift(redis: Any, store: RouteStore) -> None:
    k = store.keys
    await redis.hset(k.topic("Orphan"), "gone-broker", "4,4,6,0")  # unregistered broker
    await redis.sadd(k.topics, "Orphan")
    await redis.hset(k.topic("A"), "gone-broker", "4,4,6,0")
    await redis.srem(k.broker_topics("b1"), "A")  # reverse index lost a member
    await redis.sadd(k.broker_topics("b2"), "Nowhere")  # and gained one
    await redis.srem(k.topics, "B")  # topics set lost a member
    await redis.sadd(k.topics, "Ghost")  # and gained one


async def test_check_repair_fixes_drift_idempotently(redis: Any, namespace: str) -> None:
    store = await _estate(redis, namespace)
    await _drift(redis, store)
    found = await check_namespace(redis, namespace)
    assert sorted(p.kind for p in found) == [
        "listed_topic_without_queue_data",
        "queue_data_missing_from_reverse_index",  # b1's A
        "queue_data_missing_from_reverse_index",  # the orphans': gone-broker has no index
        "queue_data_missing_from_reverse_index",
        "queue_data_unknown_broker",
        "queue_data_unknown_broker",
        "reverse_index_without_queue_data",
        "unlisted_topic",
    ]
    printed: list[str] = []
    assert await check_and_repair(redis, namespace, repair=False, out=printed.append) == found
    assert len(printed) == len(found)  # without --repair: reported, nothing changed
    assert await check_namespace(redis, namespace) == found

    printed.clear()
    left = await check_and_repair(redis, namespace, repair=True, out=printed.append)
    assert left == []
    assert len(printed) == len(found) and all(line.startswith("repaired: ") for line in printed)
    assert await check_namespace(redis, namespace) == []
    # what the brokers vouch for is untouched; the orphans are gone
    route = await store.get_route("A")
    assert route is not None and sorted(q.broker_name for q in route.queue_datas) == ["b1", "b2"]
    assert await store.get_route("Orphan") is None
    assert not await redis.exists(store.keys.topic("Orphan"))
    assert sorted(await store.all_topics()) == ["A", "B"]
    assert await store.broker_topics("b1") == ["A", "B"]
    assert await store.broker_topics("b2") == ["A", "B"]

    printed.clear()
    assert await check_and_repair(redis, namespace, repair=True, out=printed.append) == []
    assert printed == []  # a second run changes nothing


async def test_a_repair_never_undoes_a_registration_that_ran_since(
    redis: Any, namespace: str
) -> None:
    """Each operation re-checks its condition: a broker registered after the check found its
    queue data orphaned keeps it."""
    store = await _estate(redis, namespace)
    await redis.hset(store.keys.topic("A"), "late", "4,4,6,0")
    found = [p for p in await check_namespace(redis, namespace) if p.subject[-1:] == ("late",)]
    assert [p.kind for p in found] == ["queue_data_unknown_broker"]
    await store.register_broker(
        BrokerRegistration(
            "C", "10.0.0.9:1", "late", 0, topics=queue_configs([("A", 4, 4, 6, 0)] * 2)
        )
    )
    assert await store.repair_drift([("orphan", "A", "late")]) == (0, 0)
    assert await redis.hget(store.keys.topic("A"), "late") == b"4,4,6,0"


def test_the_cli_repairs_and_exits_zero(redis_server: RedisServerProcess, namespace: str) -> None:
    import asyncio

    import redis.asyncio as aioredis

    async def prepare() -> None:
        client = aioredis.Redis.from_url(redis_server.url)
        store = await _estate(client, namespace)
        await _drift(client, store)
        await client.aclose()

    asyncio.run(prepare())
    cmd = [sys.executable, "-m", "namesrv_redis.cli", "check", "--redis-url", redis_server.url]
    cmd += ["--namespace", namespace]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert first.returncode == 1 and "queue_data_unknown_broker" in first.stdout
    fixed = subprocess.run([*cmd, "--repair"], capture_output=True, text=True, timeout=60)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert fixed.stdout.count("repaired: ") == 8 and "consistent" in fixed.stdout
    again = subprocess.run([*cmd, "--repair"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "repaired" not in again.stdout
