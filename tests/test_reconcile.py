"""Level-triggered repair on a real redis-server (docs/ha.md, Repair): whatever part of a
connected broker's state Redis loses is put back from the registration the pod accepted,
a broker that really left is never resurrected, and a refresh that finds the liveness key
evicted recreates it instead of letting the sweeper remove a heartbeating broker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from namesrv_redis.domain.rebuild import PackedBody
from namesrv_redis.domain.reconcile import expected_of
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.sim.broker import SimBroker
from namesrv_redis.store.check import check_namespace
from namesrv_redis.store.keys import Keys, broker_ident
from namesrv_redis.store.liveness import Sweeper, remove_expired
from namesrv_redis.store.redis_tls import minimal_acl
from namesrv_redis.store.route_store import (
    BrokerRegistration,
    Refresh,
    RegisterStatus,
    RepairTarget,
    RouteStore,
    now_ms,
    queue_configs,
)
from tests.conftest import RedisServerProcess
from tests.inproc import InProcessServer
from tests.test_script_args import snapshot

pytestmark = [pytest.mark.real_redis]

TOPICS = [f"T{i}" for i in range(600)]  # more than one verification chunk (256)


@pytest.fixture
async def pod(real_redis: Any, namespace: str) -> AsyncIterator[InProcessServer]:
    server = await InProcessServer(real_redis, namespace).start()
    yield server
    await server.stop()


@pytest.fixture
async def connected(pod: InProcessServer) -> AsyncIterator[tuple[RemotingClient, SimBroker]]:
    """A master and a slave of group b1 registered through one connection to the pod."""
    client = await pod.client()
    master = SimBroker("C", "b1", "10.0.0.1:10911", heartbeat_timeout_ms=60_000)
    master.add_topics(TOPICS)
    slave = SimBroker("C", "b1", "10.0.0.2:10911", broker_id=1, heartbeat_timeout_ms=60_000)
    slave.add_topics(TOPICS)
    for b in (master, slave):
        assert (await b.register(client)).code == 0
    yield client, master
    await client.close()


def partial_losses(k: Keys, name: str, addr: str, topic: str) -> dict[str, list[str]]:
    """Each partial deletion of one broker's state: the keys an eviction or a DEL takes."""
    return {
        "topic_hash": [k.topic(topic)],
        "reverse_index": [k.broker_topics(name)],
        "broker_hash": [k.brokers],
        "cluster_set": [k.cluster("C")],
        "clusters_set": [k.clusters],
        "topics_set": [k.topics],
        "liveness_key": [k.live_prefix + broker_ident("C", addr)],
        "deadline_index": [k.deadlines],
    }


def _losses(k: Keys) -> dict[str, list[str]]:
    return {
        **partial_losses(k, "b1", "10.0.0.1:10911", "T7"),
        "many_topic_hashes": [k.topic(t) for t in TOPICS[::3]],
        "addr_names": [k.addr_names],
        "liveness_addr_names_and_broker_hash": [
            k.live("C", "10.0.0.1:10911"),
            k.addr_names,
            k.brokers,
        ],
        "table_tokens_kept_but_topics_gone": [k.topic(t) for t in TOPICS],
    }


async def _routes_of(pod: InProcessServer, topics: list[str]) -> int:
    return sum([await pod.store.get_route(t) is not None for t in topics])


def _without_clock(snap: dict[bytes, Any]) -> dict[bytes, Any]:
    """A snapshot without what a refresh legitimately moves (liveness 'last' and deadlines)."""
    out = {}
    for key, (_, contents, ttl) in snap.items():
        if b":live:" in key:
            contents = [kv for kv in contents if kv[0] != b"last"]
        if key.endswith(b":deadlines") or key.endswith(b":version"):
            contents = None
        out[key] = (contents, ttl)
    return out


@pytest.mark.parametrize("loss", list(_losses(Keys("x"))))
async def test_each_partial_deletion_is_repaired(
    pod: InProcessServer, connected: tuple[RemotingClient, SimBroker], real_redis: Any, loss: str
) -> None:
    keys = pod.store.keys
    before = _without_clock(await snapshot(real_redis, keys.prefix))
    await real_redis.delete(*_losses(keys)[loss])
    outcomes = await pod.processor.reconciler.verify_all()
    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert any(o.repaired for o in outcomes), "nothing was found missing"
    assert await check_namespace(real_redis, keys.namespace) == []
    assert _without_clock(await snapshot(real_redis, keys.prefix)) == before
    assert await _routes_of(pod, TOPICS) == len(TOPICS)
    # idempotent: a second pass finds nothing to repair
    assert all(not o.repaired for o in await pod.processor.reconciler.verify_all())


async def test_the_repair_publishes_the_topics_so_caches_drop_them(
    pod: InProcessServer, connected: tuple[RemotingClient, SimBroker], real_redis: Any
) -> None:
    version = await pod.store.route_version()
    await real_redis.delete(pod.store.keys.topic("T1"), pod.store.keys.topic("T2"))
    got: list[Any] = []
    pod.events.add_listener(got.append)
    await pod.processor.reconciler.verify_all()
    assert await pod.store.route_version() > version
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.02)
    assert got and got[-1].kind == "repair" and set(got[-1].topics) == {"T1", "T2"}


async def test_a_wiped_write_permission_is_not_undone(
    pod: InProcessServer, connected: tuple[RemotingClient, SimBroker], real_redis: Any
) -> None:
    """An admin's change forgets the table token: only missing queue data is restored."""
    assert await pod.store.wipe_write_perm("b1") == len(TOPICS)
    await real_redis.delete(pod.store.keys.topic("T3"))
    await pod.processor.reconciler.verify_all()
    route = await pod.store.get_route("T4")
    assert route is not None and route.queue_datas[0].perm == 4  # still wiped
    assert await pod.store.get_route("T3") is not None  # restored


async def test_a_divergent_value_under_the_table_token_is_rewritten(
    pod: InProcessServer, connected: tuple[RemotingClient, SimBroker], real_redis: Any
) -> None:
    await real_redis.hset(pod.store.keys.topic("T5"), "b1", "1,1,2,0")
    await pod.processor.reconciler.verify_all()
    assert await real_redis.hget(pod.store.keys.topic("T5"), "b1") == b"8,8,6,0"


@pytest.mark.parametrize("how", ["unregistered", "expired", "replaced_by_other_connection"])
async def test_a_broker_that_left_is_not_resurrected(
    pod: InProcessServer, connected: tuple[RemotingClient, SimBroker], real_redis: Any, how: str
) -> None:
    client, master = connected
    stale = pod.processor.accepted.get("C", master.addr)
    assert stale is not None
    keys = pod.store.keys
    if how == "unregistered":
        await master.unregister(client)
    elif how == "expired":
        deadline = await real_redis.zscore(keys.deadlines, broker_ident("C", master.addr))
        await real_redis.delete(keys.live("C", master.addr))
        assert await remove_expired(pod.store, "C", master.addr, "test", now=int(deadline))
    else:  # the broker re-registered through another pod (another connection)
        other = await InProcessServer(real_redis, keys.namespace).start()
        other_client = await other.client()
        master.bump()
        assert (await master.register(other_client)).code == 0
        await other_client.close()
        await other.stop()
    before = await snapshot(real_redis, keys.prefix)
    # the script itself refuses (the pod may not have heard of the departure yet)
    expected = expected_of(stale)
    assert expected is not None
    result = await pod.store.repair_broker(expected.target, expected.topics[:256])
    assert result.status == ("other" if how.startswith("replaced") else "gone")
    assert result.repaired == {} and result.version == 0
    assert await snapshot(real_redis, keys.prefix) == before


async def test_a_broker_whose_every_record_was_lost_waits_for_its_registration(
    pod: InProcessServer, connected: tuple[RemotingClient, SimBroker], real_redis: Any
) -> None:
    """Nothing left to tell an eviction from a removal: nothing is written, and the broker's
    next registration (every 30 s) brings it back, the verification after it the rest."""
    client, master = connected
    keys = pod.store.keys
    await real_redis.delete(
        keys.live("C", master.addr), keys.addr_names, keys.brokers, keys.deadlines
    )
    before = await snapshot(real_redis, keys.prefix)
    outcomes = await pod.processor.reconciler.verify_all()
    # the master is not written back; the slave, whose liveness key is left, repairs its own
    assert [o.status for o in outcomes] == ["gone", "ok"]
    after = await snapshot(real_redis, keys.prefix)
    assert not await real_redis.exists(keys.live("C", master.addr))
    assert b"10.0.0.1:10911" not in await real_redis.hget(keys.brokers, "b1")
    assert after.keys() - before.keys() == {
        keys.brokers.encode(),
        keys.addr_names.encode(),
        keys.deadlines.encode(),
    }
    assert (await master.register(client)).code == 0
    await pod.processor.reconciler.verify_all()
    assert await check_namespace(real_redis, keys.namespace) == []
    assert await _routes_of(pod, TOPICS) == len(TOPICS)


async def test_a_heartbeat_recreates_an_evicted_liveness_key(
    pod: InProcessServer,
    connected: tuple[RemotingClient, SimBroker],
    real_redis: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, master = connected
    keys = pod.store.keys
    live = keys.live("C", master.addr)
    await real_redis.delete(live)
    # the sweeper (and a cleaner's event) do not take a missing key before its deadline
    # for an expiry
    assert not await remove_expired(pod.store, "C", master.addr, "test")
    assert await Sweeper(pod.store).sweep_once() == 0
    with caplog.at_level(logging.WARNING):
        resp = await client.request(
            RequestCode.BROKER_HEARTBEAT,
            {"clusterName": "C", "brokerAddr": master.addr, "brokerName": "b1"},
        )
    assert resp is not None and resp.code == 0
    assert await real_redis.exists(live)
    assert 0 < await real_redis.pttl(live) <= 60_000
    assert "liveness key of broker 10.0.0.1:10911" in caplog.text
    info = await pod.store.live_info("C", master.addr)
    assert info is not None and info["name"] == "b1" and info["id"] == "0"
    # the reconciler fills in what the heartbeat could not know (data version)
    await pod.processor.reconciler.verify_all()
    info = await pod.store.live_info("C", master.addr)
    assert info is not None and info["dv"].startswith('{"counter"')
    assert await check_namespace(real_redis, keys.namespace) == []


async def test_a_query_data_version_recreates_it_and_asks_for_a_registration(
    pod: InProcessServer, connected: tuple[RemotingClient, SimBroker], real_redis: Any
) -> None:
    client, master = connected
    await real_redis.delete(pod.store.keys.live("C", master.addr))
    resp = await client.request(
        RequestCode.QUERY_DATA_VERSION,
        {"clusterName": "C", "brokerAddr": master.addr, "brokerName": "b1", "brokerId": "0"},
        __import__("orjson").dumps(master.data_version),
    )
    assert resp is not None and resp.code == 0
    assert resp.ext_fields is not None and resp.ext_fields["changed"] == "true"
    assert await real_redis.exists(pod.store.keys.live("C", master.addr))


async def test_a_timed_out_broker_is_not_recreated_by_a_late_heartbeat(
    pod: InProcessServer, connected: tuple[RemotingClient, SimBroker], real_redis: Any
) -> None:
    _, master = connected
    keys = pod.store.keys
    ident = broker_ident("C", master.addr)
    await real_redis.zadd(keys.deadlines, {ident: now_ms() - 10})  # past its deadline
    await real_redis.delete(keys.live("C", master.addr))
    assert not await pod.store.heartbeat("C", master.addr)
    assert not await real_redis.exists(keys.live("C", master.addr))
    assert await Sweeper(pod.store).sweep_once() == 1


async def test_a_data_loss_rebuild_restores_topics_whose_table_token_survived(
    pod: InProcessServer, connected: tuple[RemotingClient, SimBroker], real_redis: Any
) -> None:
    """The allkeys-lru case: the epoch and topic hashes evicted, the table tokens kept. The
    re-applied registrations say "already applied"; the verification that follows them
    restores the queue data at once."""
    keys = pod.store.keys
    assert await real_redis.hexists(keys.tables, "b1")
    await real_redis.delete(*[keys.topic(t) for t in TOPICS])
    ok, failed = await pod.processor.rebuild("test: epoch evicted")
    assert (ok, failed) == (2, 0)
    assert await real_redis.hexists(keys.tables, "b1")
    assert await _routes_of(pod, TOPICS) == len(TOPICS)
    assert await check_namespace(real_redis, keys.namespace) == []


async def test_the_loop_repairs_and_a_big_packed_body_is_decoded_off_the_loop(
    pod: InProcessServer, real_redis: Any
) -> None:
    client = await pod.client()
    try:
        big = SimBroker("C", "big", "10.0.0.9:10911")
        big.add_topics([f"Big{i:05d}" for i in range(3000)])  # ~300 KB: kept deflated
        assert (await big.register(client)).code == 0
        for _ in range(200):
            reg = pod.processor.accepted.get("C", big.addr)
            if reg is not None and isinstance(reg.body, PackedBody):
                break
            await asyncio.sleep(0.01)
        assert reg is not None and isinstance(reg.body, PackedBody)
        reconciler = pod.processor.reconciler
        reconciler.interval_ms = 200
        await reconciler.start()
        try:
            await real_redis.delete(*[pod.store.keys.topic(f"Big{i:05d}") for i in (0, 2999)])
            for _ in range(200):
                if await _routes_of(pod, ["Big00000", "Big02999"]) == 2:
                    break
                await asyncio.sleep(0.02)
            assert await _routes_of(pod, ["Big00000", "Big02999"]) == 2
            for _ in range(100):  # the loop goes on: passes are counted
                if reconciler.passes >= 2:
                    break
                await asyncio.sleep(0.05)
            assert reconciler.passes >= 2
        finally:
            await reconciler.stop()
    finally:
        await client.close()


async def test_the_least_privilege_user_may_repair(
    redis_server: RedisServerProcess, real_redis: Any, namespace: str
) -> None:
    """Redis checks the commands a script calls against the user's ACL: the documented rule
    (``minimal_acl``) covers the refresh, the removal guard and the verification."""
    user = f"repair-{namespace}"
    await real_redis.execute_command(
        "ACL", "SETUSER", user, "on", ">pw", *minimal_acl(namespace).split()
    )
    limited = aioredis.Redis.from_url(redis_server.url, username=user, password="pw")
    try:
        store = RouteStore(limited, namespace)
        await store.load_scripts()
        table = queue_configs([("T1", 4, 4, 6, 0), ("T2", 4, 4, 6, 0)])
        dv = '{"counter":1,"timestamp":1}'
        reg = BrokerRegistration(
            "C", "10.0.0.1:1", "b", 0, topics=table, data_version=dv, conn_id="c", table_token="t"
        )
        assert (await store.register_broker(reg)).status is RegisterStatus.OK
        await real_redis.delete(store.keys.live("C", "10.0.0.1:1"), store.keys.topic("T1"))
        assert not await remove_expired(store, "C", "10.0.0.1:1", "test")
        assert await store.refresh_liveness("C", "10.0.0.1:1", conn_id="c") is Refresh.RECREATED
        target = RepairTarget("C", "10.0.0.1:1", "b", 0, dv, 0, "", "t", 120_000, "c")
        result = await store.repair_broker(target, table)
        assert result.status == "ok" and result.repaired == {"queue_data": 1}
        assert await check_namespace(real_redis, namespace) == []
    finally:
        await limited.aclose()
        await real_redis.execute_command("ACL", "DELUSER", user)


async def test_only_the_pod_holding_the_registration_decodes_the_body(
    real_redis: Any, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every broker registers with every pod; the last registration holds its liveness entry.
    The other pods' verification asks that first, with no topics, and neither decodes the
    body nor sends it; the holder verifies every topic, and still repairs what was lost."""
    from namesrv_redis.domain import reconcile

    decoded: list[str] = []
    real_expected_of = reconcile.expected_of

    def counting(reg: Any) -> Any:
        decoded.append(reg.conn_id)
        return real_expected_of(reg)

    monkeypatch.setattr(reconcile, "expected_of", counting)
    pods = [await InProcessServer(real_redis, namespace).start() for _ in range(2)]
    try:
        master = SimBroker("C", "b1", "10.0.0.1:10911", heartbeat_timeout_ms=60_000)
        master.add_topics(TOPICS)
        clients = [await p.client() for p in pods]
        for c in clients:  # pod 1's registration comes last: it holds the broker
            assert (await master.register(c)).code == 0
        holder_conn = pods[1].processor.accepted.get("C", master.addr)
        assert holder_conn is not None
        await real_redis.delete(pods[0].store.keys.topic("T7"))
        other = await pods[0].processor.reconciler.verify_all()
        assert [o.status for o in other] == ["other"] and decoded == []
        held = await pods[1].processor.reconciler.verify_all()
        assert [o.status for o in held] == ["ok"] and held[0].topics == len(TOPICS)
        assert held[0].repaired.get("queue_data") == 1
        assert decoded == [holder_conn.conn_id]
        assert await check_namespace(real_redis, namespace) == []
        for c in clients:
            await c.close()
    finally:
        for p in pods:
            await p.stop()
