"""Back-pressure and admission control of the remoting front end (docs/protocol.md, "Limits"),
over real sockets and a real Redis: a client that never reads costs about one buffer, one
connection cannot have more than its share of requests in flight, an overloaded pod answers
SYSTEM_BUSY, broker requests are served through a client flood, big frames share one memory
budget, compressed bodies are bounded while inflating, and big registrations run off the loop.
Every assertion is on state or answers, none on timings."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.remoting.codec import (
    BIG_FRAME,
    FrameDecoder,
    RemotingCommand,
    encode_request,
)
from namesrv_redis.remoting.handler_types import Connection, Response
from namesrv_redis.remoting.limits import BUSY_REMARK, FlowLimits
from namesrv_redis.remoting.offload import Offloader
from namesrv_redis.remoting.processor import NamesrvProcessor
from namesrv_redis.remoting.server import RemotingProtocol, RemotingServer
from namesrv_redis.rocketmq.codes import RequestCode, ResponseCode
from namesrv_redis.settings.config import Settings
from namesrv_redis.sim.broker import SimBroker
from namesrv_redis.store.route_store import RouteStore
from tests.conftest import RedisServerProcess, cached_routes

SLOW = int(RequestCode.GET_KV_CONFIG)
"""The request code the gated processor holds until the test opens its gate."""


BIG = int(RequestCode.GET_KVLIST_BY_NAMESPACE)
"""The request code the gated processor answers at once with a 100 KB body."""


class GatedProcessor(NamesrvProcessor):
    """Holds every SLOW request until ``gate`` is set; answers BIG with 100 KB at once;
    everything else as usual."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.gate = asyncio.Event()
        self.started = 0
        self.started_big = 0
        self.calls: Counter[int] = Counter()

    async def process(self, cmd: RemotingCommand, conn: Connection) -> Response:
        self.calls[cmd.code] += 1
        if cmd.code == SLOW:
            self.started += 1
            await self.gate.wait()
            return Response(ext_fields={"value": "v"})
        if cmd.code == BIG:
            self.started_big += 1
            await asyncio.sleep(0)
            return Response(body=b"x" * 100_000)
        return await super().process(cmd, conn)


class Pod:
    def __init__(self, server: RemotingServer, store: RouteStore) -> None:
        self.server, self.store = server, store

    @property
    def processor(self) -> GatedProcessor:
        assert isinstance(self.server.processor, GatedProcessor)
        return self.server.processor

    async def client(self) -> RemotingClient:
        return await RemotingClient.connect("127.0.0.1", self.server.bound_port)

    def protocol(self, index: int = -1) -> RemotingProtocol:
        """A server-side connection, in the order they were accepted."""
        conns = sorted(self.server.connections, key=lambda c: int(c.conn.conn_id.rsplit("/")[-1]))
        return conns[index]


PodFactory = Callable[..., Awaitable[Pod]]


@pytest.fixture
async def make_pod(real_redis: Any, namespace: str) -> AsyncIterator[PodFactory]:
    made: list[tuple[RemotingServer, Any, Offloader | None]] = []

    async def make(
        offload_url: str | None = None, max_frame_bytes: int = 16 * 1024 * 1024, **limits: Any
    ) -> Pod:
        store = RouteStore(real_redis, namespace)
        await store.load_scripts()
        routes, events = await cached_routes(real_redis, store)
        processor = GatedProcessor(store, Settings(), routes)
        offload = None
        if offload_url is not None:
            offload = Offloader(processor, offload_url, min_body=1024)
            await offload.start()
        server = RemotingServer(
            processor,
            host="127.0.0.1",
            port=0,
            max_frame_bytes=max_frame_bytes,
            limits=FlowLimits(**limits),
            offload=offload,
        )
        await server.start()
        made.append((server, events, offload))
        return Pod(server, store)

    yield make
    for server, events, offload in made:
        server.processor.gate.set()  # type: ignore[attr-defined]
        await server.stop(grace_s=1)
        await events.stop()
        if offload is not None:
            await offload.stop()


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def broker(topics: int = 3, name: str = "broker-a", **kw: Any) -> SimBroker:
    b = SimBroker(cluster="C1", name=name, addr=kw.pop("addr", "127.0.0.1:10911"), **kw)
    b.add_topics([f"T{i}" for i in range(topics)])
    return b


def slow_requests(n: int, first: int = 1) -> bytes:
    return b"".join(
        encode_request(SLOW, first + i, {"namespace": "n", "key": "k"}) for i in range(n)
    )


class RawClient:
    """A client socket that sends without reading, then reads every answer."""

    def __init__(self, port: int, rcvbuf: int = 4096) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setblocking(False)

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def read_frames(self, n: int, timeout: float = 30.0) -> list[RemotingCommand]:
        decoder = FrameDecoder()
        frames: list[RemotingCommand] = []
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while len(frames) < n:
                data = await loop.sock_recv(self.sock, 1 << 20)
                if not data:
                    break
                frames += decoder.feed(data)
        return frames

    async def closed_by_peer(self, timeout: float = 10.0) -> bool:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while True:
                try:
                    data = await loop.sock_recv(self.sock, 1 << 16)
                except ConnectionResetError:
                    return True
                if not data:
                    return True

    def close(self) -> None:
        self.sock.close()


# ------------------------------------------------------------------ back-pressure


async def test_a_client_that_never_reads_costs_about_one_buffer(make_pod: PodFactory) -> None:
    high, low = 64 * 1024, 16 * 1024
    pod = await make_pod(write_buffer_high=high, write_buffer_low=low)
    c = await pod.client()
    assert (await broker(2).register(c)).code == 0
    route = await c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T0"}, version=409)
    assert route is not None and route.code == 0 and route.body
    answer = len(route.body) + 200

    raw = RawClient(pod.server.bound_port)
    await eventually(lambda: len(pod.server.connections) == 2)
    proto = pod.protocol()
    assert proto.transport is not None
    sock = proto.transport.get_extra_info("socket")  # small kernel buffers: back-pressure
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # shows sooner
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    n = 30_000  # ~4 MB of requests, ~30 MB of answers if they were all buffered
    frames = b"".join(
        encode_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, i, {"topic": "T0"}, version=409)
        for i in range(n)
    )
    sender = asyncio.create_task(raw.send(frames))
    await eventually(lambda: "write" in proto.paused_by)
    assert proto.transport is not None
    peak = 0
    for _ in range(50):  # the sender is blocked by now: nothing grows any more
        await asyncio.sleep(0.01)
        peak = max(peak, proto.transport.get_write_buffer_size())
    assert not sender.done(), "the pod read everything: no back-pressure reached the sender"
    assert peak <= high + 64 * 1024 + answer
    assert proto.decoder.buffered <= 1 << 20
    assert len(proto.backlog) * 100 <= 1 << 20  # at most about one read's worth of requests

    answers = await raw.read_frames(n)
    await sender
    assert len(answers) == n and {a.opaque for a in answers} == set(range(n))
    assert all(a.code == 0 for a in answers)
    await eventually(lambda: not proto.paused_by)
    raw.close()
    await c.close()


async def test_one_connection_has_at_most_its_share_in_flight(make_pod: PodFactory) -> None:
    pod = await make_pod(connection_max_pending=4)
    raw = RawClient(pod.server.bound_port)
    await raw.send(slow_requests(100))
    await eventually(lambda: pod.processor.started == 4)
    proto = pod.protocol()
    await eventually(lambda: len(proto.backlog) == 96)
    assert proto.pending == 4 and "backlog" in proto.paused_by
    await asyncio.sleep(0.1)
    assert pod.processor.started == 4  # nothing more starts while they are held
    pod.processor.gate.set()
    answers = await raw.read_frames(100)
    assert sorted(a.opaque for a in answers) == list(range(1, 101))
    assert all(a.code == 0 for a in answers)  # waited unread: none refused
    await eventually(lambda: not proto.paused_by and proto.pending == 0)
    raw.close()


async def test_queued_requests_do_not_start_while_answers_do_not_drain(
    make_pod: PodFactory,
) -> None:
    pod = await make_pod(write_buffer_high=16 * 1024, write_buffer_low=4096, client_max_running=2)
    raw = RawClient(pod.server.bound_port, rcvbuf=4096)
    await eventually(lambda: len(pod.server.connections) == 1)
    proto = pod.protocol()
    assert proto.transport is not None
    sock = proto.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    frames = b"".join(encode_request(BIG, i, {"namespace": "n"}) for i in range(32))
    await raw.send(frames)
    await eventually(lambda: "write" in proto.paused_by)
    await asyncio.sleep(0.2)
    started = pod.processor.started_big
    assert started < 32 // 2  # the rest wait: not one 100 KB answer each in memory
    assert proto.transport.get_write_buffer_size() <= 16 * 1024 + (started + 1) * 100_100
    answers = await raw.read_frames(32)
    assert sorted(a.opaque for a in answers) == list(range(32))
    assert all(a.code == 0 and len(a.body or b"") == 100_000 for a in answers)
    assert pod.processor.started_big == 32
    raw.close()


# ------------------------------------------------------------------ admission


async def test_an_overloaded_pod_answers_system_busy(make_pod: PodFactory) -> None:
    pod = await make_pod(client_max_running=2, client_max_queued=3, connection_max_pending=100)
    raw = RawClient(pod.server.bound_port)
    await raw.send(slow_requests(10))
    busy = await raw.read_frames(5)  # 2 run, 3 wait, 5 are refused at once
    assert len(busy) == 5
    assert all(a.code == ResponseCode.SYSTEM_BUSY and a.remark == BUSY_REMARK for a in busy)
    assert pod.server.admission.client.rejected == 5
    assert pod.processor.started == 2
    pod.processor.gate.set()
    served = await raw.read_frames(5)
    assert [a.code for a in served] == [0] * 5
    assert {a.opaque for a in busy} | {a.opaque for a in served} == set(range(1, 11))
    raw.close()


async def test_a_queued_request_that_waited_too_long_is_answered_busy(
    make_pod: PodFactory,
) -> None:
    pod = await make_pod(client_max_running=1, max_queue_wait_s=0.05)
    c = await pod.client()
    first = asyncio.create_task(c.request(SLOW, {"namespace": "n", "key": "k"}))
    await eventually(lambda: pod.processor.started == 1)
    second = asyncio.create_task(c.request(SLOW, {"namespace": "n", "key": "k"}))
    await eventually(lambda: pod.server.admission.client.queued == 1)
    await asyncio.sleep(0.2)  # longer than max_queue_wait_s
    pod.processor.gate.set()
    a, b = await first, await second
    assert a is not None and a.code == 0
    assert b is not None and b.code == ResponseCode.SYSTEM_BUSY and b.remark == BUSY_REMARK
    assert pod.processor.started == 1  # the expired request was never processed
    await c.close()


async def test_broker_requests_are_served_through_a_client_flood(make_pod: PodFactory) -> None:
    pod = await make_pod(client_max_running=2, client_max_queued=2, connection_max_pending=10)
    flooders = [RawClient(pod.server.bound_port) for _ in range(5)]
    for i, f in enumerate(flooders):
        await f.send(slow_requests(10, first=100 * i))
    await eventually(lambda: pod.server.admission.client.rejected >= 40)
    assert pod.server.admission.client.running == 2

    c = await pod.client()
    b = broker(2)
    assert (await b.register(c)).code == 0
    hb = await c.request(RequestCode.BROKER_HEARTBEAT, {"clusterName": "C1", "brokerAddr": b.addr})
    assert hb is not None and hb.code == 0
    dv = await c.request(
        RequestCode.QUERY_DATA_VERSION,
        {"clusterName": "C1", "brokerAddr": b.addr, "brokerName": b.name, "brokerId": "0"},
        b'{"counter":2,"timestamp":0}',
    )
    assert dv is not None and dv.code == 0
    assert await pod.store.get_route("T1") is not None
    unreg = await b.unregister(c)
    assert unreg.code == 0
    assert await pod.store.get_route("T1") is None
    assert pod.server.admission.broker.rejected == 0
    for f in flooders:
        f.close()
    await c.close()


# ------------------------------------------------------------------ partial-frame budget


def big_frame(size: int, opaque: int) -> bytes:
    """A complete request of ``size`` bytes (after the length prefix), unknown code."""
    header = b'{"code":9999,"flag":0,"language":"JAVA","opaque":%d,"version":409}' % opaque
    body = b"x" * (size - 4 - len(header))
    return struct.pack(">ii", size, len(header)) + header + body


def test_decoder_asks_the_budget_before_buffering_a_big_frame() -> None:
    asked: list[int] = []
    answer = [False]

    def admit(n: int) -> bool:
        asked.append(n)
        return answer[0]

    d = FrameDecoder(admit=admit)
    frame = big_frame(BIG_FRAME * 2, 7)
    small = encode_request(105, 8, {"topic": "T"})
    assert d.feed(frame[:1000]) == []
    assert asked == [BIG_FRAME * 2] and d.blocked and d.reserved == 0
    assert d.feed(frame[1000:5000]) == []  # blocked: held, not decoded
    d.granted(BIG_FRAME * 2)
    out = d.feed(frame[5000:] + small)
    assert [c.opaque for c in out] == [7, 8]
    assert out[0].reserved == BIG_FRAME * 2 and out[1].reserved == 0
    header_length = struct.unpack(">i", frame[4:8])[0] & 0xFFFFFF
    assert len(out[0].body or b"") == BIG_FRAME * 2 - 4 - header_length
    assert d.reserved == 0 and asked == [BIG_FRAME * 2]


async def test_big_partial_frames_share_one_budget(make_pod: PodFactory) -> None:
    mib = 1024 * 1024
    pod = await make_pod(max_frame_bytes=mib, partial_frame_budget=mib)
    budget = pod.server.frame_budget
    size = 600 * 1024
    a, b = RawClient(pod.server.bound_port), RawClient(pod.server.bound_port)
    fa, fb = big_frame(size, 1), big_frame(size, 2)
    await a.send(fa[: size - 1000])
    await eventually(lambda: budget.used == size)
    await b.send(fb[:300_000])  # does not fit next to a's frame: b waits unread
    await eventually(lambda: budget.waiting == 1)
    pb = pod.protocol()
    assert "frame" in pb.paused_by and pb.decoder.buffered <= 300_000
    assert budget.used == size

    await a.send(fa[size - 1000 :])
    (answer_a,) = await a.read_frames(1)
    assert answer_a.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED
    await eventually(lambda: budget.waiting == 0 and "frame" not in pb.paused_by)
    await b.send(fb[300_000:])
    (answer_b,) = await b.read_frames(1)
    assert answer_b.opaque == 2 and answer_b.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED
    await eventually(lambda: budget.used == 0)
    a.close()
    b.close()


async def test_a_closed_connection_gives_its_reservation_back(make_pod: PodFactory) -> None:
    mib = 1024 * 1024
    pod = await make_pod(max_frame_bytes=mib, partial_frame_budget=mib)
    budget = pod.server.frame_budget
    a, b = RawClient(pod.server.bound_port), RawClient(pod.server.bound_port)
    await a.send(big_frame(900 * 1024, 1)[:500_000])
    await eventually(lambda: budget.used == 900 * 1024)
    await b.send(big_frame(900 * 1024, 2)[:1000])
    await eventually(lambda: budget.waiting == 1)
    pa, pb = pod.protocol(0), pod.protocol(1)
    pb.close()  # a waiter that leaves (a paused connection is closed by the idle check)
    await eventually(lambda: len(pod.server.connections) == 1)
    assert budget.waiting == 0 and budget.used == 900 * 1024
    pa.close()  # a holder that leaves
    await eventually(lambda: not pod.server.connections)
    assert budget.used == 0
    a.close()
    b.close()


async def test_a_stalled_big_frame_is_closed_after_its_timeout(make_pod: PodFactory) -> None:
    pod = await make_pod(partial_frame_timeout_s=0.2)
    raw = RawClient(pod.server.bound_port)
    await raw.send(big_frame(2 * BIG_FRAME, 1)[:BIG_FRAME])
    await eventually(lambda: pod.server.frame_budget.used == 2 * BIG_FRAME)
    assert await raw.closed_by_peer()
    await eventually(lambda: pod.server.frame_budget.used == 0)
    raw.close()


# ------------------------------------------------------------------ register bodies


def bomb(inflated: int) -> bytes:
    """A compressed register body that inflates to ``inflated`` bytes of mostly zeros."""
    head = b'{"counter":1,"timestamp":1}'
    raw = struct.pack(">i", len(head)) + head + struct.pack(">i", 0)
    return zlib.compress(raw + b"\0" * (inflated - len(raw)), 9)


async def test_a_compressed_body_is_bounded_while_inflating(make_pod: PodFactory) -> None:
    pod = await make_pod()
    c = await pod.client()
    before = await pod.store.all_topics()
    b = broker(2, compressed=True)
    ext, _ = b.register_request()
    body = bomb(64 * 1024 * 1024)
    from namesrv_redis.rocketmq.register_body import crc32_masked

    ext["bodyCrc32"] = str(crc32_masked(body))
    resp = await c.request(RequestCode.REGISTER_BROKER, ext, body, timeout=20)
    assert resp is not None and resp.code == ResponseCode.SYSTEM_ERROR
    assert resp.remark is not None and "inflates past 16777216 bytes" in resp.remark
    assert await pod.store.all_topics() == before
    assert (await pod.store.get_cluster_info()).broker_addr_table == {}
    await c.close()


def test_inflating_stops_at_the_limit() -> None:
    from namesrv_redis.rocketmq.register_body import BodyError, _inflate

    assert len(_inflate(bomb(3 * 1024 * 1024), limit=4 * 1024 * 1024)) == 3 * 1024 * 1024
    with pytest.raises(BodyError, match="inflates past 2097152 bytes"):
        _inflate(bomb(3 * 1024 * 1024), limit=2 * 1024 * 1024)
    data = bytes(range(256)) * 5000
    assert _inflate(zlib.compress(data), limit=len(data)) == data
    with pytest.raises(BodyError, match="inflates past"):
        _inflate(zlib.compress(data), limit=len(data) - 1)


def test_chunked_table_decode_equals_the_one_call_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    import orjson

    from namesrv_redis.rocketmq import register_body as rb

    monkeypatch.setattr(rb, "CHUNKED_DECODE_BYTES", 64)
    table: dict[str, Any] = {}
    for i in range(300):
        entry: dict[str, Any] = {"readQueueNums": i % 7, "writeQueueNums": 3, "perm": 6}
        if i % 5 == 0:
            entry["attributes"] = {"k": 'x},"y":{"z', "n": "}"}  # cut look-alikes
        table[f"T{i}"] = entry
    wrapper = {"dataVersion": {"counter": 1}, "topicConfigTable": table}
    body = orjson.dumps({"topicConfigSerializeWrapper": wrapper})
    raw = orjson.dumps(table)
    chunked = rb._decode_table_chunked(raw)
    assert chunked is not None
    whole = rb._FAST_BODY.decode(body).topic_config_serialize_wrapper
    assert whole is not None
    assert list(chunked.items()) == list(whole.topic_config_table.items())
    # a value that the strict decode refuses makes the chunked one give up, not differ
    bad = raw.replace(b'"perm":6', b'"perm":"6"', 1)
    assert rb._decode_table_chunked(bad) is None


async def test_big_registrations_run_off_the_loop() -> None:
    server = RedisServerProcess().start()
    try:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(server.url)
        store = RouteStore(client, "off")
        await store.load_scripts()
        routes, events = await cached_routes(client, store)
        processor = NamesrvProcessor(store, Settings(), routes)
        offload = Offloader(processor, server.url, min_body=1024)
        await offload.start()
        rs = RemotingServer(processor, host="127.0.0.1", port=0, offload=offload)
        await rs.start()
        try:
            c = await RemotingClient.connect("127.0.0.1", rs.bound_port)
            b = broker(2000)
            assert (await b.register(c)).code == 0
            assert offload.jobs == 1
            assert (await b.register(c)).code == 0  # same body: the remembered (lite) path
            b.add_topics(["extra"])
            assert (await b.register(c)).code == 0  # diff against the remembered table
            assert offload.jobs == 3
            route = await store.get_route("extra")
            assert route is not None and len(await store.all_topics()) == 2001
            # an offloaded registration is remembered for a rebuild like any other
            assert processor.accepted.get(b.cluster, b.addr) is not None
            # and the ACL answers it on the pod's loop before anything is handed over
            refusal = Response(ResponseCode.NO_PERMISSION, "refused by the test")

            async def refuse(cmd: Any, conn: Any) -> Response | None:
                return refusal if cmd.code == RequestCode.REGISTER_BROKER else None

            processor.refusal = refuse  # type: ignore[method-assign]
            b.add_topics(["refused"])
            resp = await b.register(c)
            assert resp.code == ResponseCode.NO_PERMISSION and offload.jobs == 3
            assert await store.get_route("refused") is None
            del processor.refusal
            await c.close()  # the broker's connection closes: the loop removes it
            await eventually(lambda: not rs.connections)
            for _ in range(100):
                if await store.get_route("T1") is None:
                    break
                await asyncio.sleep(0.05)
            assert await store.get_route("T1") is None
        finally:
            await rs.stop(grace_s=1)
            await offload.stop()
            await events.stop()
            with contextlib.suppress(Exception):
                await client.aclose()
    finally:
        server.stop()


async def test_uncached_route_queries_have_a_lane_of_their_own(make_pod: PodFactory) -> None:
    pod = await make_pod(client_max_running=1, client_max_queued=0, connection_max_pending=10)
    c = await pod.client()
    assert (await broker(2).register(c)).code == 0
    raw = RawClient(pod.server.bound_port)
    await raw.send(slow_requests(5))
    await eventually(lambda: pod.server.admission.client.rejected == 4)
    pod.server.processor.routes.clear()
    route = await c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T1"}, version=409)
    assert route is not None and route.code == 0 and route.body
    assert pod.server.admission.route.rejected == 0
    raw.close()
    await c.close()


# ------------------------------------------------------------------ single flight


async def test_identical_list_queries_in_flight_share_one_computation(
    make_pod: PodFactory,
) -> None:
    pod = await make_pod()
    c = await pod.client()
    assert (await broker(50).register(c)).code == 0
    raw = RawClient(pod.server.bound_port, rcvbuf=1 << 20)
    code = RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER
    await raw.send(b"".join(encode_request(code, i) for i in range(10)))
    answers = await raw.read_frames(10)
    assert sorted(a.opaque for a in answers) == list(range(10))
    assert all(a.code == 0 and a.body == answers[0].body for a in answers)
    assert b"T49" in (answers[0].body or b"")
    assert pod.processor.calls[code] == 1
    assert pod.server.single_flight.joined == 9
    one = await c.request(code)  # nothing in flight any more: computed again
    assert one is not None and one.body == answers[0].body
    assert pod.processor.calls[code] == 2
    raw.close()
    await c.close()


async def test_a_query_does_not_join_a_computation_older_than_a_write() -> None:
    from namesrv_redis.remoting.single_flight import SingleFlight

    flights = SingleFlight()
    gate = asyncio.Event()
    computed: list[str] = []

    def compute(answer: str) -> Callable[[], Awaitable[Response]]:
        async def run() -> Response:
            computed.append(answer)
            await gate.wait()
            return Response(remark=answer)

        return run

    query = RemotingCommand(int(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER))
    write = RemotingCommand(int(RequestCode.PUT_KV_CONFIG))
    old = asyncio.create_task(flights.run(query, compute("before")))
    joined = asyncio.create_task(flights.run(query, compute("joined")))
    await asyncio.sleep(0)
    await flights.run(write, _done)  # a write completes while "before" is computing
    fresh = asyncio.create_task(flights.run(query, compute("after")))
    await asyncio.sleep(0)
    gate.set()
    assert (await old).remark == "before" and (await joined).remark == "before"
    assert (await fresh).remark == "after"
    assert computed == ["before", "after"]


async def _done() -> Response:
    return Response()


# ------------------------------------------------------------------ wiring


def test_limits_come_from_settings() -> None:
    limits = FlowLimits.from_settings(
        Settings(flow_client_max_queued=5, flow_write_buffer_high=8192, flow_write_buffer_low=0)
    )
    assert limits.client_max_queued == 5 and limits.write_buffer_high == 8192
    assert limits.broker_max_queued == FlowLimits().broker_max_queued
    with pytest.raises(ValueError, match="flow_write_buffer_low"):
        FlowLimits.from_settings(Settings(flow_write_buffer_high=8192, flow_write_buffer_low=9000))


async def test_serve_answers_system_busy_with_its_configured_lanes(
    redis_server: RedisServerProcess, namespace: str
) -> None:
    from tests.serverproc import NamesrvProcess

    pod = NamesrvProcess(
        redis_server.url,
        namespace,
        env={"NAMESRV_FLOW_CLIENT_MAX_RUNNING": "1", "NAMESRV_FLOW_CLIENT_MAX_QUEUED": "0"},
    ).start()
    try:
        raw = RawClient(pod.port, rcvbuf=1 << 20)
        await raw.send(slow_requests(20))  # GET_KV_CONFIG: a Redis read each
        answers = await raw.read_frames(20)
        assert sorted(a.opaque for a in answers) == list(range(1, 21))
        busy = [a for a in answers if a.code == ResponseCode.SYSTEM_BUSY]
        assert busy and all(a.remark == BUSY_REMARK for a in busy)
        assert {a.code for a in answers} <= {ResponseCode.SYSTEM_BUSY, ResponseCode.QUERY_NOT_FOUND}
        raw.close()
    finally:
        pod.stop()
