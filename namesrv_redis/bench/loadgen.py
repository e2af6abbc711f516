"""Route load from one generator process: C connections × P requests in flight, over the
remoting protocol (pipelined, matched by opaque) or HTTP/1.1 (pipelined, in order).

Every answer is validated (response code 0 and a route body with queue and broker data);
latency is measured from the write of a request to the read that completed its answer.
Run several of these processes (:func:`run_route_load`) so the generator is not the
bottleneck; each reports its own CPU time.
"""

from __future__ import annotations

import asyncio
import os
import random
import struct
import time
from array import array
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import orjson

from namesrv_redis.bench.stats import self_cpu_s
from namesrv_redis.remoting.codec import FrameDecoder, FrameError

T = TypeVar("T")

_PREFIX = struct.Struct(">ii")


@dataclass
class LoadSpec:
    host: str
    port: int
    topics: list[str]
    connections: int
    pipeline: int
    duration_s: float
    warmup_s: float
    protocol: str = "remoting"  # or "remoting+tls", "http", "resp" (Redis GET of ``topics``)
    version: int = 409
    validate: str = "fast"  # fast | full
    seed: int = 0
    cpu: int | None = None
    ports: tuple[int, ...] = ()
    """Several pods: connection ``i`` goes to ``ports[i % len(ports)]`` (default: ``port``)."""
    start_at: float | None = None
    """Measure from this ``time.monotonic()`` moment (connecting ``warmup_s`` before it)
    instead of ``warmup_s`` after the process starts: windows aligned across processes."""


@dataclass
class LoadResult:
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies_us: array[int] = field(default_factory=lambda: array("I"))
    cpu_s: float = 0.0
    window_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": dict(self.errors),
            "latencies": self.latencies_us.tobytes(),
            "cpu_s": self.cpu_s,
            "window_s": self.window_s,
        }


class _Window:
    def __init__(self, warmup_s: float, duration_s: float, start_at: float | None = None) -> None:
        # perf_counter and monotonic are the same clock (CLOCK_MONOTONIC) on Linux
        self.start = time.perf_counter() + warmup_s if start_at is None else start_at
        self.end = self.start + duration_s

    def measuring(self, t: float) -> bool:
        return self.start <= t < self.end


def _valid_route(body: bytes | bytearray | None, mode: str) -> bool:
    if not body:
        return False
    if mode == "full":
        d = orjson.loads(body)
        return bool(d.get("queueDatas")) and any(
            b.get("brokerAddrs") for b in d.get("brokerDatas", [])
        )
    return b'"queueDatas":[{' in body and b'"brokerAddrs":{' in body


class _RouteLoad(asyncio.Protocol):
    """What both protocols share: the window, validation, accounting and shutdown."""

    def __init__(
        self,
        spec: LoadSpec,
        result: LoadResult,
        window: _Window,
        rng: random.Random,
        done: asyncio.Future[None],
    ) -> None:
        self.spec, self.result, self.window, self.rng, self.done = spec, result, window, rng, done
        self.transport: asyncio.Transport | None = None
        self._prepare()

    def _prepare(self) -> None:
        raise NotImplementedError  # each protocol builds its own request templates

    def _request(self) -> bytes:
        raise NotImplementedError  # each protocol builds its own requests

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(b"".join(self._request() for _ in range(self.spec.pipeline)))

    def _record(
        self, now: float, started: float, error: str | None, body: bytes | bytearray | None
    ) -> None:
        """Account one answer (only those whose request and answer fall in the window)."""
        if not (self.window.measuring(now) and self.window.measuring(started)):
            return
        if error is not None:
            self.result.errors[error] += 1
        elif not _valid_route(body, self.spec.validate):
            self.result.errors["invalid_body"] += 1
        else:
            self.result.ok += 1
            self.result.latencies_us.append(int((now - started) * 1e6))

    def _send(self, out: list[bytes], idle: bool) -> None:
        if out:
            assert self.transport is not None
            self.transport.write(b"".join(out))
        elif idle:
            self._finish()

    def connection_lost(self, exc: Exception | None) -> None:
        if time.perf_counter() < self.window.end:
            self.result.errors["disconnect"] += 1
        self._finish()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
        if self.transport is not None:
            self.transport.close()


class _RemotingRoutes(_RouteLoad):
    def _prepare(self) -> None:
        spec = self.spec
        self.decoder = FrameDecoder()
        self.inflight: dict[int, float] = {}
        self.opaque = 0
        self.requests = [
            (
                b'{"code":105,"extFields":{"topic":' + orjson.dumps(t) + b'},"flag":0,'
                b'"language":"JAVA","opaque":',
                b',"serializeTypeCurrentRPC":"JSON","version":' + str(spec.version).encode() + b"}",
            )
            for t in spec.topics
        ]

    def _request(self) -> bytes:
        self.opaque += 1
        pre, post = self.requests[self.rng.randrange(len(self.requests))]
        header = pre + str(self.opaque).encode() + post
        self.inflight[self.opaque] = time.perf_counter()
        return _PREFIX.pack(4 + len(header), len(header)) + header

    def data_received(self, data: bytes) -> None:
        try:
            cmds = self.decoder.feed(data)
        except FrameError:
            self.result.errors["decode"] += 1
            self._finish()
            return
        now = time.perf_counter()
        out = []
        measuring = self.window.measuring(now)
        for cmd in cmds:
            started = self.inflight.pop(cmd.opaque, None)
            if started is None:
                if measuring:
                    self.result.errors["unmatched_opaque"] += 1
                continue
            self._record(now, started, f"code_{cmd.code}" if cmd.code else None, cmd.body)
            if now < self.window.end:
                out.append(self._request())
        self._send(out, idle=not self.inflight)


class _HttpRoutes(_RouteLoad):
    """HTTP/1.1 keep-alive, P pipelined GET /v1/routes/{topic}; answers come in order."""

    def _prepare(self) -> None:
        spec = self.spec
        self.buf = bytearray()
        self.started: list[float] = []
        host = f"{spec.host}:{spec.port}".encode()
        self.requests = [
            b"GET /v1/routes/" + t.encode() + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
            for t in spec.topics
        ]

    def _request(self) -> bytes:
        self.started.append(time.perf_counter())
        return self.requests[self.rng.randrange(len(self.requests))]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        now = time.perf_counter()
        out = []
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                break
            head = bytes(self.buf[:head_end]).lower()
            i = head.find(b"content-length:")
            length = (
                int(head[i + 15 : head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None])
                if i >= 0
                else 0
            )
            if len(self.buf) < head_end + 4 + length:
                break
            status = int(head[9:12])
            body = bytes(self.buf[head_end + 4 : head_end + 4 + length])
            del self.buf[: head_end + 4 + length]
            started = self.started.pop(0)
            self._record(now, started, f"http_{status}" if status != 200 else None, body)
            if now < self.window.end:
                out.append(self._request())
        self._send(out, idle=not self.started)


class _RespGets(_HttpRoutes):
    """Redis GET of the keys named ``topics`` (RESP2), P pipelined; answers come in order, as
    over HTTP. Each value must be a route body (the ceiling bench stores one): validated the
    same way."""

    def _prepare(self) -> None:
        self.buf = bytearray()
        self.started: list[float] = []
        self.requests = [
            b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k)
            for k in (t.encode() for t in self.spec.topics)
        ]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        now = time.perf_counter()
        out = []
        pos, buf = 0, self.buf
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                break
            error: str | None = None
            body: bytes | None = None
            if buf[pos] == ord("$"):
                length = int(buf[pos + 1 : line_end])
                end = line_end + 2 + max(length, 0) + (2 if length >= 0 else 0)
                if len(buf) < end:
                    break
                body = bytes(buf[line_end + 2 : end - 2]) if length >= 0 else None
                error = None if length >= 0 else "redis_nil"
            else:  # an error (or any other reply type): not an answer to GET
                end = line_end + 2
                error = "redis_" + bytes(buf[pos : min(line_end, pos + 16)]).decode(
                    errors="replace"
                )
            pos = end
            self._record(now, self.started.pop(0), error, body)
            if now < self.window.end:
                out.append(self._request())
        del buf[:pos]
        self._send(out, idle=not self.started)


_PROTOCOLS: dict[str, type[_RouteLoad]] = {"http": _HttpRoutes, "resp": _RespGets}


async def _run(spec: LoadSpec) -> LoadResult:
    result = LoadResult()
    if spec.start_at is not None:
        await asyncio.sleep(max(0.0, spec.start_at - spec.warmup_s - time.monotonic()))
    window = _Window(spec.warmup_s, spec.duration_s, spec.start_at)
    loop = asyncio.get_running_loop()
    proto_cls = _PROTOCOLS.get(spec.protocol, _RemotingRoutes)
    ssl_ctx = None
    if spec.protocol == "remoting+tls":  # as a RocketMQ client with -Dtls.enable=true
        from namesrv_redis.remoting.tls import client_context_insecure

        ssl_ctx = client_context_insecure()
    dones = []
    for i in range(spec.connections):
        done: asyncio.Future[None] = loop.create_future()
        rng = random.Random(spec.seed * 1000 + i)
        await loop.create_connection(
            lambda rng=rng, done=done: proto_cls(spec, result, window, rng, done),  # type: ignore[misc]
            spec.host,
            spec.ports[i % len(spec.ports)] if spec.ports else spec.port,
            ssl=ssl_ctx,
        )
        dones.append(done)
    cpu0 = self_cpu_s()
    await asyncio.sleep(max(0.0, window.start - time.perf_counter()))
    cpu_start = self_cpu_s()
    await asyncio.sleep(max(0.0, window.end - time.perf_counter()))
    result.cpu_s = self_cpu_s() - cpu_start
    del cpu0
    result.window_s = spec.duration_s
    await asyncio.wait(dones, timeout=10)
    return result


def install_uvloop() -> None:
    """uvloop for this benchmark process's event loops, when it is installed."""
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return
    uvloop.install()


def run_on_uvloop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on a uvloop loop when uvloop is installed, without changing the process's
    event loop policy (a caller's later loops, subprocesses included, stay as they were)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def run_route_load(spec: LoadSpec) -> dict[str, Any]:
    """Entry point of one generator process (picklable result)."""
    if spec.cpu is not None:
        os.sched_setaffinity(0, {spec.cpu})
    return run_on_uvloop(_run(spec)).to_dict()


def merge(results: list[dict[str, Any]]) -> LoadResult:
    merged = LoadResult()
    for r in results:
        merged.ok += r["ok"]
        merged.errors.update(r["errors"])
        lat = array("I")
        lat.frombytes(r["latencies"])
        merged.latencies_us.extend(lat)
        merged.cpu_s += r["cpu_s"]
        merged.window_s = max(merged.window_s, r["window_s"])
    return merged
