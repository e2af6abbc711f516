"""Concurrency against a real Redis: many tasks, and several OS processes, registering,
re-registering, unregistering and expiring the same brokers at once end in a consistent
state; a dead broker removed by many cleaners at once is removed exactly once. Also the
``namesrv-redis check`` command on a healthy and on a corrupted namespace."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from typing import Any

import redis.asyncio as aioredis

from namesrv_redis.rocketmq.model import QueueConfig
from namesrv_redis.store.check import check_namespace
from namesrv_redis.store.connection import create_redis
from namesrv_redis.store.keys import broker_ident
from namesrv_redis.store.route_store import (
    BrokerRegistration,
    RemovalReason,
    RouteStore,
    now_ms,
)
from tests.conftest import RedisServerProcess

NAMES = ["a", "b", "c"]
ADDRS = [f"10.0.0.{i}:10911" for i in range(1, 5)]


def registration(rnd: random.Random, counter: int) -> BrokerRegistration:
    topics = rnd.sample([f"T{i}" for i in range(8)], rnd.randint(2, 6))
    return BrokerRegistration(
        cluster=rnd.choice(["C1", "C2"]),
        broker_addr=rnd.choice(ADDRS),
        broker_name=rnd.choice(NAMES),
        broker_id=rnd.choice([0, 0, 1]),
        data_version=f'{{"counter":{counter},"timestamp":1}}',
        topics=[QueueConfig(t, 4, 4, 6) for t in topics],
    )


async def churn(store: RouteStore, seed: int, steps: int) -> None:
    rnd = random.Random(seed)
    for i in range(steps):
        op = rnd.random()
        if op < 0.6:
            await store.register_broker(registration(rnd, rnd.randint(0, 3)))
        elif op < 0.8:
            await store.unregister_broker(
                rnd.choice(["C1", "C2"]), rnd.choice(ADDRS), rnd.choice(NAMES)
            )
        else:
            cluster, addr = rnd.choice(["C1", "C2"]), rnd.choice(ADDRS)
            # at its deadline: a liveness key gone before it is an eviction, not an expiry
            deadline = await store.redis.zscore(store.keys.deadlines, broker_ident(cluster, addr))
            await store.redis.delete(store.keys.live(cluster, addr))
            now = int(deadline) if deadline is not None else None
            await store.remove_broker(RemovalReason.EXPIRED, cluster, addr, now=now)
        if i % 7 == 0:
            await asyncio.sleep(0)


async def test_many_tasks_end_consistent(real_redis: Any, namespace: str) -> None:
    stores = [RouteStore(real_redis, namespace) for _ in range(4)]
    for s in stores:
        await s.load_scripts()
    await asyncio.gather(*(churn(stores[i % 4], seed=i, steps=60) for i in range(24)))
    assert await check_namespace(real_redis, namespace) == []
    # the state still answers like the last writes imply: re-register everything, then
    # unregister everything, and nothing is left
    for name in NAMES:
        for addr in ADDRS:
            for cluster in ("C1", "C2"):
                await stores[0].unregister_broker(cluster, addr, name)
    assert await check_namespace(real_redis, namespace) == []
    assert await stores[0].all_topics() == []
    assert (await stores[0].get_cluster_info()).broker_addr_table == {}


CHURN_SCRIPT = """
import asyncio, sys
import redis.asyncio as aioredis
from namesrv_redis.store.route_store import RouteStore
from tests.test_store_concurrency import churn

async def main():
    client = aioredis.Redis.from_url(sys.argv[1])
    store = RouteStore(client, sys.argv[2])
    await store.load_scripts()
    await churn(store, int(sys.argv[3]), 150)
    await client.aclose()

asyncio.run(main())
"""


async def test_several_processes_end_consistent(
    redis_server: RedisServerProcess, namespace: str
) -> None:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHURN_SCRIPT,
            redis_server.url,
            namespace,
            str(seed),
            cwd=str(__import__("pathlib").Path(__file__).parent.parent),
        )
        for seed in range(4)
    ]
    codes = [await p.wait() for p in procs]
    assert codes == [0, 0, 0, 0]
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        assert await check_namespace(client, namespace) == []
    finally:
        await client.aclose()


async def test_dead_broker_removed_exactly_once(
    redis_server: RedisServerProcess, namespace: str
) -> None:
    real_redis = create_redis(redis_server.url)  # the pods' pool: bursts wait for a connection
    store = RouteStore(real_redis, namespace)
    await store.load_scripts()
    for i in range(10):
        await store.register_broker(
            BrokerRegistration(
                "C",
                f"10.1.0.{i}:10911",
                f"b{i}",
                0,
                data_version='{"counter":1,"timestamp":1}',
                topics=[QueueConfig("T", 1, 1, 6), QueueConfig(f"T{i}", 1, 1, 6)],
            )
        )
        await real_redis.delete(store.keys.live("C", f"10.1.0.{i}:10911"))
    results = await asyncio.gather(
        *(
            store.remove_broker(  # past every deadline (a gone key alone is no expiry)
                RemovalReason.EXPIRED, "C", f"10.1.0.{i % 10}:10911", now=now_ms() + 3_600_000
            )
            for i in range(200)
        )
    )
    assert sum(r.removed for r in results) == 10
    assert await store.all_topics() == []
    assert await check_namespace(real_redis, namespace) == []
    await real_redis.aclose()


def test_check_command(redis_server: RedisServerProcess, namespace: str) -> None:
    async def setup(corrupt: bool) -> None:
        client = aioredis.Redis.from_url(redis_server.url)
        store = RouteStore(client, namespace)
        await store.load_scripts()
        await store.register_broker(
            BrokerRegistration(
                "C",
                "10.2.0.1:10911",
                "b",
                0,
                data_version='{"counter":1,"timestamp":1}',
                topics=[QueueConfig("T1", 1, 1, 6), QueueConfig("T2", 1, 1, 6)],
            )
        )
        if corrupt:  # what no script can do: a reverse-index entry with no queue data
            await client.sadd(store.keys.broker_topics("b"), "Ghost")
        await client.aclose()

    cmd = [
        sys.executable,
        "-m",
        "namesrv_redis.cli",
        "check",
        "--redis-url",
        redis_server.url,
        "--namespace",
        namespace,
    ]
    asyncio.run(setup(corrupt=False))
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "consistent" in ok.stdout, ok.stderr
    asyncio.run(setup(corrupt=True))
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "reverse_index_without_queue_data" in bad.stdout and "Ghost" in bad.stdout
