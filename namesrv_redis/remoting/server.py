"""The RocketMQ remoting TCP server: a thin ``asyncio.Protocol`` over the pure codec.

Per connection: bytes go into a :class:`FrameDecoder`; each decoded request is dispatched to
the :class:`NamesrvProcessor`; the answer is encoded with the request's opaque and serialize
type. Route queries answered from the pod cache are written inline, without a task. A
malformed frame is logged and the connection closed; a failing request gets an error
response; nothing raises out of ``data_received``. Idle connections are closed after
``serverChannelMaxIdleTimeSeconds``; past ``max_connections`` new connections are refused.
When a connection closes, the brokers registered over it are removed if it still owns them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
from typing import Any, cast

from redis.exceptions import RedisError

from namesrv_redis.metrics import (
    CONNECTIONS,
    OTHER,
    REQUEST_LATENCY,
    REQUESTS,
    RESPONSES,
    request_code_label,
    response_code_label,
)
from namesrv_redis.remoting.codec import FrameDecoder, FrameError, RemotingCommand, encode_response
from namesrv_redis.remoting.codes import RequestCode
from namesrv_redis.remoting.errors import RemotingError, error_response_code
from namesrv_redis.remoting.processor import V4_9_4, Connection, NamesrvProcessor, Response

log = logging.getLogger(__name__)

_GET_ROUTE = int(RequestCode.GET_ROUTEINFO_BY_TOPIC)
_conn_ids = itertools.count(1)


class _Metrics:
    """Pre-resolved metric children per request code (labels() is too slow per request)."""

    def __init__(self) -> None:
        self._by_code: dict[int, tuple[Any, Any]] = {}
        self._by_response: dict[int, Any] = {}

    def request(self, code: int, seconds: float) -> None:
        pair = self._by_code.get(code)
        if pair is None:  # bounded: every unknown code shares the "other" children and entry
            label = request_code_label(code)
            key = code if label != OTHER else -1
            pair = self._by_code.get(key)
            if pair is None:
                pair = self._by_code[key] = (
                    REQUESTS.labels("remoting", label),
                    REQUEST_LATENCY.labels("remoting", label),
                )
        pair[0].inc()
        pair[1].observe(seconds)

    def response(self, code: int) -> None:
        child = self._by_response.get(code)
        if child is None:
            label = response_code_label(code)
            key = code if label != OTHER else -1
            child = self._by_response.get(key)
            if child is None:
                child = self._by_response[key] = RESPONSES.labels("remoting", label)
        child.inc()


class RemotingServer:
    """Owns the listening socket and the open connections of one pod process."""

    def __init__(
        self,
        processor: NamesrvProcessor,
        *,
        host: str = "0.0.0.0",
        port: int = 9876,
        pod_id: str | None = None,
        max_frame_bytes: int = 16 * 1024 * 1024,
        max_connections: int = 10_000,
        idle_timeout_s: float = 120.0,
        reuse_port: bool = False,
    ) -> None:
        self.processor = processor
        self.host = host
        self.port = port
        self.pod_id = pod_id or f"{socket.gethostname()}-{os.getpid()}"
        self.max_frame_bytes = max_frame_bytes
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.reuse_port = reuse_port
        self.connections: set[RemotingProtocol] = set()
        self.metrics = _Metrics()
        self._server: asyncio.base_events.Server | None = None
        self._idle_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.stopping = False

    @property
    def bound_port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: RemotingProtocol(self),
            self.host,
            self.port,
            reuse_address=True,
            reuse_port=self.reuse_port or None,
            backlog=1024,
        )
        self._idle_task = asyncio.create_task(self._close_idle_loop(), name="remoting-idle")
        log.info("remoting server listening on %s:%d", self.host, self.bound_port)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting, let in-flight requests finish (up to ``grace_s``), close the rest.

        Brokers connected to a pod that shuts down stay registered: the route tables are
        shared, and the brokers re-register through another pod within their next period.
        """
        self.stopping = True
        if self._server is not None:
            self._server.close()
        if self._idle_task is not None:
            self._idle_task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace_s)
        for conn in list(self.connections):
            conn.close()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_idle_loop(self) -> None:
        interval = max(0.5, min(10.0, self.idle_timeout_s / 4))
        while True:
            await asyncio.sleep(interval)
            cutoff = time.monotonic() - self.idle_timeout_s
            for conn in list(self.connections):
                if conn.last_active < cutoff:
                    log.info("closing idle connection %s", conn.conn.remote_addr)
                    conn.close()


class RemotingProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: RemotingServer) -> None:
        self.server = server
        self.decoder = FrameDecoder(max_frame_length=server.max_frame_bytes)
        self.transport: asyncio.Transport | None = None
        self.conn = Connection(conn_id="", remote_addr="")
        self.last_active = time.monotonic()
        self.closed = False

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.conn = Connection(
            conn_id=f"{self.server.pod_id}/{next(_conn_ids)}", remote_addr=remote
        )
        if len(self.server.connections) >= self.server.max_connections:
            log.warning(
                "refusing connection from %s: %d connections open",
                remote,
                len(self.server.connections),
            )
            self.transport.abort()
            self.closed = True
            return
        self.server.connections.add(self)
        CONNECTIONS.inc()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.server.connections:
            self.server.connections.discard(self)
            CONNECTIONS.dec()
        self.closed = True
        if self.conn.brokers and not self.server.stopping:
            self.server.spawn(self._remove_brokers())

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        try:
            commands = self.decoder.feed(data)
        except FrameError as e:
            log.warning("closing connection %s: bad frame: %s", self.conn.remote_addr, e)
            self.close()
            return
        out: list[bytes] = []
        for cmd in commands:
            if cmd.is_response:
                continue  # the name server sends no requests that expect answers
            if cmd.code == _GET_ROUTE and self._answer_route_from_cache(cmd, out):
                continue
            self.server.spawn(self._handle(cmd))
        if out:  # pipelined cached answers leave in one write
            self._write(out[0] if len(out) == 1 else b"".join(out))

    # ------------------------------------------------------------ requests

    def _answer_route_from_cache(self, cmd: RemotingCommand, out: list[bytes]) -> bool:
        """The hot path: a cached route answer is written without creating a task."""
        ext = cmd.ext_fields
        if not ext or "__ZONE_MODE" in ext:
            return False
        topic = ext.get("topic")
        if topic is None:
            return False
        standard = cmd.version >= V4_9_4 or ext.get("acceptStandardJsonOnly", "").lower() == "true"
        started = time.perf_counter()
        hit, body = self.server.processor.routes.cached_body(topic, standard=standard)
        if not hit or body is None or self.server.processor._not_ready_for_routes():
            return False
        if not cmd.is_oneway:
            out.append(encode_response(0, cmd.opaque, cmd.serialize_type, body=body))
        self.server.metrics.request(cmd.code, time.perf_counter() - started)
        self.server.metrics.response(0)
        return True

    async def _handle(self, cmd: RemotingCommand) -> None:
        started = time.perf_counter()
        try:
            response = await self.server.processor.process(cmd, self.conn)
        except Exception as e:  # every failure becomes an answer, never a crash
            code, remark = error_response_code(e)
            log.warning(
                "request code=%d from %s failed: %s",
                cmd.code,
                self.conn.remote_addr,
                remark,
                exc_info=not isinstance(e, (RemotingError, RedisError)),
            )
            response = Response(code, remark)
        self.server.metrics.request(cmd.code, time.perf_counter() - started)
        self.server.metrics.response(response.code)
        if cmd.is_oneway or self.closed:
            return
        self._write(
            encode_response(
                response.code,
                cmd.opaque,
                cmd.serialize_type,
                remark=response.remark,
                ext_fields=response.ext_fields,
                body=response.body,
            )
        )

    async def _remove_brokers(self) -> None:
        try:
            await self.server.processor.connection_closed(self.conn)
        except Exception:
            log.exception("removing brokers of closed connection %s failed", self.conn.remote_addr)

    # ------------------------------------------------------------ transport

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
