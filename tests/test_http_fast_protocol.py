"""The HTTP tier's protocol-level route answers (namesrv_redis/http/fast_protocol.py) over real
sockets: a cached ``GET /v1/routes/{topic}`` is answered without an ASGI cycle, byte for byte
what the ASGI path sends, and everything else (misses, queries, other paths and methods,
pipelined mixes, ``Connection: close``, malformed requests) behaves as uvicorn's own
protocol does."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import uvicorn

from namesrv_redis.domain.route_reader import RouteReader
from namesrv_redis.http.fast_protocol import route_protocol
from namesrv_redis.http.fast_routes import LABEL, RouteFastPath
from namesrv_redis.http.limits import BodyLimit, BoundedHttpToolsProtocol
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.telemetry.metrics import REGISTRY
from tests.conftest import free_port
from tests.test_http import Tier, register, sim_broker, tier  # noqa: F401

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
"""status, headers (lower-case names, in order), body"""


class CountingApp:
    """ASGI wrapper counting the requests that reach the application."""

    def __init__(self, app: Any) -> None:
        self.app, self.calls = app, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await self.app(scope, receive, send)


def routes_of(t: Tier) -> RouteReader:
    routes = t.remoting.processor.routes
    assert routes is not None
    return routes


def pod_app(t: Tier) -> CountingApp:
    """The ASGI stack the pod serves: body limit, ASGI fast path, FastAPI."""
    return CountingApp(BodyLimit(RouteFastPath(t.app, routes_of(t), t.events)))


@asynccontextmanager
async def served(
    t: Tier, *, fast: bool = True, access_log: bool = False, keep_alive_s: float = 5
) -> AsyncIterator[tuple[int, CountingApp]]:
    """The tier on a free port: with the pod's protocol, or (``fast=False``) with the bounded
    httptools protocol it replaces, as the reference."""
    app = pod_app(t)
    port = free_port()
    protocol = route_protocol(routes_of(t), t.events) if fast else BoundedHttpToolsProtocol
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="info" if access_log else "warning",
        access_log=access_log,
        lifespan="off",
        http=protocol,
        timeout_keep_alive=keep_alive_s,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        yield port, app
    finally:
        server.should_exit = True
        await serving


async def read_answer(reader: asyncio.StreamReader, *, head_only: bool = False) -> Answer:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = [
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(b":") for line in lines[1:])
    ]
    length = int(dict(headers).get(b"content-length", b"0"))
    if head_only:  # the answer to HEAD: a content-length but no body
        return status, headers, b""
    body = await asyncio.wait_for(reader.readexactly(length), 5) if length else b""
    return status, headers, body


async def exchange(
    port: int, raw: bytes, answers: int, *, tls: bool = False, head_only: bool = False
) -> list[Answer]:
    ctx = ssl.create_default_context() if tls else None
    if ctx is not None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    try:
        writer.write(raw)
        await writer.drain()
        return [await read_answer(reader, head_only=head_only) for _ in range(answers)]
    finally:
        writer.close()


def get(path: str, *extra: str, method: str = "GET", version: str = "1.1") -> bytes:
    head = [f"{method} {path} HTTP/{version}", "Host: t", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


async def until_cached(routes: RouteReader, topic: str, port: int) -> bytes:
    """Read the topic until the pod's cache holds it (a late registration event may drop the
    first read's entry); its cached body."""
    for _ in range(100):
        await exchange(port, get(f"/v1/routes/{topic}?wait=1s"), 1)
        hit, body = routes.cached_body(topic, standard=True)
        if hit and body is not None:
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"{topic} never cached")


def without_date(answer: Answer) -> Answer:
    status, headers, body = answer
    return status, [h for h in headers if h[0] != b"date"], body


async def registered(t: Tier, *topics: str) -> RemotingClient:
    return await register(t, sim_broker(topics=topics or ("T1", "T2")))


async def test_cached_hit_skips_asgi_and_matches_the_asgi_answer(tier: Tier) -> None:  # noqa: F811
    c = await registered(tier)
    async with served(tier) as (port, app), served(tier, fast=False) as (ref_port, _):
        cached = await until_cached(routes_of(tier), "T1", port)
        calls = app.calls
        raw_reader, raw_writer = await asyncio.open_connection("127.0.0.1", port)
        raw_writer.write(get("/v1/routes/T1"))
        head = await asyncio.wait_for(raw_reader.readuntil(b"\r\n\r\n"), 5)
        body = await raw_reader.readexactly(len(cached))
        raw_writer.close()
        assert app.calls == calls  # answered by the protocol
        date = next(line for line in head.split(b"\r\n") if line.startswith(b"date: "))
        index = tier.events.latest_version
        assert head == (
            b"HTTP/1.1 200 OK\r\n" + date + b"\r\nserver: uvicorn\r\n"
            b"content-length: %d\r\ncontent-type: application/json\r\n"
            b"x-namesrv-index: %d\r\n\r\n" % (len(cached), index)
        )
        assert body == cached
        # the same bytes (but the date) as uvicorn's own protocol sends through the ASGI path
        ref = await exchange(ref_port, get("/v1/routes/T1"), 1)
        ours = await exchange(port, get("/v1/routes/T1"), 1)
        assert without_date(ours[0]) == without_date(ref[0])
        # and the body FastAPI itself makes for the topic (a query string skips both fast paths)
        fastapi = await exchange(port, get("/v1/routes/T1?wait=1s"), 1)
        assert fastapi[0][0] == 200 and fastapi[0][2] == body
        assert dict(fastapi[0][1])[b"content-type"] == b"application/json"
        assert app.calls == calls + 1
    await c.close()


async def test_miss_unknown_topic_query_and_other_paths_go_through_asgi(
    tier: Tier,  # noqa: F811
) -> None:
    c = await registered(tier)
    async with served(tier) as (port, app):
        routes_of(tier).invalidate(frozenset({"T2"}))
        calls = app.calls
        miss = await exchange(port, get("/v1/routes/T2"), 1)
        assert miss[0][0] == 200 and b"brokerDatas" in miss[0][2]
        unknown = await exchange(port, get("/v1/routes/nope"), 1)
        assert unknown[0][0] == 404
        assert orjson.loads(unknown[0][2]) == {
            "error": "topic_not_found",
            "detail": "No topic route info in name server for the topic: nope",
        }
        assert dict(unknown[0][1])[b"x-namesrv-index"] == str(tier.events.latest_version).encode()
        query = await exchange(port, get("/v1/routes/T2?wait=1s"), 1)
        assert query[0][0] == 200 and query[0][2] == miss[0][2]
        health = await exchange(port, get("/healthz"), 1)
        assert health[0][0] == 200 and orjson.loads(health[0][2]) == {"status": "ok"}
        empty = await exchange(port, get("/v1/routes/"), 1)
        assert empty[0][0] == 404
        assert app.calls == calls + 5
    await c.close()


async def test_percent_encoded_and_slashed_topics_are_cached_hits(tier: Tier) -> None:  # noqa: F811
    c = await registered(tier, "ns%a/b", "T1")
    async with served(tier) as (port, app):
        cached = await until_cached(routes_of(tier), "ns%a/b", port)
        calls = app.calls
        answer = await exchange(port, get("/v1/routes/ns%25a/b"), 1)
        assert answer[0][0] == 200 and answer[0][2] == cached
        assert app.calls == calls
    await c.close()


async def test_pipelined_hits_and_misses_come_back_in_order(tier: Tier) -> None:  # noqa: F811
    c = await registered(tier)
    async with served(tier) as (port, app):
        routes = routes_of(tier)
        t1 = await until_cached(routes, "T1", port)
        t2 = await until_cached(routes, "T2", port)
        calls = app.calls
        wanted: list[tuple[str, int, bytes | None]] = [
            ("/v1/routes/T1", 200, t1),
            ("/v1/routes/T2", 200, t2),
            ("/v1/routes/nope", 404, None),  # through ASGI: the hits after it must wait
            ("/v1/routes/T1", 200, t1),
            ("/v1/routes/T2?wait=1s", 200, t2),
            ("/healthz", 200, b'{"status":"ok"}'),
            ("/v1/routes/T2", 200, t2),
            ("/v1/routes/T1", 200, t1),
            ("/v1/routes/T1", 200, t1),
        ] * 3
        answers = await exchange(port, b"".join(get(p) for p, _, _ in wanted), len(wanted))
        for (path, status, body), (got_status, _, got_body) in zip(wanted, answers, strict=True):
            assert got_status == status, path
            if body is not None:
                assert got_body == body, path
            else:
                assert orjson.loads(got_body)["error"] == "topic_not_found"
        assert 0 < app.calls - calls < len(wanted)  # the leading hits were the protocol's
    await c.close()


async def test_many_pipelined_hits_in_one_read(tier: Tier) -> None:  # noqa: F811
    c = await registered(tier)
    async with served(tier) as (port, app):
        t1 = await until_cached(routes_of(tier), "T1", port)
        calls = app.calls
        n = 64 * 1024 // len(t1) * 3  # more answers than one write of collected answers
        answers = await exchange(port, get("/v1/routes/T1") * n, n)
        assert all(a[0] == 200 and a[2] == t1 for a in answers)
        assert app.calls == calls
    await c.close()


async def test_a_peer_that_does_not_read_gets_flow_control(tier: Tier) -> None:  # noqa: F811
    """Once the transport pauses writing, requests go through uvicorn's cycle (which waits
    for the peer and stops reading): answers do not pile up in memory, and stay in order."""
    c = await registered(tier)
    async with served(tier) as (port, app):
        t1 = await until_cached(routes_of(tier), "T1", port)
        calls = app.calls
        n = 8_000_000 // len(t1) + 1  # more answer bytes than socket buffers hold
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(get("/v1/routes/T1") * n)
            for _ in range(100):
                if app.calls > calls:
                    break
                await asyncio.sleep(0.05)
            assert app.calls > calls  # writes paused: a request went the ASGI way
            answers = [await read_answer(reader) for _ in range(n)]
        finally:
            writer.transport.abort()
        assert all(a[0] == 200 and a[2] == t1 for a in answers)
    await c.close()


async def test_head_goes_through_uvicorn(tier: Tier) -> None:  # noqa: F811
    c = await registered(tier)
    async with served(tier) as (port, app), served(tier, fast=False) as (ref_port, _):
        await until_cached(routes_of(tier), "T1", port)
        calls = app.calls
        head = get("/v1/routes/T1", method="HEAD")
        ours = await exchange(port, head, 1, head_only=True)
        ref = await exchange(ref_port, head, 1, head_only=True)
        assert app.calls == calls + 1
        assert without_date(ours[0]) == without_date(ref[0])
    await c.close()


@pytest.mark.parametrize(
    "request_bytes",
    [get("/v1/routes/T1", "Connection: close"), get("/v1/routes/T1", version="1.0")],
    ids=["connection-close", "http-1.0"],
)
async def test_connection_close_is_answered_then_closed(
    tier: Tier,  # noqa: F811
    request_bytes: bytes,
) -> None:
    c = await registered(tier)
    async with served(tier) as (port, app):
        t1 = await until_cached(routes_of(tier), "T1", port)
        calls = app.calls
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # requests after the closing one are not answered (uvicorn drops them too)
        after = get("/v1/routes/nope") + get("/v1/routes/T1") + get("/healthz")
        writer.write(
            request_bytes + after + b"POST /v1/kv/a/b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
        )
        status, headers, body = await read_answer(reader)
        rest = await asyncio.wait_for(reader.read(), 5)  # EOF: the server closed
        writer.close()
        assert status == 200 and body == t1 and rest == b""
        assert (b"connection", b"close") in headers
        assert app.calls == calls
    await c.close()


async def test_idle_connection_is_closed_after_fast_answers(tier: Tier) -> None:  # noqa: F811
    """uvicorn's keep-alive timeout, armed after the last answer of a read, holds for
    connections that only ever got fast answers."""
    c = await registered(tier)
    async with served(tier, keep_alive_s=0.3) as (port, app):
        t1 = await until_cached(routes_of(tier), "T1", port)
        calls = app.calls
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(3):  # each read re-arms the timeout
                writer.write(get("/v1/routes/T1") * 2)
                assert [(await read_answer(reader))[2] for _ in range(2)] == [t1, t1]
                await asyncio.sleep(0.1)
            assert await asyncio.wait_for(reader.read(), 5) == b""  # idle: closed by the server
        finally:
            writer.close()
        assert app.calls == calls
    await c.close()


async def test_malformed_request_gets_400_and_the_server_lives_on(tier: Tier) -> None:  # noqa: F811
    c = await registered(tier)
    async with served(tier) as (port, _):
        t1 = await until_cached(routes_of(tier), "T1", port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # a hit, then garbage in the same read: the hit's answer comes first, then the 400
        writer.write(get("/v1/routes/T1") + b"NOT A REQUEST LINE\r\n\r\n")
        hit = await read_answer(reader)
        bad = await read_answer(reader)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        assert hit[0] == 200 and hit[2] == t1
        assert bad[0] == 400 and bad[2] == b"Invalid HTTP request received."
        again = await exchange(port, get("/v1/routes/T1"), 1)
        assert again[0][0] == 200 and again[0][2] == t1
    await c.close()


def answered() -> float:
    value = REGISTRY.get_sample_value("namesrv_requests_total", {"frontend": "http", "code": LABEL})
    return value or 0.0


def timed() -> float:
    value = REGISTRY.get_sample_value(
        "namesrv_request_seconds_count", {"frontend": "http", "code": LABEL}
    )
    return value or 0.0


async def test_fast_answers_are_counted_and_timed(tier: Tier) -> None:  # noqa: F811
    c = await registered(tier)
    async with served(tier) as (port, app):
        await until_cached(routes_of(tier), "T1", port)
        calls, count, observed = app.calls, answered(), timed()
        await exchange(port, get("/v1/routes/T1") * 5, 5)
        assert app.calls == calls
        assert answered() == count + 5 and timed() == observed + 5
    await c.close()


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_access_log_lines_match_uvicorn(tier: Tier) -> None:  # noqa: F811
    c = await registered(tier, "ns%a/b", "T1")
    lines = Lines()
    access = logging.getLogger("uvicorn.access")
    async with (
        served(tier, access_log=True) as (port, app),
        served(tier, fast=False, access_log=True) as (ref_port, _),
    ):
        await until_cached(routes_of(tier), "ns%a/b", port)
        access.addHandler(lines)
        try:
            calls = app.calls
            await exchange(port, get("/v1/routes/ns%25a/b", version="1.0"), 1)
            assert app.calls == calls
            ours = lines.lines[:]
            await exchange(ref_port, get("/v1/routes/ns%25a/b", version="1.0"), 1)
            ref = lines.lines[len(ours) :]
        finally:
            access.removeHandler(lines)
    strip_port = re.compile(r":\d+ - ")
    assert len(ours) == 1 and [strip_port.sub(":_ - ", x) for x in ours] == [
        strip_port.sub(":_ - ", x) for x in ref
    ]
    assert '"GET /v1/routes/ns%25a/b HTTP/1.0" 200' in ours[0]
    await c.close()


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never held")


@pytest.mark.parametrize(
    ("tls", "workers"), [(False, 1), (True, 1), (False, 2)], ids=["http", "https", "workers-2"]
)
async def test_serve_answers_cached_routes_pipelined(
    redis_server: Any, namespace: str, tls: bool, workers: int
) -> None:
    """``namesrv-redis serve`` uses the protocol (over HTTPS and with workers too): pipelined
    hits and misses in order, the cached body equal to the blocking query's (FastAPI's)."""
    from tests.serverproc import NamesrvProcess

    extra = [*(["--http-tls"] if tls else []), "--workers", str(workers)]
    proc = NamesrvProcess(redis_server.url, namespace, *extra).start()
    try:
        c = await RemotingClient.connect("127.0.0.1", proc.port)
        broker = sim_broker(topics=("T1", "T2"))
        assert (await broker.register(c)).code == 0
        port = proc.http_port

        async def fastapi_body() -> bool:
            answer = await exchange(port, get("/v1/routes/T1?wait=1s"), 1, tls=tls)
            return answer[0][0] == 200

        await until(fastapi_body)
        reference = (await exchange(port, get("/v1/routes/T1?wait=1s"), 1, tls=tls))[0][2]
        wanted = ["/v1/routes/T1", "/v1/routes/nope", "/v1/routes/T1", "/v1/routes/T2"] * 8
        answers = await exchange(port, b"".join(get(p) for p in wanted), len(wanted), tls=tls)
        for path, (status, headers, body) in zip(wanted, answers, strict=True):
            if path.endswith("nope"):
                assert status == 404
            else:
                assert status == 200 and b"brokerDatas" in body
                assert dict(headers)[b"content-type"] == b"application/json"
            if path.endswith("T1"):
                assert body == reference
        await c.close()
    finally:
        proc.stop()
