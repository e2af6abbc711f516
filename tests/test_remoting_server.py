"""The remoting server over real sockets and a real Redis: request codes end to end, both
header serializations, oneway requests, connection-close clean-up, and bad input that must
never crash the server, change the route tables or starve other clients."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import struct
from collections.abc import AsyncIterator
from typing import Any

import orjson
import psutil
import pytest

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.remoting.codec import ROCKETMQ, encode_request
from namesrv_redis.remoting.processor import NamesrvProcessor
from namesrv_redis.remoting.server import RemotingServer
from namesrv_redis.rocketmq import fastjson
from namesrv_redis.rocketmq.codes import RequestCode, ResponseCode
from namesrv_redis.settings.config import Settings
from namesrv_redis.sim.broker import SimBroker
from namesrv_redis.store.check import check_namespace
from namesrv_redis.store.route_store import RouteStore
from tests.conftest import cached_routes


class Running:
    def __init__(self, server: RemotingServer, store: RouteStore) -> None:
        self.server, self.store = server, store

    @property
    def port(self) -> int:
        return self.server.bound_port

    async def client(self) -> RemotingClient:
        return await RemotingClient.connect("127.0.0.1", self.port)

    async def dump(self) -> dict[str, Any]:
        """Everything a client can read: to check that bad input changed nothing."""
        info = await self.store.get_cluster_info()
        topics = await self.store.all_topics()
        routes = {t: (await self.store.get_route(t)) for t in topics}
        return {
            "cluster": info.to_wire(),
            "routes": {t: r.to_wire() if r else None for t, r in routes.items()},
        }


@pytest.fixture
async def running(real_redis: Any, namespace: str) -> AsyncIterator[Running]:
    store = RouteStore(real_redis, namespace)
    await store.load_scripts()
    settings = Settings(server_channel_max_idle_time_seconds=2)
    routes, events = await cached_routes(real_redis, store)
    processor = NamesrvProcessor(store, settings, routes)
    server = RemotingServer(processor, host="127.0.0.1", port=0, idle_timeout_s=2.0)
    await server.start()
    yield Running(server, store)
    await server.stop(grace_s=1)
    await events.stop()


def broker(topics: int = 3, **kw: Any) -> SimBroker:
    b = SimBroker(
        cluster="C1", name=kw.pop("name", "broker-a"), addr=kw.pop("addr", "127.0.0.1:10911"), **kw
    )
    b.add_topics([f"T{i}" for i in range(topics)])
    return b


async def test_register_then_route_in_both_json_flavours(running: Running) -> None:
    c = await running.client()
    b = broker()
    resp = await b.register(c)
    assert resp.code == 0 and resp.ext_fields == {}
    new = await c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T1"}, version=409)
    old = await c.request(
        RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T1"}, version=63, language="CPP"
    )
    assert new and old and new.code == 0 and old.code == 0
    assert b'"brokerAddrs":{"0":"127.0.0.1:10911"}' in (new.body or b"")
    assert b'"brokerAddrs":{0:"127.0.0.1:10911"}' in (old.body or b"")
    assert orjson.loads(new.body or b"") == fastjson.loads(old.body or b"")
    flag = await c.request(
        RequestCode.GET_ROUTEINFO_BY_TOPIC,
        {"topic": "T1", "acceptStandardJsonOnly": "true"},
        version=63,
    )
    assert flag and flag.body == new.body
    await c.close()


async def test_binary_header_is_answered_in_binary(running: Running) -> None:
    c = await running.client()
    await broker().register(c)
    resp = await c.request(
        RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T0"}, serialize_type=ROCKETMQ
    )
    assert resp is not None and resp.serialize_type == ROCKETMQ and resp.code == 0
    missing = await c.request(
        RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "nope"}, serialize_type=ROCKETMQ
    )
    assert missing is not None and missing.code == ResponseCode.TOPIC_NOT_EXIST
    assert missing.remark and missing.remark.startswith(
        "No topic route info in name server for the topic: nope\n"
    )
    await c.close()


async def test_unknown_code_gets_request_code_not_supported(running: Running) -> None:
    c = await running.client()
    resp = await c.request(9999)
    assert resp is not None and resp.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED
    assert resp.remark == " request type 9999 not supported"
    await c.close()


async def test_missing_header_field_is_a_clear_error(running: Running) -> None:
    c = await running.client()
    resp = await c.request(RequestCode.REGISTER_BROKER, {"brokerName": "x"})
    assert resp is not None and resp.code == ResponseCode.SYSTEM_ERROR
    assert "brokerAddr" in (resp.remark or "")
    await c.close()


async def test_oneway_registration_is_applied_without_answer(running: Running) -> None:
    c = await running.client()
    b = broker()
    ext, body = b.register_request()
    assert await c.request(RequestCode.REGISTER_BROKER, ext, body, oneway=True) is None
    for _ in range(50):
        if await running.store.get_route("T0"):
            break
        await asyncio.sleep(0.02)
    assert await running.store.get_route("T0") is not None
    await c.close()


async def test_wrong_crc_is_refused_and_stores_nothing(running: Running) -> None:
    c = await running.client()
    ext, body = broker().register_request()
    ext["bodyCrc32"] = str((int(ext["bodyCrc32"]) + 1) & 0x7FFFFFFF)
    resp = await c.request(RequestCode.REGISTER_BROKER, ext, body)
    assert (
        resp is not None
        and resp.code == ResponseCode.SYSTEM_ERROR
        and resp.remark == "crc32 not match"
    )
    assert await running.store.all_topics() == []
    await c.close()


async def test_compressed_registration(running: Running) -> None:
    c = await running.client()
    b = broker(compressed=True)
    assert (await b.register(c)).code == 0
    route = await running.store.get_route("T2")
    assert route is not None and route.queue_datas[0].read_queue_nums == 8
    await c.close()


async def test_connection_close_removes_its_brokers(running: Running) -> None:
    c = await running.client()
    await broker().register(c)
    await c.close()
    for _ in range(100):
        if not await running.store.all_topics():
            break
        await asyncio.sleep(0.02)
    assert await running.store.all_topics() == []


async def test_connection_close_keeps_broker_owned_elsewhere(running: Running) -> None:
    first, second = await running.client(), await running.client()
    b = broker()
    await b.register(first)
    await b.register(second)  # the broker now talks to us over the second connection
    await first.close()
    await asyncio.sleep(0.2)
    assert await running.store.get_route("T0") is not None
    await second.close()


async def test_idle_connection_is_closed(running: Running) -> None:
    c = await running.client()
    await asyncio.wait_for(c.closed, timeout=5)


async def test_bad_frames_close_only_their_connection(running: Running) -> None:
    good = await running.client()
    await broker().register(good)
    before = await running.dump()
    bad_inputs = [
        struct.pack(">i", 2**31 - 1),  # a huge length prefix: refused before allocating
        struct.pack(">i", 2),  # a length too small to hold the header length
        struct.pack(">ii", 12, (0 << 24) | 8) + b"not json",  # garbage JSON header
        struct.pack(">ii", 12, (7 << 24) | 8) + b"{}{}{}{}",  # unknown serialize type
        struct.pack(">ii", 8, (0 << 24) | 100) + b"{}{}",  # header longer than the frame
        struct.pack(">ii", 9, (1 << 24) | 5) + b"\x00\x01\x02\x03\x04",  # truncated binary header
        struct.pack(">ii", 14, (0 << 24) | 10) + b'{"code":1}',  # missing opaque etc is fine
    ]
    for data in bad_inputs[:-1]:
        c = await running.client()
        c.send_raw(data)
        await asyncio.wait_for(c.closed, timeout=5)
    # a header with only a code is decodable: answered, not closed
    c = await running.client()
    c.send_raw(bad_inputs[-1])
    await asyncio.sleep(0.1)
    assert not c.closed.done()
    await c.close()
    # a truncated frame just waits for the rest; the connection stays usable
    partial = await running.client()
    frame = encode_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, 7, {"topic": "T0"})
    partial.send_raw(frame[:10])
    await asyncio.sleep(0.05)
    fut = asyncio.get_running_loop().create_future()
    partial.pending[7] = fut
    partial.send_raw(frame[10:])
    assert (await asyncio.wait_for(fut, 5)).code == 0
    await partial.close()
    # undecodable register bodies are answered with an error and store nothing
    ext, _ = broker(name="broker-x", addr="127.0.0.1:20000").register_request()
    for body in (
        b"{not json",
        b"[1,2]",
        b'{"topicConfigSerializeWrapper":{"topicConfigTable":{"t":5}}}',
    ):
        ext.pop("bodyCrc32", None)
        resp = await good.request(RequestCode.REGISTER_BROKER, ext, body)
        assert resp is not None and resp.code == ResponseCode.SYSTEM_ERROR
    ext["compressed"] = "true"
    resp = await good.request(RequestCode.REGISTER_BROKER, ext, b"\x78\x9cgarbage")
    assert resp is not None and resp.code == ResponseCode.SYSTEM_ERROR
    assert (await good.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T0"})).code == 0  # type: ignore[union-attr]
    assert await running.dump() == before
    assert await check_namespace(running.store.redis, running.store.keys.namespace) == []
    await good.close()


async def test_thousand_silent_connections_do_not_starve_others(running: Running) -> None:
    proc = psutil.Process(os.getpid())
    rss_before = proc.memory_info().rss
    idle = [await running.client() for _ in range(1000)]
    c = await running.client()
    await broker().register(c)
    for _ in range(20):
        resp = await c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T0"})
        assert resp is not None and resp.code == 0
    growth_mib = (proc.memory_info().rss - rss_before) / 2**20
    assert growth_mib < 64, f"1000 idle connections cost {growth_mib:.1f} MiB"
    assert len(running.server.connections) >= 1001
    for i in idle:
        await i.close()
    await c.close()


async def test_redis_failure_answers_system_error(running: Running) -> None:
    c = await running.client()
    await running.store.redis.script_flush()
    # scripts reload themselves after NOSCRIPT: still fine
    assert (await broker().register(c)).code == 0
    running.store.scripts = dataclasses.replace(
        running.store.scripts, register_broker=_failing_script
    )
    resp = await broker(name="broker-b", addr="127.0.0.1:10921").register(c)
    assert resp.code == ResponseCode.SYSTEM_ERROR and "route store unavailable" in (
        resp.remark or ""
    )
    await c.close()


async def _failing_script(*args: Any, **kwargs: Any) -> Any:
    from redis.exceptions import ConnectionError as RedisConnectionError

    raise RedisConnectionError("Redis is down")


async def test_unchanged_reregistration_skips_the_body(running: Running) -> None:
    """The periodic re-registration of an unchanged body refreshes liveness through the lite
    script; if the stored data version moved meanwhile, the body is parsed and (its table
    being the stored one) nothing but the live info is written; a changed body sends a diff."""
    c = await running.client()
    b = broker(topics=5)
    assert (await b.register(c)).code == 0
    calls: list[str] = []
    original = running.store.register_broker

    async def spy(reg: Any, now: Any = None) -> Any:
        calls.append(f"{reg.mode}:{len(reg.topics)}")
        return await original(reg, now)

    running.store.register_broker = spy  # type: ignore[method-assign]
    assert (await b.register(c)).code == 0
    assert calls == ["lite:0"]
    # another pod (or a Redis restart) changed what is stored: lite is refused
    await running.store.redis.hset(running.store.keys.live("C1", b.addr), "dv", "{}")
    assert (await b.register(c)).code == 0
    assert calls == ["lite:0", "lite:0", "diff:0"]
    b.add_topics(["Fresh"])  # a changed body never takes the lite path: only the new topic
    assert (await b.register(c)).code == 0
    assert calls == ["lite:0", "lite:0", "diff:0", "diff:1"]
    assert await running.store.get_route("Fresh") is not None
    # something else changed the stored table: the diff is refused and everything is sent
    assert await running.store.delete_topic("Fresh") == 1
    b.add_topics(["Fresher"])
    assert (await b.register(c)).code == 0
    assert calls[4:] == ["diff:1", "full:7"]
    assert await running.store.get_route("Fresh") is not None
    await c.close()
