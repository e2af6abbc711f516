"""The stall budget (issue #21 item 4): no script of ours blocks Redis past the budget, whatever
the broker's size, and readers still see each registration and removal whole.

A store with a 1 ms budget (chunks of 50 topics) shows the chunked paths on small tables, on
fakeredis and real Redis; a 100,000-topic broker shows the budget itself on real Redis, from
the durations SLOWLOG records (deterministic, unlike a wall clock on a loaded host).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest

from namesrv_redis.rocketmq.model import QueueConfig, QueueData
from namesrv_redis.store.liveness import Sweeper
from namesrv_redis.store.route_store import (
    BrokerRegistration,
    RegisterMode,
    RegisterStatus,
    RemovalReason,
    RouteStore,
    chunk_for_budget,
    queue_configs,
)

ADDR = "10.0.0.1:10911"


def table(n: int, queues: int = 8, prefix: str = "T") -> list[QueueConfig]:
    return queue_configs((f"{prefix}{i}", queues, queues, 6, 0) for i in range(n))


def reg(topics: Sequence[QueueConfig], counter: int = 1, **kw: Any) -> BrokerRegistration:
    return BrokerRegistration(
        "C1",
        kw.pop("addr", ADDR),
        kw.pop("name", "broker-a"),
        kw.pop("broker_id", 0),
        data_version=f'{{"counter":{counter},"timestamp":1}}',
        topics=topics,
        conn_id="conn-1",
        **kw,
    )


async def store_of(redis: Any, namespace: str, budget_ms: int = 1, **kw: Any) -> RouteStore:
    store = RouteStore(redis, namespace, command_budget_ms=budget_ms, **kw)
    await store.load_scripts()
    return store


async def full_state(store: RouteStore, brokers: Sequence[str] = ("broker-a",)) -> dict[str, Any]:
    """Every table a reader or the next registration uses, route versions aside."""
    topics = await store.all_topics()
    routes = {}
    for t in topics:
        route = await store.get_route_raw(t)
        routes[t] = (
            None
            if route is None
            else sorted(
                (q.broker_name, q.read_queue_nums, q.write_queue_nums, q.perm, q.topic_sys_flag)
                for q in route.queue_datas
            )
        )
    info = await store.get_cluster_info()
    names = sorted(info.broker_addr_table)
    return {
        "routes": routes,
        "brokers": {n: info.broker_addr_table[n].broker_addrs for n in names},
        "clusters": info.cluster_addr_table,
        "reverse": {n: await store.broker_topics(n) for n in brokers},
        "tokens": await store.redis.hgetall(store.keys.tables),
    }


async def leftovers(store: RouteStore) -> list[bytes]:
    """Staging and pending keys of the namespace."""
    found = [k async for k in store.redis.scan_iter(match=store.keys.prefix + "stage:*")]
    if await store.redis.exists(store.keys.pending):
        found.append(store.keys.pending.encode())
    return found


async def route_queues(store: RouteStore, topic: str) -> int | None:
    route = await store.get_route_raw(topic)
    if route is None:
        return None
    (q,) = [q for q in route.queue_datas if q.broker_name == "broker-a"]
    return q.read_queue_nums


def test_chunk_follows_budget() -> None:
    assert chunk_for_budget(50) == 2500
    assert chunk_for_budget(1) == 50
    assert chunk_for_budget(10_000) == 10_000


@pytest.mark.parametrize("delete", [False, True])
async def test_chunked_writes_equal_one_script(redis: Any, namespace: str, delete: bool) -> None:
    """Register, re-register (changed queues, fewer topics), re-register unchanged, remove:
    chunked (chunks of 50) and in one script (default budget) leave the same tables."""
    chunked = await store_of(redis, namespace + "c")
    chunked.delete_topic_with_broker_registration = delete
    whole = await store_of(redis, namespace + "w", budget_ms=50)
    whole.delete_topic_with_broker_registration = delete
    steps = [
        reg(table(600), 1, table_token="t1"),
        reg(table(450, queues=16), 2, table_token="t2"),
        reg(table(450, queues=16), 2, table_token="t2"),
    ]
    # a diff of more topics than a chunk, on top of the stored table t2
    steps.append(
        reg(
            table(450, queues=32)[:300],
            3,
            table_token="t3",
            base_token="t2",
            mode=RegisterMode.DIFF,
        )
    )
    for r in steps:
        version = await chunked.route_version()
        a, b = await chunked.register_broker(r), await whole.register_broker(r)
        # one route version bump (and event) per logical write, none when nothing changed
        assert await chunked.route_version() - version == (1 if b.version else 0)
        assert a.status is b.status is RegisterStatus.OK
        assert a.topics_written == b.topics_written
        assert await full_state(chunked) == await full_state(whole)
        assert await leftovers(chunked) == []
    # the stored token lets an unchanged body re-register lite, as after one script
    lite = await chunked.register_broker(reg((), 3, table_token="t3", mode=RegisterMode.LITE))
    assert lite.status is RegisterStatus.OK
    for store in (chunked, whole):
        removed = await store.unregister_broker("C1", ADDR, "broker-a")
        assert removed.removed
        assert await store.all_topics() == []
        assert await store.broker_topics("broker-a") == []
    assert await leftovers(chunked) == []


@pytest.mark.parametrize("reason", list(RemovalReason))
async def test_chunked_removal_every_path(
    redis: Any, namespace: str, reason: RemovalReason
) -> None:
    store = await store_of(redis, namespace)
    assert (await store.register_broker(reg(table(300)))).status is RegisterStatus.OK
    assert await store.get_route_raw("T7") is not None
    now = None
    if reason is RemovalReason.EXPIRED:  # its key gone and its deadline past: a real expiry
        await redis.delete(store.keys.live("C1", ADDR))
        now = int(time.time() * 1000) + 10**9
    result = await store.remove_broker(reason, "C1", ADDR, "broker-a", conn_id="conn-1", now=now)
    assert result.removed
    assert await store.all_topics() == []
    assert await redis.exists(store.keys.broker_topics("broker-a")) == 0
    assert await leftovers(store) == []


async def test_small_registration_is_one_call(redis: Any, namespace: str) -> None:
    """Up to a chunk of topics: one script call, nothing staged."""
    store = await store_of(redis, namespace, budget_ms=50)
    calls: list[Any] = []
    original = store._write

    async def counting(script: Any, args: Sequence[Any], *, confirm: bool = True) -> Any:
        calls.append(script)
        return await original(script, args, confirm=confirm)

    store._write = counting  # type: ignore[method-assign]
    assert (await store.register_broker(reg(table(2500)))).status is RegisterStatus.OK
    assert calls == [store.scripts.register_broker]
    calls.clear()
    assert (await store.register_broker(reg(table(2501), 2))).status is RegisterStatus.OK
    assert calls[0] is store.scripts.stage_topics


async def test_readers_see_a_registration_whole(redis: Any, namespace: str) -> None:
    """Between any two chunks of a registration and of a removal, every topic's route is all
    old or all new — the same for every topic at each point."""
    store = await store_of(redis, namespace)
    old, new = table(400, queues=8), table(400, queues=16)
    await store.register_broker(reg(old, 1))
    probe = [f"T{i}" for i in range(0, 400, 7)]

    async def seen() -> set[int | None]:
        return {await route_queues(store, t) for t in probe}

    stage = await store._stage(new)
    assert await seen() == {8}  # staged: invisible
    assert (await store._register(reg(new, 2), None, new, stage)).status is RegisterStatus.OK
    steps = 0
    while True:
        assert await seen() == {16}
        done, _ = await store._apply_step("broker-a", True)
        steps += 1
        if done:
            break
    assert steps >= 8  # 400 topics in chunks of 50
    assert await seen() == {16}
    result, pending = await store._remove(
        RemovalReason.UNREGISTERED, "C1", ADDR, "broker-a", conn_id="", now=None
    )
    assert result.removed and pending
    while True:
        assert await seen() == {None}
        done, _ = await store._apply_step("broker-a", True)
        if done:
            break
    assert await store.all_topics() == []


async def test_readers_see_a_write_permission_change_whole(redis: Any, namespace: str) -> None:
    """Wiping the write permission of a broker with more topics than a chunk: every route shows
    it wiped from the script's return on, while the steps rewrite it; adding it back too."""
    store = await store_of(redis, namespace)
    await store.register_broker(reg(table(400), 1, table_token="t1"))
    probe = [f"T{i}" for i in range(0, 400, 7)]

    async def perms() -> set[int]:
        out = set()
        for t in probe:
            route = await store.get_route_raw(t)
            assert route is not None
            out.add(route.queue_datas[0].perm)
        return out

    for mode, perm in (("wipe", 4), ("add", 6)):
        count, pending = await store._write_perm_script("broker-a", mode)
        assert count == 400 and pending
        while True:
            assert await perms() == {perm}
            done, _ = await store._apply_step("broker-a", True)
            if done:
                break
        assert await perms() == {perm}
    assert await leftovers(store) == []
    # the stored table token no longer names what Redis holds: lite is refused
    lite = await store.register_broker(reg((), 1, table_token="t1", mode=RegisterMode.LITE))
    assert lite.status is RegisterStatus.NEED_TOPICS
    assert await store.wipe_write_perm("broker-a") == 400  # and through the public call
    assert await perms() == {4}


async def test_reader_polling_during_chunked_writes(real_redis: Any, namespace: str) -> None:
    """A reader polling routes on its own connection while chunked registrations and a removal
    run: once it has seen a write's outcome in any topic, no topic it reads afterwards shows
    an older state (so it never sees part of a write)."""
    store = await store_of(real_redis, namespace)
    reader = await store_of(real_redis, namespace)
    await store.register_broker(reg(table(600, queues=8), 1))
    generation_of = {8: 1, 16: 2, 4: 3, None: 4}
    probe = ["T0", "T111", "T222", "T333", "T444", "T555", "T599"]
    seen: list[int] = []
    stop = asyncio.Event()

    async def poll() -> None:
        while not stop.is_set():
            for t in probe:
                seen.append(generation_of[await route_queues(reader, t)])
            await asyncio.sleep(0)

    task = asyncio.create_task(poll())
    for counter, queues in ((2, 16), (3, 4)):
        await asyncio.sleep(0.02)
        await store.register_broker(reg(table(600, queues=queues), counter))
    await asyncio.sleep(0.02)
    await store.unregister_broker("C1", ADDR, "broker-a")
    await asyncio.sleep(0.02)
    stop.set()
    await task
    assert seen == sorted(seen)
    assert set(seen) == {1, 2, 3, 4}


async def test_pod_dies_while_staging(redis: Any, namespace: str) -> None:
    """A pod stopping before its commit leaves nothing a reader sees, nothing that blocks the
    next registration, and its stage expires."""
    store = await store_of(redis, namespace, stage_ttl_ms=1000)
    await store.register_broker(reg(table(300), 1))
    _, buckets = await store._stage(table(300, queues=16))  # ... and the pod dies
    assert len(await leftovers(store)) == buckets
    assert await route_queues(store, "T5") == 8
    result = await store.register_broker(reg(table(300, queues=4), 2))
    assert result.status is RegisterStatus.OK
    assert await route_queues(store, "T5") == 4
    for _ in range(60):
        if not await leftovers(store):
            break
        await asyncio.sleep(0.1)
    assert await leftovers(store) == []


async def test_pod_dies_while_applying(redis: Any, namespace: str) -> None:
    """A pod stopping after its commit: readers see the committed table; the next write of
    that broker (or any pod's sweeper) finishes it first; nothing is left."""
    store = await store_of(redis, namespace)
    await store.register_broker(reg(table(300), 1))
    new = table(300, queues=16)
    stage = await store._stage(new)
    await store._register(reg(new, 2), None, new, stage)
    await store._apply_step("broker-a", True)  # ... and the pod dies
    assert await store.pending_writes() == ["broker-a"]
    assert await route_queues(store, "T5") == 16
    # the next registration finds it pending, finishes it, then applies itself
    result = await store.register_broker(reg(table(300, queues=4), 3))
    assert result.status is RegisterStatus.OK
    assert await route_queues(store, "T5") == 4
    assert await leftovers(store) == []
    # the sweeper finishes what nobody else would (here: a removal left half done)
    await store._remove(RemovalReason.UNREGISTERED, "C1", ADDR, "broker-a", conn_id="", now=None)
    await store._apply_step("broker-a", True)
    assert await store.get_route_raw("T5") is None
    await Sweeper(store).sweep_once()
    assert await store.all_topics() == []
    assert await leftovers(store) == []


async def test_writes_during_a_pending_put_win(redis: Any, namespace: str) -> None:
    """A topic deleted after a chunked registration committed stays deleted when the rest of
    it is applied, and the table token is not stored (the next registration restores it)."""
    store = await store_of(redis, namespace)
    new = table(300)
    stage = await store._stage(new)
    await store._register(reg(new, 1, table_token="t1"), None, new, stage)
    await store.delete_topic("T9")
    assert await store.get_route_raw("T9") is None
    await store.settle("broker-a")
    assert await store.get_route_raw("T9") is None
    assert await redis.hget(store.keys.tables, "broker-a") is None


async def test_stage_refuses_a_topic_of_another_bucket(redis: Any, namespace: str) -> None:
    store = await store_of(redis, namespace)
    from redis.exceptions import ResponseError

    with pytest.raises(ResponseError, match="does not belong to bucket"):
        await store._stage_part(
            "g", 0, 7, [QueueConfig("T1", 1, 1, 6, 0), QueueConfig("T2", 1, 1, 6, 0)]
        )
    assert await leftovers(store) == []


async def test_commit_refuses_an_incomplete_stage(redis: Any, namespace: str) -> None:
    store = await store_of(redis, namespace)
    new = table(300)
    generation, buckets = await store._stage(new)
    await redis.delete(store.keys.stage(generation, 1))
    from redis.exceptions import ResponseError

    with pytest.raises(ResponseError, match="stage incomplete"):
        await store._register(reg(new), None, new, (generation, buckets))
    assert await store.all_topics() == []
    assert await store.pending_writes() == []


BIG = 100_000
BUDGET_MS = 50
SLACK_MS = 250
"""SLOWLOG measures time spent executing, which a loaded 2-core host stretches too."""


async def test_100k_topic_broker_within_budget(real_redis: Any, namespace: str) -> None:
    """Register, re-register with a changed data version, and remove a 100,000-topic broker:
    no command of ours runs longer than the budget (plus slack) in SLOWLOG."""
    store = await store_of(real_redis, namespace, budget_ms=BUDGET_MS)
    old = await real_redis.config_get("slowlog-*")
    await real_redis.config_set("slowlog-log-slower-than", 0)
    await real_redis.config_set("slowlog-max-len", 100_000)
    try:
        longest: dict[str, float] = {}
        steps = [
            ("register", store.register_broker(reg(table(BIG), 1))),
            ("re-register", store.register_broker(reg(table(BIG, queues=16), 2))),
            (
                "connection closed",
                store.remove_broker(RemovalReason.CONNECTION_CLOSED, "C1", ADDR, conn_id="conn-1"),
            ),
        ]
        for name, step in steps:
            await real_redis.slowlog_reset()
            await step
            entries = await real_redis.slowlog_get(100_000)
            ours = [
                e for e in entries if e["command"].split(b" ")[0].upper() in (b"EVALSHA", b"EVAL")
            ]
            assert ours, name
            longest[name] = max(e["duration"] for e in ours) / 1000
        assert await store.all_topics() == []
        assert all(ms < BUDGET_MS + SLACK_MS for ms in longest.values()), longest
    finally:
        await real_redis.config_set("slowlog-log-slower-than", old["slowlog-log-slower-than"])
        await real_redis.config_set("slowlog-max-len", old["slowlog-max-len"])


async def test_pod_applies_the_configured_budget(redis_server: Any) -> None:
    """``redisCommandBudgetMillis`` reaches the pod's store and the offload thread's: a broker
    registering 3,000 topics (a body big enough to be stored off the event loop) through the
    remoting port is chunked, routes it whole, and unregisters in chunks."""
    from namesrv_redis.remoting.client import RemotingClient
    from namesrv_redis.sim.broker import SimBroker
    from namesrv_redis.testing import NameServer

    options = {"redisCommandBudgetMillis": 1, "flow_offload_min_body": 1024}
    with NameServer(redis=redis_server.url, options=options) as ns:
        assert ns.pod.store is not None and ns.pod.store.chunk == 50
        assert ns.pod.offload is not None and ns.pod.offload._worker is not None
        assert ns.pod.offload._worker.store.chunk == 50
        assert ns.pod.settings.redis_command_budget_millis == 1
        broker = SimBroker("C1", "broker-a", ADDR)
        broker.add_topics([f"T{i}" for i in range(3000)])
        client = await RemotingClient.connect("127.0.0.1", ns.port)
        try:
            assert (await broker.register(client)).code == 0
            route = ns.route("T2999")
            assert route is not None and len(route["queueDatas"]) == 1
            assert len(ns.topics()) == 3000
            assert (await broker.unregister(client)).code == 0
        finally:
            await client.close()
        assert ns.topics() == []


async def test_chunked_registration_is_confirmed_by_the_replica(namespace: str) -> None:
    """With a replica, the broker is answered only once every step is on the replica."""
    from namesrv_redis.store.connection import create_redis
    from namesrv_redis.store.replication import Replication
    from tests.conftest import RedisServerProcess
    from tests.redis_topologies import command, replica_synced, wait_until

    master = RedisServerProcess().start()
    replica = RedisServerProcess("--replicaof", "127.0.0.1", str(master.port)).start()
    client: Any = create_redis(master.url)
    try:
        wait_until(lambda: replica_synced(master.port, replica.port), 10, "the replica to sync")
        store = await store_of(client, namespace, replication=Replication(wait_replicas=1))
        assert (await store.register_broker(reg(table(300)))).status is RegisterStatus.OK
        for key in (store.keys.topic("T299"), store.keys.topic("T0")):
            assert command(replica.port, "HEXISTS", key, "broker-a").endswith(":1\r\n")
        assert command(replica.port, "EXISTS", store.keys.pending).endswith(":0\r\n")
    finally:
        await client.aclose()
        replica.stop()
        master.stop()


async def test_a_committed_stage_outlives_its_ttl(redis: Any, namespace: str) -> None:
    """Once committed, the stage belongs to the pending record: a record rolled forward
    after the stage's TTL still applies every topic."""
    store = await store_of(redis, namespace, stage_ttl_ms=1000)
    new = table(300)
    stage = await store._stage(new)
    await store._register(reg(new, 1), None, new, stage)
    await asyncio.sleep(1.3)
    assert len(await leftovers(store)) == stage[1] + 1  # the buckets and the record
    await store.settle("broker-a")
    assert len(await store.all_topics()) == 300
    assert await route_queues(store, "T299") == 8
    assert await leftovers(store) == []


async def test_a_broken_pending_record_blocks_nothing(redis: Any, namespace: str) -> None:
    """A pending record that is not one (an operator's edit) is ignored by route reads and
    registrations, and the sweeper deletes it."""
    store = await store_of(redis, namespace)
    await store.register_broker(reg(table(10)))
    await redis.hset(store.keys.pending, "broker-a", "{not json")
    assert await route_queues(store, "T3") == 8
    assert (await store.register_broker(reg(table(10, queues=4), 2))).status is RegisterStatus.OK
    assert await route_queues(store, "T3") == 4
    await Sweeper(store).sweep_once()
    assert await store.pending_writes() == []


async def run_op(
    store: RouteStore, op: str, b: str, addr: str, r: BrokerRegistration, topic: str
) -> Any:
    if op in ("register", "lite"):
        return await store.register_broker(r)
    if op == "remove":
        return await store.remove_broker(RemovalReason.UNREGISTERED, "C1", addr, b)
    if op == "delete":
        return await store.delete_topic(topic)
    if op == "topic":
        return await store.register_topic(topic, [QueueData(b, 2, 2, 6, 0)])
    if op == "add":
        return await store.add_write_perm(b)
    return await store.wipe_write_perm(b)


@pytest.mark.parametrize("seed", [1, 2])
async def test_random_histories_chunked_equal_one_script(
    redis: Any, namespace: str, seed: int
) -> None:
    """Random registrations (big and small, changed or not, lite, both delete modes),
    removals, topic deletions and registrations, write-permission changes: after each step a
    store writing in chunks of 50 holds exactly what one writing in one script does."""
    import random

    rnd = random.Random(seed)
    chunked = await store_of(redis, namespace + "c")
    whole = await store_of(redis, namespace + "w", budget_ms=50)
    names = ("b0", "b1", "b2")
    counters = dict.fromkeys(names, 1)
    tokens = {b: "" for b in counters}
    seen: set[tuple[str, str]] = set()
    for step in range(80):
        op = rnd.choice(
            ["register"] * 4 + ["lite"] * 2 + ["remove", "delete", "topic", "perm", "add"]
        )
        b = rnd.choice(names)
        addr = f"10.0.0.{b[1]}:10911"
        delete = rnd.random() < 0.5
        for store in (chunked, whole):
            store.delete_topic_with_broker_registration = delete
        if op == "register":
            if rnd.random() < 0.7:
                counters[b] += 1
            n = rnd.choice([0, 20, 120, 320])
            queues = rnd.choice([4, 8])
            topics = [
                QueueConfig(f"T{i}", queues, queues, 6, 0)
                for i in sorted(rnd.sample(range(400), n))
            ]
            r = reg(topics, counters[b], name=b, addr=addr, table_token=f"{b}-{step}")
        else:  # lite: the body this broker last registered, unchanged
            r = reg(
                (), counters[b], name=b, addr=addr, mode=RegisterMode.LITE, table_token=tokens[b]
            )
        topic = f"T{rnd.randrange(400)}"
        a = await run_op(chunked, op, b, addr, r, topic)
        w = await run_op(whole, op, b, addr, r, topic)
        assert type(a) is type(w), (step, op)
        if op in ("register", "lite"):
            assert a.status is w.status, (step, op)
            if op == "register" and a.status is RegisterStatus.OK:
                tokens[b] = r.table_token
            seen.add((op, a.status.value))
        assert await full_state(chunked, names) == await full_state(whole, names), (step, op, b)
        assert await leftovers(chunked) == []
    assert {("lite", "ok"), ("lite", "need_topics"), ("register", "ok")} <= seen
