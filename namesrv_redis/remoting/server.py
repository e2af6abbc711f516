"""The RocketMQ remoting TCP server: a thin ``asyncio.Protocol`` over the pure codec.

Per connection: bytes go into a :class:`FrameDecoder`; each decoded request is dispatched to
the :class:`NamesrvProcessor`; the answer is encoded with the request's opaque and serialize
type. Route queries answered from the pod cache are written inline, without a task. A
malformed frame is logged and the connection closed; a failing request gets an error
response; nothing raises out of ``data_received``. Idle connections are closed after
``serverChannelMaxIdleTimeSeconds``; past ``max_connections`` new connections are refused.
When a connection closes, the brokers registered over it are removed if it still owns them.

Flow control (docs/protocol.md, "Limits"; the limits are :class:`FlowLimits`): a connection
is no longer read from while its unsent answers exceed the transport's high-water mark
(``pause_writing``), while it has ``connection_max_pending`` requests unanswered, or while its
next big frame waits for the pod-wide :class:`FrameBudget`; what it sent meanwhile waits in
the kernel, so a client that never reads costs about one buffer. Requests that are not cached
route answers pass :class:`Admission` (SYSTEM_BUSY when the pod is overloaded), identical
list queries in flight share one computation (:class:`SingleFlight`), and big registrations
run on the :class:`Offloader`'s thread when the pod has one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, cast

from redis.exceptions import RedisError

from namesrv_redis.domain.route_reader import RouteReader
from namesrv_redis.remoting.accept import SniffingAcceptor, bind_listener
from namesrv_redis.remoting.admission import Admission, Lane
from namesrv_redis.remoting.codec import (
    FLAG_ONEWAY,
    FLAG_RESPONSE,
    JSON,
    FrameDecoder,
    FrameError,
    RemotingCommand,
    encode_response,
    success_head,
)
from namesrv_redis.remoting.frame_budget import FrameBudget
from namesrv_redis.remoting.handler_types import Connection, Response
from namesrv_redis.remoting.limits import BUSY_REMARK, FlowLimits
from namesrv_redis.remoting.offload import Offloader
from namesrv_redis.remoting.processor import V4_9_4, NamesrvProcessor
from namesrv_redis.remoting.single_flight import SingleFlight
from namesrv_redis.remoting.tls import ServerTls
from namesrv_redis.rocketmq.codes import RequestCode, ResponseCode
from namesrv_redis.rocketmq.errors import RemotingError, error_response_code
from namesrv_redis.store.event_loop import running_loop
from namesrv_redis.telemetry.metrics import (
    CONNECTIONS,
    OTHER,
    REQUEST_LATENCY,
    REQUESTS,
    RESPONSES,
    request_code_label,
    response_code_label,
)

log = logging.getLogger(__name__)

_GET_ROUTE = int(RequestCode.GET_ROUTEINFO_BY_TOPIC)
_BUSY = int(ResponseCode.SYSTEM_BUSY)
_FLUSH_BYTES = 64 * 1024
"""Inline answers are written in batches of about this much, so that a pipelined burst
stops as soon as the transport's high-water mark is passed."""
BIG_REQUEST_BODY = 64 * 1024
"""A request body this large (a big registration; a sixteenth of it compressed) is a burst
of buffers: once it is answered, the server calls ``after_big_request`` (the pod's memory
trimmer, :meth:`~namesrv_redis.process.memtrim.MemoryTrimmer.burst_ended`)."""
_conn_ids = itertools.count(1)


class _Metrics:
    """Pre-resolved metric children per request code (labels() is too slow per request)."""

    def __init__(self) -> None:
        self._by_code: dict[int, tuple[Any, Any]] = {}
        self._by_response: dict[int, Any] = {}

    def _request_children(self, code: int) -> tuple[Any, Any]:
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
        return pair

    def _response_child(self, code: int) -> Any:
        child = self._by_response.get(code)
        if child is None:
            label = response_code_label(code)
            key = code if label != OTHER else -1
            child = self._by_response.get(key)
            if child is None:
                child = self._by_response[key] = RESPONSES.labels("remoting", label)
        return child

    def request(self, code: int, seconds: float) -> None:
        counter, latency = self._request_children(code)
        counter.inc()
        latency.observe(seconds)

    def response(self, code: int) -> None:
        self._response_child(code).inc()

    def cached_routes(self, n: int, seconds: float) -> None:
        """``n`` route queries answered from the cache in ``seconds`` altogether: what ``n``
        calls of :meth:`request` and ``response(0)`` record, a step per metric."""
        counter, latency = self._request_children(_GET_ROUTE)
        counter.inc(n)
        observe_many(latency, n, seconds)
        self._response_child(0).inc(n)


def observe_many(histogram: Any, n: int, seconds: float) -> None:
    """Record ``n`` observations of a histogram child that took ``seconds`` altogether.

    When the total is within the first bucket, each of them is too: the count of that bucket
    grows by ``n`` and the sum by ``seconds`` in one step each (prometheus_client has no
    public call for that; its child keeps ``_sum`` and ``_buckets``, checked here). Otherwise
    each is observed as an equal share of the total."""
    buckets = getattr(histogram, "_buckets", None)
    bounds = getattr(histogram, "_upper_bounds", None)
    total = getattr(histogram, "_sum", None)
    if buckets and bounds and total is not None and seconds <= bounds[0]:
        histogram._raise_if_not_observable()
        total.inc(seconds)
        buckets[0].inc(n)
        return
    for _ in range(n):
        histogram.observe(seconds / n)


def _cached_route(cmd: RemotingCommand, routes: RouteReader) -> bytes | None:
    """The hot path: the cached route body for a GET_ROUTEINFO_BY_TOPIC, or None when the
    processor must answer it (zone mode, no topic, not cached, no route)."""
    ext = cmd.ext_fields
    if not ext or "__ZONE_MODE" in ext:
        return None
    topic = ext.get("topic")
    if topic is None:
        return None
    standard = cmd.version >= V4_9_4 or ext.get("acceptStandardJsonOnly", "").lower() == "true"
    return routes.peek(topic, standard)


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
        tls: ServerTls | None = None,
        limits: FlowLimits | None = None,
        offload: Offloader | None = None,
        after_big_request: Callable[[], None] | None = None,
    ) -> None:
        self.processor = processor
        self.after_big_request = after_big_request
        self.tls = tls if tls is not None and tls.opts.enabled else None
        """With TLS on, one port serves TLS and plain clients (see :mod:`.accept`)."""
        self._acceptor: SniffingAcceptor | None = None
        self.host = host
        self.port = port
        self.pod_id = pod_id or f"{socket.gethostname()}-{os.getpid()}"
        self.max_frame_bytes = max_frame_bytes
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.reuse_port = reuse_port
        self.limits = limits = limits or FlowLimits()
        self.admission = Admission(limits)
        self.frame_budget = FrameBudget(max(limits.partial_frame_budget, max_frame_bytes))
        self.offload = offload
        self.single_flight = SingleFlight()
        self.connections: set[RemotingProtocol] = set()
        self.metrics = _Metrics()
        self._server: asyncio.base_events.Server | None = None
        self._idle_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.stopping = False

    @property
    def bound_port(self) -> int:
        if self._acceptor is not None:
            return self._acceptor.port
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.tls is not None:
            tls = self.tls
            tls.context  # noqa: B018 - loads it (and generates a test certificate) if needed
            self._acceptor = SniffingAcceptor(
                bind_listener(self.host, self.port, reuse_port=self.reuse_port),
                lambda: RemotingProtocol(self),
                mode=tls.opts.mode,
                context=lambda: tls.context,
                handshake_timeout_s=tls.opts.handshake_timeout_s,
                capacity_left=lambda: self.max_connections - len(self.connections),
                idle_timeout_s=lambda: float(self.idle_timeout_s),
            )
            self._acceptor.start()
            tls.start_watch()
            self._idle_task = asyncio.create_task(self._close_idle_loop(), name="remoting-idle")
            log.info(
                "remoting server listening on %s:%d (TLS %s)",
                self.host,
                self.bound_port,
                tls.opts.mode.value,
            )
            return
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
        if self._acceptor is not None:
            await self._acceptor.close()
        if self.tls is not None:
            self.tls.close()
        if self._idle_task is not None:
            self._idle_task.cancel()
        deadline = time.monotonic() + grace_s
        while self._tasks:  # queued requests start as running ones finish
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await asyncio.wait(list(self._tasks), timeout=left)
        for conn in list(self.connections):
            conn.close()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    def spawn(self, coro: Any) -> None:
        task = running_loop().create_task(coro)
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
        self.limits = server.limits
        self.decoder = FrameDecoder(
            max_frame_length=server.max_frame_bytes, admit=self._admit_frame
        )
        self.transport: asyncio.Transport | None = None
        self.conn = Connection(conn_id="", remote_addr="")
        self.last_active = time.monotonic()
        self.closed = False
        self.pending = 0
        """Requests admitted (queued or running) and not yet answered."""
        self.backlog: deque[RemotingCommand] = deque()
        """Decoded requests not yet admitted: reading is paused while there are any."""
        self.paused_by: set[str] = set()
        """Why reading is paused: "write" (answers unsent), "backlog", "frame" (budget)."""
        self._write_paused = False
        self._frame_timer: asyncio.TimerHandle | None = None

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
        self.transport.set_write_buffer_limits(
            high=self.limits.write_buffer_high, low=self.limits.write_buffer_low
        )
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.server.connections:
            self.server.connections.discard(self)
            CONNECTIONS.dec()
        self.closed = True
        self._release_held()
        if (self.conn.brokers or self.conn.controller_members) and not self.server.stopping:
            self.server.spawn(self._remove_brokers())

    def pause_writing(self) -> None:
        self._write_paused = True
        self._pause("write")

    def resume_writing(self) -> None:
        self._write_paused = False
        self._resume("write")
        self._drain_backlog()

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        try:
            commands = self.decoder.feed(data)
        except FrameError as e:
            log.warning("closing connection %s: bad frame: %s", self.conn.remote_addr, e)
            self.close()
            return
        if self._frame_timer is not None and not self.decoder.reserved:
            self._frame_timer.cancel()
            self._frame_timer = None
        if commands:
            if self.backlog:
                self.backlog.extend(commands)
                self._drain_backlog()
            else:
                self._dispatch(commands)

    # ------------------------------------------------------------ flow control

    def _pause(self, reason: str) -> None:
        if not self.paused_by and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self.paused_by.add(reason)

    def _resume(self, reason: str) -> None:
        if reason not in self.paused_by:
            return
        self.paused_by.discard(reason)
        if not self.paused_by and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _dispatch(self, commands: Iterable[RemotingCommand]) -> None:
        """Answer or admit requests in order until the connection may take no more; the rest
        wait in the backlog (and reading pauses) until answers drain. Route queries the pod
        cache answers are written inline, every one of a read in one write (a frame's head
        and its cached body are joined there, not copied into a frame first), and counted in
        the metrics once per read."""
        out: list[bytes] = []
        size = 0
        answered = 0
        started = 0.0
        routes: RouteReader | None = None
        checked = False  # whether the cache may answer this read's route queries (routes)
        max_pending = self.limits.connection_max_pending
        it = iter(commands)
        for cmd in it:
            if self._write_paused or self.pending >= max_pending:
                self.backlog.append(cmd)
                self.backlog.extend(it)
                break
            if cmd.flag & FLAG_RESPONSE:  # the name server sends no requests to answer
                self._release(cmd)
                continue
            if cmd.code == _GET_ROUTE:
                if not checked:
                    checked, started = True, time.perf_counter()
                    routes = self._route_cache()
                body = _cached_route(cmd, routes) if routes is not None else None
                if body is not None:
                    answered += 1
                    if cmd.reserved:
                        self._release(cmd)
                    if not cmd.flag & FLAG_ONEWAY:
                        if cmd.serialize_type == JSON:
                            out += (success_head(cmd.opaque, len(body)), body)
                        else:
                            out.append(
                                encode_response(0, cmd.opaque, cmd.serialize_type, body=body)
                            )
                        size += len(body)
                        if size >= _FLUSH_BYTES:  # may pause writing: checked above
                            self._write(b"".join(out))
                            out, size = [], 0
                    continue
            self._admit(cmd)
        if answered:
            self.server.metrics.cached_routes(answered, time.perf_counter() - started)
            assert routes is not None
            routes.count_hits(answered)
        if out:  # pipelined cached answers leave in one write
            self._write(b"".join(out))
        if self.backlog:
            self._pause("backlog")

    def _drain_backlog(self) -> None:
        if self.closed:
            return
        if self.backlog and not self._write_paused:
            waiting, self.backlog = self.backlog, deque()
            self._dispatch(waiting)
        if not self.backlog:
            self._resume("backlog")

    def _admit(self, cmd: RemotingCommand) -> None:
        self.pending += 1
        if not self.server.admission.lane_for(cmd.code).offer(self, cmd):
            self.pending -= 1
            self._answer_busy(cmd)

    def start_admitted(self, cmd: RemotingCommand, lane: Lane) -> bool:
        """Called by the lane when ``cmd`` may run. Declined while the connection's answers
        do not drain: the request goes back to the front of its backlog (to be admitted again
        when they do), so that a client that does not read holds no more answers in the
        making than were already started."""
        if self.closed:  # nobody to answer: skip the work
            self._finished(cmd)
            return False
        if self._write_paused:
            self.pending -= 1
            self.backlog.appendleft(cmd)
            self._pause("backlog")
            return False
        self.server.spawn(self._run(cmd, lane))
        return True

    def refuse_admitted(self, cmd: RemotingCommand, waited_s: float) -> None:
        """Called by the lane when ``cmd`` waited too long for its turn."""
        self.pending -= 1
        self._answer_busy(cmd)
        self._drain_backlog()

    def _answer_busy(self, cmd: RemotingCommand) -> None:
        self._release(cmd)
        self.server.metrics.response(_BUSY)
        if not cmd.is_oneway and not self.closed:
            self._write(encode_response(_BUSY, cmd.opaque, cmd.serialize_type, remark=BUSY_REMARK))

    def _finished(self, cmd: RemotingCommand) -> None:
        self.pending -= 1
        self._release(cmd)
        self._drain_backlog()

    def _release(self, cmd: RemotingCommand) -> None:
        if cmd.reserved:
            self.server.frame_budget.release(cmd.reserved)
            cmd.reserved = 0

    def _release_held(self) -> None:
        """A closed connection gives back the budget of what it will never process."""
        budget = self.server.frame_budget
        budget.cancel(self._frame_granted)
        budget.release(self.decoder.reserved)
        self.decoder.clear()
        for cmd in self.backlog:
            self._release(cmd)
        self.backlog.clear()
        if self._frame_timer is not None:
            self._frame_timer.cancel()
            self._frame_timer = None

    def _admit_frame(self, length: int) -> bool:
        """The decoder asks for ``length`` bytes of the pod-wide budget for a big frame."""
        budget = self.server.frame_budget
        if budget.try_reserve(length):
            self._start_frame_timer()
            return True
        log.info(
            "connection %s: a %d-byte frame waits for the partial-frame budget "
            "(%d of %d bytes in use); not reading from it meanwhile",
            self.conn.remote_addr,
            length,
            budget.used,
            budget.limit,
        )
        self._pause("frame")
        budget.wait(length, self._frame_granted)
        return False

    def _frame_granted(self, length: int) -> None:
        if self.closed:
            self.server.frame_budget.release(length)
            return
        self.decoder.granted(length)
        self._start_frame_timer()
        self._resume("frame")
        self.data_received(b"")

    def _start_frame_timer(self) -> None:
        if self._frame_timer is not None:
            self._frame_timer.cancel()
        self._frame_timer = asyncio.get_running_loop().call_later(
            self.limits.partial_frame_timeout_s, self._frame_too_slow
        )

    def _frame_too_slow(self) -> None:
        self._frame_timer = None
        if self.decoder.reserved and not self.closed:
            log.warning(
                "closing connection %s: a %d-byte frame was not complete %.0f s after it "
                "started (it held that much of the pod's partial-frame budget)",
                self.conn.remote_addr,
                self.decoder.reserved,
                self.limits.partial_frame_timeout_s,
            )
            self.close()

    # ------------------------------------------------------------ requests

    def _route_cache(self) -> RouteReader | None:
        """The route cache, when it may answer route queries without the processor: not
        while signed reads are required (the processor checks signatures) nor while the pod
        is not ready for routes (the processor answers that)."""
        processor = self.server.processor
        guard = processor.guard
        if guard is not None and guard.require_signed_reads:
            return None
        if processor._not_ready_for_routes():
            return None
        return processor.routes

    async def _run(self, cmd: RemotingCommand, lane: Lane) -> None:
        try:
            await self._handle(cmd)
        finally:
            lane.done()
            self._finished(cmd)

    async def _handle(self, cmd: RemotingCommand) -> None:
        started = time.perf_counter()
        offload = self.server.offload
        try:
            if offload is not None and offload.wants(cmd):
                response = await offload.process(cmd, self.conn)
            else:
                response = await self.server.single_flight.run(
                    cmd, lambda: self.server.processor.process(cmd, self.conn)
                )
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
        if not cmd.is_oneway and not self.closed:
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
        hook = self.server.after_big_request
        if hook is not None and cmd.body_at_least(BIG_REQUEST_BODY):
            hook()

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
