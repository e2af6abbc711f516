"""namesrv_redis.testing.NameServer: a real pod in-process, driven from sync and async tests,
checked over the wire with the remoting client (the real-client proofs are in
tests/test_testing_interop.py, the plugin's in tests/test_testing_plugin.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode, ResponseCode
from namesrv_redis.sim.broker import SimBroker
from namesrv_redis.testing import NameServer, Topic
from tests.conftest import RedisServerProcess

CLUSTER = "TestCluster"
ADDR_A = "127.0.0.1:10911"
ADDR_B = "127.0.0.1:10921"


@pytest.fixture(scope="module")
def server() -> Iterator[NameServer]:
    ns = NameServer().start()
    yield ns
    ns.stop()


@pytest.fixture
def ns(server: NameServer) -> NameServer:
    server.reset()
    return server


@pytest.fixture
async def client(ns: NameServer) -> AsyncIterator[RemotingClient]:
    c = await RemotingClient.connect("127.0.0.1", ns.port)
    yield c
    await c.close()


async def get_route(client: RemotingClient, topic: str) -> tuple[int, Any]:
    resp = await client.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
    assert resp is not None
    return resp.code, json.loads(resp.body) if resp.body else None


async def test_registered_route_is_served_over_the_wire(
    ns: NameServer, client: RemotingClient
) -> None:
    ns.register_broker(CLUSTER, "broker-a", ADDR_A, {"TopicA": 4, "TopicB": Topic(2, perm=4)})
    code, route = await get_route(client, "TopicA")
    assert code == ResponseCode.SUCCESS
    assert route["brokerDatas"] == [
        {"brokerAddrs": {"0": ADDR_A}, "brokerName": "broker-a", "cluster": CLUSTER}
    ]
    assert route["queueDatas"][0]["readQueueNums"] == 4
    code, route = await get_route(client, "TopicB")
    assert (route["queueDatas"][0]["perm"], route["queueDatas"][0]["writeQueueNums"]) == (4, 2)
    assert ns.route("TopicB") is not None and set(ns.routes()) == {"TopicA", "TopicB"}


async def test_unknown_topic_is_topic_not_exist(ns: NameServer, client: RemotingClient) -> None:
    code, _ = await get_route(client, "NoSuchTopic")
    assert code == ResponseCode.TOPIC_NOT_EXIST
    assert ns.responses[ResponseCode.TOPIC_NOT_EXIST] == 1
    assert ns.requests[RequestCode.GET_ROUTEINFO_BY_TOPIC] == 1


async def test_helper_write_is_seen_by_the_next_request(
    ns: NameServer, client: RemotingClient
) -> None:
    # the "no route" answer is cached by the pod; the helper's write must not wait for the
    # route event to drop it
    assert (await get_route(client, "Late"))[0] == ResponseCode.TOPIC_NOT_EXIST
    ns.register_broker(CLUSTER, "broker-a", ADDR_A, ["Late"])
    assert (await get_route(client, "Late"))[0] == ResponseCode.SUCCESS
    ns.unregister_broker(CLUSTER, "broker-a", ADDR_A)
    assert (await get_route(client, "Late"))[0] == ResponseCode.TOPIC_NOT_EXIST


async def test_one_topic_first_registration_is_accepted(ns: NameServer) -> None:
    """RocketMQ 5 refuses a broker id's first registration with exactly one topic; the helper
    registers such a broker as a broker that then creates its topic would be."""
    ns.register_broker(CLUSTER, "broker-a", ADDR_A, {"Only": 4})
    assert list(ns.routes()) == ["Only"]


async def test_expire_broker_removes_it_as_a_timeout_would(
    ns: NameServer, client: RemotingClient
) -> None:
    ns.register_broker(CLUSTER, "broker-a", ADDR_A, ["T"])
    ns.register_broker(CLUSTER, "broker-a", ADDR_B, ["T"], broker_id=1)
    assert [(r.broker_id, r.alive) for r in ns.registrations()] == [(0, True), (1, True)]
    assert ns.expire_broker(CLUSTER, ADDR_A)
    assert not ns.expire_broker(CLUSTER, ADDR_A)  # idempotent: already gone
    assert [r.addr for r in ns.registrations()] == [ADDR_B]
    _, route = await get_route(client, "T")
    assert route["brokerDatas"][0]["brokerAddrs"] == {"1": ADDR_B}
    assert ns.expire_broker(CLUSTER, ADDR_B)
    assert (await get_route(client, "T"))[0] == ResponseCode.TOPIC_NOT_EXIST
    assert ns.registrations() == [] and ns.topics() == []


def test_heartbeat_timeout_is_found_by_the_sweeper(ns: NameServer) -> None:
    """fakeredis sends no expiry events: the sweeper (100 ms) alone removes a dead broker."""
    ns.register_broker(CLUSTER, "broker-a", ADDR_A, ["T"], heartbeat_timeout_ms=300)
    ns.register_broker(CLUSTER, "broker-b", ADDR_B, ["T"])
    [a, _] = ns.registrations()
    assert a.ttl_ms is not None and 0 < a.ttl_ms <= 300
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(ns.registrations()) > 1:
        time.sleep(0.05)
    assert [r.broker_name for r in ns.registrations()] == ["broker-b"]


def test_heartbeat_keeps_a_broker_alive(ns: NameServer) -> None:
    ns.register_broker(CLUSTER, "broker-a", ADDR_A, ["T"], heartbeat_timeout_ms=400)
    for _ in range(6):
        time.sleep(0.1)
        assert ns.heartbeat(CLUSTER, ADDR_A)
    assert [r.alive for r in ns.registrations()] == [True]
    assert not ns.heartbeat(CLUSTER, "127.0.0.1:1")


async def test_reset_empties_everything(ns: NameServer, client: RemotingClient) -> None:
    ns.register_broker(CLUSTER, "broker-a", ADDR_A, ["T", "U"])
    ns.put_kv("ORDER_TOPIC_CONFIG", "T", "broker-a:4")
    resp = await client.request(RequestCode.UPDATE_NAMESRV_CONFIG, body=b"orderMessageEnable=true")
    assert resp is not None and resp.code == 0
    assert (await get_route(client, "T"))[0] == ResponseCode.SUCCESS
    started = time.perf_counter()
    ns.reset()
    took = time.perf_counter() - started
    assert ns.routes() == {} and ns.registrations() == [] and ns.kv("ORDER_TOPIC_CONFIG") is None
    assert ns.requests == {} and ns.responses == {}
    assert not ns.pod.processor.settings.order_message_enable  # type: ignore[union-attr]
    # the cached answer went too: the same connection now sees no route
    assert (await get_route(client, "T"))[0] == ResponseCode.TOPIC_NOT_EXIST
    assert took < 5  # sanity only; the timing is measured in scripts/testing_fixture.py


async def test_a_reset_is_not_taken_for_redis_losing_its_data(
    ns: NameServer, client: RemotingClient
) -> None:
    """A pod re-applies the registrations it saw when Redis loses its data (docs/ha.md); a
    reset must not look like that, or brokers registered over the wire would come back."""
    broker = SimBroker(cluster=CLUSTER, name="broker-r", addr=ADDR_A)
    broker.add_topics(["R1", "R2"])
    assert (await broker.register(client)).code == 0
    ns.reset()
    await asyncio.sleep(1.2)  # more than two route-version polls
    assert ns.routes() == {}
    assert (await get_route(client, "R1"))[0] == ResponseCode.TOPIC_NOT_EXIST


async def test_kv_helpers_and_the_wire_agree(ns: NameServer, client: RemotingClient) -> None:
    ns.put_kv("NS", "k", "v")
    resp = await client.request(RequestCode.GET_KV_CONFIG, {"namespace": "NS", "key": "k"})
    assert resp is not None and resp.ext_fields == {"value": "v"}
    await client.request(RequestCode.PUT_KV_CONFIG, {"namespace": "NS", "key": "w", "value": "x"})
    assert ns.kv("NS") == {"k": "v", "w": "x"}
    ns.delete_kv("NS", "k")
    assert ns.kv("NS") == {"w": "x"}


async def test_a_real_registration_over_the_wire_shows_in_the_helpers(
    ns: NameServer, client: RemotingClient
) -> None:
    broker = SimBroker(cluster=CLUSTER, name="broker-w", addr=ADDR_A)
    broker.add_topics(["Wired", "Other"], queues=2)
    assert (await broker.register(client)).code == 0
    [reg] = ns.registrations()
    assert (reg.broker_name, reg.addr, reg.alive) == ("broker-w", ADDR_A, True)
    assert ns.requests[RequestCode.REGISTER_BROKER] == 1
    await client.close()  # the broker's connection closes: RocketMQ drops it at once
    for _ in range(100):
        if not ns.registrations():
            break
        await asyncio.sleep(0.02)
    assert ns.registrations() == []


def test_delete_topic_and_cluster_info(ns: NameServer) -> None:
    ns.register_broker(CLUSTER, "broker-a", ADDR_A, ["T", "U"])
    assert ns.cluster_info()["clusterAddrTable"] == {CLUSTER: ["broker-a"]}
    assert ns.delete_topic("T") == 1
    assert ns.topics() == ["U"]


def test_bad_topics_argument_is_refused(ns: NameServer) -> None:
    with pytest.raises(TypeError):
        ns.register_broker(CLUSTER, "broker-a", ADDR_A, "TopicA")
    with pytest.raises(TypeError):
        ns.register_broker(CLUSTER, "broker-a", ADDR_A, {"T": "4"})  # type: ignore[dict-item]
    assert ns.registrations() == []


def test_unknown_option_is_refused() -> None:
    with pytest.raises(ValueError, match="noSuchOption"):
        NameServer(options={"noSuchOption": 1})


def test_options_by_rocketmq_name_and_environment_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NAMESRV_NAMESPACE", "from-env")
    ns = NameServer(options={"orderMessageEnable": True})
    assert ns.settings.order_message_enable and ns.settings.namespace == "default"


def test_not_started_gives_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        NameServer().routes()


def test_context_manager_and_independent_servers() -> None:
    with NameServer() as one, NameServer() as two:
        assert one.port != two.port
        one.register_broker(CLUSTER, "broker-a", ADDR_A, ["T"])
        assert two.routes() == {}  # every memory:// server has its own fake Redis
    with pytest.raises(RuntimeError):
        one.routes()


def test_http_tier_on_request() -> None:
    with NameServer(http=True) as ns:
        ns.register_broker(CLUSTER, "broker-a", ADDR_A, ["T"])
        with urllib.request.urlopen(f"{ns.http_url}/v1/routes/T", timeout=5) as r:
            body = json.loads(r.read())
        assert body["brokerDatas"][0]["brokerName"] == "broker-a"
    with pytest.raises(RuntimeError, match="no HTTP"):
        _ = NameServer().http_url


@pytest.mark.real_redis
def test_on_a_shared_redis_it_keeps_to_its_namespace(redis_server: RedisServerProcess) -> None:
    import redis as sync_redis

    other = sync_redis.Redis.from_url(redis_server.url)
    other.set("unrelated", "1")
    with NameServer(redis=redis_server.url) as one, NameServer(redis=redis_server.url) as two:
        assert one.namespace != two.namespace
        one.register_broker(CLUSTER, "broker-a", ADDR_A, ["T"])
        two.register_broker(CLUSTER, "broker-b", ADDR_B, ["U"])
        one.reset()
        assert one.routes() == {} and list(two.routes()) == ["U"]
        prefix = f"nsr:{{{one.namespace}}}:"
    assert not list(other.scan_iter(match=prefix.replace("{", "\\{") + "*"))
    assert not [k for k in other.scan_iter() if b"test-" in k]  # both namespaces deleted
    assert other.get("unrelated") == b"1"
    other.delete("unrelated")
    other.close()


@pytest.mark.real_redis
def test_embedded_redis_has_expiry_events() -> None:
    """With a real redis-server the expired-key cleaner works too (not only the sweeper)."""
    with NameServer(redis="embedded", scan_interval_ms=60_000) as ns:
        ns.register_broker(CLUSTER, "broker-a", ADDR_A, ["T"], heartbeat_timeout_ms=200)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and ns.registrations():
            time.sleep(0.05)
        assert ns.registrations() == []


def test_memory_url_refuses_options_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    from namesrv_redis.store.connection import create_redis

    with pytest.raises(ValueError, match="memory://"):
        create_redis("memory://somewhere:6379")
    with caplog.at_level(logging.WARNING):
        client = create_redis("memory://")
    assert "nothing is kept" in caplog.text.lower()
    import fakeredis

    assert isinstance(client, fakeredis.FakeAsyncRedis)


def test_memory_url_with_several_workers_is_refused() -> None:
    from namesrv_redis.process.workers import serve
    from namesrv_redis.settings.config import Settings

    assert serve(Settings(redis_url="memory://", workers=2)) == 2


async def test_serve_with_memory_url() -> None:
    """``namesrv-redis serve --redis-url memory://``: a real pod process on fakeredis."""
    from tests.serverproc import NamesrvProcess

    proc = NamesrvProcess("memory://", "default").start()
    try:
        client = await RemotingClient.connect("127.0.0.1", proc.port)
        broker = SimBroker(cluster=CLUSTER, name="broker-m", addr=ADDR_A)
        broker.add_topics(["MemTopic", "Other"], queues=4)
        assert (await broker.register(client)).code == 0
        code, route = await get_route(client, "MemTopic")
        assert code == 0 and route["brokerDatas"][0]["brokerName"] == "broker-m"
        assert (await get_route(client, "Missing"))[0] == ResponseCode.TOPIC_NOT_EXIST
        await client.close()
        assert "nothing is kept" in proc.log().lower()
    finally:
        proc.stop()
