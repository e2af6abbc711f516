"""The defects a hostile client found (issue 12, points 1, 2, 3 and 6), end to end over real
sockets and a real Redis: each request that must be refused is refused with a clear answer and
leaves Redis byte-for-byte unchanged; what must be accepted round-trips exactly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.rocketmq.register_body import crc32_masked
from namesrv_redis.sim.broker import SimBroker
from namesrv_redis.store.check import check_namespace
from namesrv_redis.store.keys import broker_ident, split_ident
from namesrv_redis.store.liveness import Liveness
from namesrv_redis.store.route_store import RouteStore
from namesrv_redis.telemetry.metrics import REGISTRY
from tests.inproc import InProcessServer
from tests.test_liveness import eventually
from tests.test_script_args import same, snapshot


@pytest.fixture
async def pod(real_redis: Any, namespace: str) -> AsyncIterator[InProcessServer]:
    server = await InProcessServer(real_redis, namespace).start()
    yield server
    await server.stop()


def broker(addr: str = "10.0.0.1:10911", cluster: str = "C1", **kw: Any) -> SimBroker:
    b = SimBroker(cluster=cluster, name=kw.pop("name", "broker-a"), addr=addr, **kw)
    b.add_topics(["T1", "T2"])
    return b


async def refused_and_unchanged(
    pod: InProcessServer, code: int, ext: dict[str, str], body: bytes | None = None
) -> str:
    """Send one request: it must be refused (code 1) and change nothing in Redis."""
    before = await snapshot(pod.redis, pod.store.keys.prefix)
    c = await pod.client()
    resp = await c.request(code, ext, body)
    await c.close()
    assert resp is not None and resp.code == 1, (ext, resp)
    assert same(await snapshot(pod.redis, pod.store.keys.prefix), before)
    assert await check_namespace(pod.redis, pod.namespace) == []
    assert resp.remark is not None
    return resp.remark


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], "a refusal logged a traceback"


# ----------------------------------------------------------------------------- point 1


@pytest.mark.parametrize(
    "timeout",
    ["9223372036854775807", "1" * 25, "-1", "0", "99", "604800001", "abc", " 5", "1_000"],
)
async def test_bad_heartbeat_timeout_leaves_no_ghost_broker(
    pod: InProcessServer, timeout: str, caplog: pytest.LogCaptureFixture
) -> None:
    await (await pod.client()).request(RequestCode.GET_BROKER_CLUSTER_INFO)  # warm
    b = broker()
    ext, body = b.register_request()
    ext["heartbeatTimeoutMillis"] = timeout
    remark = await refused_and_unchanged(pod, RequestCode.REGISTER_BROKER, ext, body)
    assert "heartbeatTimeoutMillis" in remark
    assert await pod.store.get_route("T1") is None
    no_traceback(caplog)


@pytest.mark.parametrize("field", ["brokerName", "brokerAddr", "clusterName"])
async def test_empty_names_are_refused(pod: InProcessServer, field: str) -> None:
    ext, body = broker().register_request()
    ext[field] = ""
    assert field in await refused_and_unchanged(pod, RequestCode.REGISTER_BROKER, ext, body)


# ----------------------------------------------------------------------------- point 6


@pytest.mark.parametrize("broker_id", [str(2**63), str(-(2**63) - 1), "1" * 25, "1.0", "0x1", " 0"])
async def test_broker_id_outside_java_long_is_refused(pod: InProcessServer, broker_id: str) -> None:
    ext, body = broker().register_request()
    ext["brokerId"] = broker_id
    assert "brokerId" in await refused_and_unchanged(pod, RequestCode.REGISTER_BROKER, ext, body)


async def test_extreme_broker_ids_stay_exact_and_distinct(pod: InProcessServer) -> None:
    """Java's long extremes are valid ids: stored exactly (Lua numbers would wrap them to
    -2^63 and make the two collide)."""
    c = await pod.client()
    for bid, addr in (
        (0, "10.0.0.0:1"),
        (2**63 - 1, "10.0.0.1:1"),
        (-(2**63), "10.0.0.2:1"),
        (2**53 + 1, "10.0.0.3:1"),
    ):
        b = broker(addr, broker_id=bid)
        assert (await b.register(c)).code == 0
    route = await pod.store.get_route("T1")
    assert route is not None
    assert route.broker_datas[0].broker_addrs == {
        -(2**63): "10.0.0.2:1",
        0: "10.0.0.0:1",
        2**53 + 1: "10.0.0.3:1",
        2**63 - 1: "10.0.0.1:1",
    }
    assert await check_namespace(pod.redis, pod.namespace) == []
    await c.close()


def _json_number(v: Any) -> bytes:
    """JSON text of ``v``, integers of any size included (orjson stops at 64 bits)."""
    return str(v).encode() if isinstance(v, int) and not isinstance(v, bool) else orjson.dumps(v)


@pytest.mark.parametrize("counter", [2**64, 2**63, -(2**63) - 1, "x", True, 1.5])
async def test_data_version_beyond_java_long_is_a_clean_error(
    pod: InProcessServer, counter: Any, caplog: pytest.LogCaptureFixture
) -> None:
    c = await pod.client()
    good = broker()
    assert (await good.register(c)).code == 0
    remark = await refused_and_unchanged(
        pod,
        RequestCode.QUERY_DATA_VERSION,
        {"brokerAddr": good.addr, "clusterName": good.cluster, "brokerName": good.name},
        b'{"counter":'
        + (str(counter).encode() if isinstance(counter, int) else orjson.dumps(counter))
        + b',"timestamp":1}',
    )
    assert "DataVersion" in remark and "TypeError" not in remark
    b = broker("10.0.0.7:1", name="broker-q")
    ext, _ = b.register_request()
    body = (
        b'{"topicConfigSerializeWrapper":{"dataVersion":{"counter":'
        + _json_number(counter)
        + b',"timestamp":1},'
        b'"topicConfigTable":{"T1":{"topicName":"T1"},"T2":{"topicName":"T2"}}},'
        b'"filterServerList":[]}'
    )
    ext["bodyCrc32"] = str(crc32_masked(body))
    remark = await refused_and_unchanged(pod, RequestCode.REGISTER_BROKER, ext, body)
    assert "TypeError" not in remark
    no_traceback(caplog)
    await c.close()


# ----------------------------------------------------------------------------- point 3


@pytest.mark.parametrize(
    ("cluster", "addr"),
    [("C", "a@b"), ("C@x", "1"), ("%40", "@%25@"), ("", "")],
)
def test_identities_round_trip(cluster: str, addr: str) -> None:
    assert split_ident(broker_ident(cluster, addr)) == (cluster, addr)


async def test_broker_with_at_sign_address_really_expires(real_redis: Any, namespace: str) -> None:
    """The cleaner and the sweeper remove exactly the broker whose liveness key expired,
    whatever '@' and '%' its cluster name and address hold."""
    pod = await InProcessServer(real_redis, namespace).start()
    liveness = Liveness(pod.store, real_redis, scan_interval_ms=200)
    await liveness.start()
    c = await pod.client()
    try:
        odd = [("C1", "10.9.9.9:1@x"), ("C@1", "10.9.9.8:1"), ("C%40", "10.9.9.7:1%40@")]
        for i, (cluster, addr) in enumerate(odd):
            b = broker(addr, cluster=cluster, name=f"odd-{i}", heartbeat_timeout_ms=400)
            assert (await b.register(c)).code == 0
        keeper = broker("10.9.9.9:1", cluster="C1", name="keeper", heartbeat_timeout_ms=60_000)
        assert (await keeper.register(c)).code == 0

        async def only_keeper_left() -> bool:
            info = await pod.store.get_cluster_info()
            return set(info.broker_addr_table) == {"keeper"}

        await eventually(only_keeper_left, 10)
        assert await check_namespace(real_redis, namespace) == []
        assert await real_redis.zcard(pod.store.keys.deadlines) == 1
        assert await real_redis.hlen(pod.store.keys.addr_names) == 1
    finally:
        await c.close()
        await liveness.stop()
        await pod.stop()


# ----------------------------------------------------------------------------- point 2


def _series() -> int:
    return sum(len(m.samples) for m in REGISTRY.collect())


async def test_distinct_request_codes_do_not_grow_the_metrics(pod: InProcessServer) -> None:
    c = await pod.client()
    await c.request(60_000, {})  # the "other" series exist from here on
    base, cached = _series(), len(pod.server.metrics._by_code) if pod.server else 0
    for code in range(70_000, 80_000):
        await c.request(code, {}, oneway=True)
    resp = await c.request(RequestCode.GET_BROKER_CLUSTER_INFO)  # everything before it ran
    assert resp is not None and resp.code == 0
    await asyncio.sleep(0.2)
    assert _series() <= base + 30  # only the known code just used may add series
    assert pod.server is not None and len(pod.server.metrics._by_code) <= cached + 1
    text = b"".join(f"{s.name}{s.labels}".encode() for m in REGISTRY.collect() for s in m.samples)
    assert b"75000" not in text
    await c.close()


async def test_unknown_http_methods_do_not_grow_the_metrics() -> None:
    from namesrv_redis.http.app import RequestMetrics

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    metrics = RequestMetrics(app)
    await metrics({"type": "http", "method": "BREW0"}, None, None)
    base = _series()
    for i in range(2000):
        await metrics({"type": "http", "method": f"BREW{i}"}, None, None)
    assert _series() == base


# ----------------------------------------------------------------------------- system topics


async def test_system_topic_list_is_deterministic_and_follows_java(
    real_redis: Any, namespace: str
) -> None:
    """Whatever the order brokers registered in, the answer is the one Java's HashMap
    iteration gives: brokerAddrTable (capacity 128) visits broker-b (String.hashCode
    372697966 -> bucket 88 after spreading h ^ (h >>> 16)), broker-c (372697967 -> 89), then
    broker-a (372697965 -> 91); the first with an address is taken, at its first id in
    HashMap<Long, String> order (the smallest for small ids)."""
    answers = set()
    for n, order in enumerate((["broker-a", "broker-b", "broker-c"], ["broker-c", "broker-a"])):
        store = RouteStore(real_redis, f"{namespace}-{n}")
        await store.load_scripts()
        server = await InProcessServer(real_redis, f"{namespace}-{n}").start()
        c = await server.client()
        for name in order:
            for bid in (2, 1):
                b = broker(f"{name}:{bid}", name=name, broker_id=bid, cluster="DefaultCluster")
                assert (await b.register(c)).code == 0
        resp = await c.request(RequestCode.GET_SYSTEM_TOPIC_LIST_FROM_NS)
        assert resp is not None and resp.body is not None
        answers.add((n, orjson.loads(resp.body)["brokerAddr"]))
        await c.close()
        await server.stop()
    assert answers == {(0, "broker-b:1"), (1, "broker-c:1")}


async def test_system_topic_list_order_is_stable(pod: InProcessServer) -> None:
    c = await pod.client()
    for name in ("x1", "x2", "x3", "x4"):
        assert (await broker(f"{name}:1", name=name, cluster="K").register(c)).code == 0
    bodies = set()
    for _ in range(5):
        resp = await c.request(RequestCode.GET_SYSTEM_TOPIC_LIST_FROM_NS)
        assert resp is not None
        bodies.add(resp.body)
    assert len(bodies) == 1
    await c.close()
