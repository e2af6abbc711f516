"""Every Lua script through the store API, on fakeredis and on a real redis-server (one
parametrised ``redis`` fixture): the scripts the model-based test does not drive, events,
idempotence and script loading."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from namesrv_redis.rocketmq.model import QueueConfig, QueueData
from namesrv_redis.store.keys import ORDER_TOPIC_CONFIG
from namesrv_redis.store.route_store import (
    BrokerRegistration,
    RegisterMode,
    RegisterStatus,
    RouteStore,
)
from namesrv_redis.store.scripts import lua_dir, script_names

DV1 = '{"counter":1,"timestamp":1}'


def reg(
    name: str = "a",
    addr: str = "10.0.0.1:10911",
    broker_id: int = 0,
    dv: str = DV1,
    topics: tuple[str, ...] = ("T1", "T2"),
    **kw: Any,
) -> BrokerRegistration:
    return BrokerRegistration(
        "C",
        addr,
        name,
        broker_id,
        data_version=dv,
        topics=[QueueConfig(t, 4, 4, 6) for t in topics],
        **kw,
    )


async def store_of(redis: Any, namespace: str) -> RouteStore:
    s = RouteStore(redis, namespace)
    await s.load_scripts()
    return s


async def dump(redis: Any, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async for key in redis.scan_iter(match=prefix.replace("{", "\\{").replace("}", "\\}") + "*"):
        k = key.decode()
        t = (await redis.type(key)).decode()
        if t == "hash":
            out[k] = {
                a.decode(): b.decode()
                for a, b in (await redis.hgetall(key)).items()
                if a != b"last"
            }
        elif t == "set":
            out[k] = sorted(m.decode() for m in await redis.smembers(key))
        elif t == "zset":
            out[k] = sorted(m.decode() for m in await redis.zrange(key, 0, -1))
        elif t == "string":
            out[k] = (await redis.get(key)).decode()
    return out


def test_every_lua_file_is_a_registered_script() -> None:
    files = {p.stem for p in lua_dir().glob("*.lua")} - {"_common"}
    assert files == set(script_names())


async def test_scripts_survive_a_script_cache_flush(redis: Any, namespace: str) -> None:
    s = await store_of(redis, namespace)
    await redis.script_flush()
    assert (await s.register_broker(reg())).status is RegisterStatus.OK  # NOSCRIPT fallback
    assert await s.get_route("T1") is not None


async def test_slave_learns_master_and_ha(redis: Any, namespace: str) -> None:
    s = await store_of(redis, namespace)
    await s.register_broker(reg(ha_server_addr="10.0.0.1:10912"))
    slave = await s.register_broker(reg(addr="10.0.0.2:10911", broker_id=1))
    assert (slave.master_addr, slave.ha_server_addr) == ("10.0.0.1:10911", "10.0.0.1:10912")
    master = await s.register_broker(reg())
    assert master.master_addr is None


async def test_heartbeat_and_query_data_version(redis: Any, namespace: str) -> None:
    s = await store_of(redis, namespace)
    assert not await s.heartbeat("C", "10.0.0.1:10911")
    assert await s.query_data_version("C", "10.0.0.1:10911", DV1) == (True, None)
    await s.register_broker(reg(heartbeat_timeout_ms=60_000))
    await redis.pexpire(s.keys.live("C", "10.0.0.1:10911"), 5_000)
    assert await s.heartbeat("C", "10.0.0.1:10911")
    assert await redis.pttl(s.keys.live("C", "10.0.0.1:10911")) > 50_000  # refreshed
    await redis.pexpire(s.keys.live("C", "10.0.0.1:10911"), 5_000)
    assert await s.query_data_version("C", "10.0.0.1:10911", DV1) == (False, DV1)
    assert await redis.pttl(s.keys.live("C", "10.0.0.1:10911")) > 50_000
    changed, stored = await s.query_data_version(
        "C", "10.0.0.1:10911", '{"counter":9,"timestamp":1}'
    )
    assert changed and stored == DV1


async def test_register_topic_all_or_nothing(redis: Any, namespace: str) -> None:
    s = await store_of(redis, namespace)
    await s.register_broker(reg())
    assert not await s.register_topic("New", [QueueData("a", 2, 2, 6), QueueData("ghost", 1, 1, 6)])
    assert await s.get_route("New") is None
    assert await s.register_topic("New", [QueueData("a", 2, 2, 6)])
    route = await s.get_route("New")
    assert route is not None and route.queue_datas == [QueueData("a", 2, 2, 6)]


async def test_single_topic_first_registration_refused(redis: Any, namespace: str) -> None:
    s = await store_of(redis, namespace)
    assert (await s.register_broker(reg(topics=("Only",)))).status is RegisterStatus.REFUSED
    assert await s.all_topics() == [] and (await s.get_cluster_info()).broker_addr_table == {}
    await s.register_broker(reg())
    assert (
        await s.register_broker(reg(topics=("Only",), dv='{"counter":2,"timestamp":1}'))
    ).status is RegisterStatus.OK


async def test_lite_registration(redis: Any, namespace: str) -> None:
    s = await store_of(redis, namespace)
    lite = reg(mode=RegisterMode.LITE, table_token="tA")
    assert (await s.register_broker(lite)).status is RegisterStatus.NEED_TOPICS
    await s.register_broker(reg(table_token="tA"))
    assert (await s.register_broker(lite)).status is RegisterStatus.OK
    changed = reg(mode=RegisterMode.LITE, table_token="tA", dv='{"counter":2,"timestamp":1}')
    assert (await s.register_broker(changed)).status is RegisterStatus.NEED_TOPICS
    # a master's lite registration also needs the stored table to be this body's
    other_body = reg(mode=RegisterMode.LITE, table_token="tB")
    assert (await s.register_broker(other_body)).status is RegisterStatus.NEED_TOPICS
    await s.wipe_write_perm("a")
    assert (await s.register_broker(lite)).status is RegisterStatus.NEED_TOPICS


async def test_full_registration_that_matches_restores_the_token(
    redis: Any, namespace: str
) -> None:
    s = await store_of(redis, namespace)
    await s.register_broker(reg())  # stored without a token (as before an upgrade)
    assert not await redis.hexists(s.keys.tables, "a")
    r = await s.register_broker(reg(table_token="tA"))  # same data version, same table
    assert (r.status, r.topics_written) == (RegisterStatus.OK, 0)
    assert await redis.hget(s.keys.tables, "a") == b"0:k:tA"
    # same data version but a different perm: RocketMQ keeps the stored one; no token
    await redis.hdel(s.keys.tables, "a")
    other = reg(table_token="tB")
    other.topics = [QueueConfig("T1", 4, 4, 2), QueueConfig("T2", 4, 4, 6)]
    assert (await s.register_broker(other)).topics_written == 0
    assert not await redis.hexists(s.keys.tables, "a")


async def test_kv_config(redis: Any, namespace: str) -> None:
    s = await store_of(redis, namespace)
    assert await s.list_kv("ns") is None
    await s.put_kv("ns", "k", "v")
    assert await s.get_kv("ns", "k") == "v"
    assert await s.list_kv("ns") == {"k": "v"}
    await s.delete_kv("ns", "k")
    assert await s.get_kv("ns", "k") is None
    assert await s.list_kv("ns") == {}  # emptied, but it exists (as in RocketMQ)


async def test_order_topic_conf_in_route(redis: Any, namespace: str) -> None:
    s = await store_of(redis, namespace)
    await s.register_broker(reg())
    v0 = await s.route_version()
    await s.put_kv(ORDER_TOPIC_CONFIG, "T1", "a:4")
    assert await s.route_version() == v0 + 1  # a route answer changed
    with_conf = await s.get_route("T1", with_order_conf=True)
    assert with_conf is not None and with_conf.order_topic_conf == "a:4"
    assert (await s.get_route("T1")).order_topic_conf is None  # type: ignore[union-attr]


async def test_config_update(redis: Any, namespace: str) -> None:
    s = await store_of(redis, namespace)
    await s.update_config({"orderMessageEnable": "true"})
    assert await s.get_config() == {"orderMessageEnable": "true"}


async def test_filter_servers_in_route(redis: Any, namespace: str) -> None:
    s = await store_of(redis, namespace)
    await s.register_broker(reg(filter_servers=["10.0.0.9:1"]))
    route = await s.get_route("T1")
    assert route is not None and route.filter_server_table == {"10.0.0.1:10911": ["10.0.0.9:1"]}
    await s.register_broker(reg(filter_servers=[], dv='{"counter":2,"timestamp":1}'))
    assert (await s.get_route("T1")).filter_server_table == {}  # type: ignore[union-attr]


async def test_acting_master_wipes_write_when_master_leaves(redis: Any, namespace: str) -> None:
    s = await store_of(redis, namespace)
    await s.register_broker(reg(enable_acting_master=True))
    await s.register_broker(reg(addr="10.0.0.2:10911", broker_id=1, enable_acting_master=True))
    await s.unregister_broker("C", "10.0.0.1:10911", "a")
    raw = await s.get_route("T1")
    assert (
        raw is not None
        and raw.queue_datas[0].perm == 4
        and raw.broker_datas[0].broker_addrs == {1: "10.0.0.2:10911"}
    )
    acting = await s.get_route("T1", support_acting_master=True)
    assert acting is not None and acting.broker_datas[0].broker_addrs == {0: "10.0.0.2:10911"}


async def test_stale_state_version_refused(redis: Any, namespace: str) -> None:
    s = await store_of(redis, namespace)
    await s.register_broker(reg(state_version=5))
    stale = await s.register_broker(reg(addr="10.0.0.2:10911", state_version=3))
    assert stale.status is RegisterStatus.STALE_STATE
    route = await s.get_route("T1")
    assert route is not None and route.broker_datas[0].broker_addrs == {0: "10.0.0.1:10911"}


async def test_writes_are_idempotent(redis: Any, namespace: str) -> None:
    s = await store_of(redis, namespace)
    writes = [
        lambda: s.register_broker(reg(), now=1),
        lambda: s.register_broker(reg(addr="10.0.0.2:10911", broker_id=1), now=1),
        lambda: s.wipe_write_perm("a"),
        lambda: s.put_kv("ns", "k", "v"),
        lambda: s.delete_topic("T2"),
        lambda: s.unregister_broker("C", "10.0.0.2:10911", "a"),
        lambda: s.delete_kv("ns", "k"),
    ]
    for write in writes:
        await write()
        once = await dump(redis, s.keys.prefix)
        await write()
        assert await dump(redis, s.keys.prefix) == once


async def test_namespaces_are_isolated(redis: Any, namespace: str) -> None:
    one, two = await store_of(redis, namespace + "-1"), await store_of(redis, namespace + "-2")
    await one.register_broker(reg())
    assert await two.get_route("T1") is None and await two.all_topics() == []
    await two.register_broker(reg(name="b"))
    assert [b.broker_name for b in (await one.get_route("T1")).broker_datas] == ["a"]  # type: ignore[union-attr]


async def test_events_are_published(real_redis: Any, namespace: str) -> None:
    s = await store_of(real_redis, namespace)
    pubsub = real_redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(s.keys.events)
    await s.register_broker(reg())
    await s.register_broker(reg())  # nothing changed: no event
    await s.wipe_write_perm("a")
    messages = []
    for _ in range(50):
        m = await pubsub.get_message(timeout=0.1)
        if m:
            messages.append(orjson.loads(m["data"]))
        if len(messages) == 2:
            break
    await asyncio.sleep(0.2)
    assert await pubsub.get_message(timeout=0.1) is None
    await pubsub.aclose()
    assert messages[0]["kind"] == "register" and set(messages[0]["topics"]) == {"T1", "T2"}
    assert messages[0]["brokers"] == ["a"]
    assert messages[1] == {
        "v": messages[0]["v"] + 1,
        "kind": "wipe_write_perm",
        "topics": ["T1", "T2"],
        "brokers": [],
    }


async def test_deleted_topic_comes_back_with_the_next_registration(
    redis: Any, namespace: str
) -> None:
    s = await store_of(redis, namespace)
    await s.register_broker(reg(table_token="tA"))
    assert await s.delete_topic("T1") == 1
    assert await s.get_route("T1") is None
    # the unchanged periodic re-registration cannot take the body-less path any more
    lite = reg(mode=RegisterMode.LITE, table_token="tA")
    assert (await s.register_broker(lite)).status is RegisterStatus.NEED_TOPICS
    assert (await s.register_broker(reg(table_token="tA"))).status is RegisterStatus.OK
    assert await s.get_route("T1") is not None


DV2 = '{"counter":2,"timestamp":1}'
DV3 = '{"counter":3,"timestamp":1}'


def diff(base: str, token: str, topics: tuple[str, ...], **kw: Any) -> BrokerRegistration:
    return reg(mode=RegisterMode.DIFF, base_token=base, table_token=token, topics=topics, **kw)


async def test_diff_registration_writes_only_what_changed(redis: Any, namespace: str) -> None:
    s = await store_of(redis, namespace)
    assert (await s.register_broker(reg(table_token="tA"))).status is RegisterStatus.OK
    assert await redis.hget(s.keys.tables, "a") == b"0:k:tA"
    # a new data version whose table adds T3 only
    r = await s.register_broker(diff("tA", "tB", ("T3",), dv=DV2))
    assert (r.status, r.topics_written) == (RegisterStatus.OK, 1)
    assert await s.all_topics() == ["T1", "T2", "T3"]
    assert await redis.hget(s.keys.tables, "a") == b"0:k:tB"
    # the same body again (another pod got it too): already stored, nothing to write
    r = await s.register_broker(diff("tA", "tB", ("T3",), dv=DV2))
    assert (r.status, r.topics_written, r.version) == (RegisterStatus.OK, 0, 0)


async def test_diff_refused_unless_the_stored_table_is_its_base(redis: Any, namespace: str) -> None:
    s = await store_of(redis, namespace)
    # nothing registered yet
    assert (await s.register_broker(diff("", "tA", ()))).status is RegisterStatus.NEED_TOPICS
    await s.register_broker(reg(table_token="tA"))
    before = await dump(redis, s.keys.prefix)
    for refused in (
        diff("tX", "tB", ("T3",), dv=DV2),  # computed against another table
        diff("", "tB", ("T3",), dv=DV2),  # against none
        diff("tA", "tB", ("T3",)),  # same data version: RocketMQ would write new topics only
        diff("tA", "tB", ("T3",), dv=DV2, addr="10.0.0.9:10911"),  # another process
        diff("tA", "tB", ("T3",), dv=DV2, name="z"),  # renamed
    ):
        assert (await s.register_broker(refused)).status is RegisterStatus.NEED_TOPICS
    assert await dump(redis, s.keys.prefix) == before


async def test_other_queue_data_writes_forget_the_table(redis: Any, namespace: str) -> None:
    s = await store_of(redis, namespace)
    changes = [
        lambda: s.wipe_write_perm("a"),
        lambda: s.delete_topic("T1"),
        lambda: s.register_topic("T9", [QueueData("a", 1, 1, 6)]),
    ]
    for i, change in enumerate(changes):
        dv = f'{{"counter":{10 + i},"timestamp":1}}'
        await s.register_broker(reg(table_token=f"t{i}", dv=dv))
        assert await redis.hexists(s.keys.tables, "a")
        await change()
        assert not await redis.hexists(s.keys.tables, "a"), i
        refused = diff(f"t{i}", f"n{i}", (), dv=DV3)
        assert (await s.register_broker(refused)).status is RegisterStatus.NEED_TOPICS
    # the group leaving takes its token with it
    await s.register_broker(reg(table_token="tZ", dv=DV2))
    await s.unregister_broker("C", "10.0.0.1:10911", "a")
    assert await redis.hlen(s.keys.tables) == 0


async def test_table_token_records_the_delete_mode(redis: Any, namespace: str) -> None:
    s = RouteStore(redis, namespace, delete_topic_with_broker_registration=True)
    await s.load_scripts()
    await s.register_broker(reg(topics=("T1", "T2", "T3"), table_token="tA"))
    assert await redis.hget(s.keys.tables, "a") == b"0:d:tA"
    r = await s.register_broker(diff("tA", "tB", ("T4",), dv=DV2))
    assert r.status is RegisterStatus.OK
    assert await s.all_topics() == ["T1", "T2", "T3", "T4"]
    # a pod configured to keep missing topics does not match this table's token
    keeping = await store_of(redis, namespace)
    refused = diff("tB", "tC", ("T5",), dv=DV3)
    assert (await keeping.register_broker(refused)).status is RegisterStatus.NEED_TOPICS


async def test_slave_diff_needs_no_table(redis: Any, namespace: str) -> None:
    s = await store_of(redis, namespace)
    await s.register_broker(reg(table_token="tA"))
    slave = dict(addr="10.0.0.2:10911", broker_id=1)
    await s.register_broker(reg(table_token="tS", **slave))
    assert await redis.hget(s.keys.tables, "a") == b"0:k:tA"  # a 4.x slave writes no topics
    r = await s.register_broker(diff("", "tS2", (), dv=DV2, **slave))
    assert (r.status, r.master_addr) == (RegisterStatus.OK, "10.0.0.1:10911")
