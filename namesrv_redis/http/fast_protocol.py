"""The HTTP tier's hot path at the protocol: ``GET /v1/routes/{topic}`` answered from the
pod's route cache while the request is parsed, with no ASGI cycle.

:class:`~namesrv_redis.http.fast_routes.RouteFastPath` already skips FastAPI for a cache hit,
but uvicorn still builds a request-response cycle, an asyncio task and two ``send`` awaits
around every answer: most of its CPU (48 µs an answer with them, 14 µs without, in the same
conditions; docs/benchmarks.md). :func:`route_protocol` builds a subclass of the tier's
httptools protocol that answers a cache hit from the parser's ``on_headers_complete``
callback: the complete response (uvicorn's default ``date`` and ``server`` headers, then the
same ``content-length``, ``content-type`` and ``x-namesrv-index`` as ``RouteFastPath``) is
collected and written once per read, so sixteen pipelined hits cost one ``send``.

Everything else goes through uvicorn unchanged: a miss, a query string, another path or
method (``HEAD`` included), a request with a body or ``Expect``, an upgrade, a request behind
one whose cycle is still running (pipelined answers stay in order), a connection whose writes
are paused (flow control: the ASGI path then waits for the peer to read).
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from namesrv_redis.domain.route_reader import RouteReader
from namesrv_redis.http.fast_routes import LABEL, PREFIX
from namesrv_redis.http.limits import BoundedHttpToolsProtocol
from namesrv_redis.store.events import RouteEvents
from namesrv_redis.telemetry.metrics import REQUEST_LATENCY, REQUESTS

_PREFIX_RAW = PREFIX.encode()
_STATUS_OK = b"HTTP/1.1 200 OK\r\n"
_AFTER_LENGTH = b"\r\ncontent-type: application/json\r\nx-namesrv-index: "
_CLOSE = b"\r\nconnection: close\r\n\r\n"
_END = b"\r\n\r\n"
_BODY_HEADERS = (b"content-length", b"transfer-encoding")
FLUSH_BYTES = 64 * 1024
"""Collected answers are written out once they pass this size, so that the transport's flow
control (``pause_writing``) sees them before more requests of the same read are answered."""


class FastRouteProtocol(BoundedHttpToolsProtocol):
    """The bounded httptools protocol, answering cached routes itself. Use a subclass from
    :func:`route_protocol`, which supplies the route cache and the event version."""

    routes: RouteReader
    events: RouteEvents

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._answered = False  # the current request was taken by the fast path
        self._fast_in_read = False  # some request of the current read was
        self._count = REQUESTS.labels("http", LABEL)
        self._latency = REQUEST_LATENCY.labels("http", LABEL)

    # ------------------------------------------------------------------ parser callbacks

    def on_headers_complete(self) -> None:
        self._answered = self._answer_cached()
        if self._answered:
            self.head_complete()
            return
        self._flush()  # anything uvicorn writes comes after the answers before it
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._answered:  # the body of a request dropped after "Connection: close"
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._answered:
            self._answered = False
            return
        super().on_message_complete()

    # ------------------------------------------------------------------ transport side

    def data_received(self, data: bytes) -> None:
        self._fast_in_read = False
        super().data_received(data)
        self._flush()
        if (
            self._fast_in_read
            and self.timeout_keep_alive_task is None
            and not self.pipeline
            and (self.cycle is None or self.cycle.response_complete)
            and not self.transport.is_closing()
        ):
            # What uvicorn's on_response_complete does after the last answer of a read.
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def send_400_response(self, msg: str) -> None:
        self._flush()
        super().send_400_response(msg)

    def _flush(self) -> None:
        if self._out:
            out = self._out
            self._out = []
            self._out_bytes = 0
            self.transport.write(b"".join(out))

    # ------------------------------------------------------------------ the fast path

    def _answer_cached(self) -> bool:
        """Answer the request whose head just completed if it is a cached route read; False
        leaves it to uvicorn."""
        if self.transport.is_closing():
            return True  # behind a "Connection: close" answer of this read: dropped (uvicorn too)
        url = self.url
        if not url.startswith(_PREFIX_RAW) or b"?" in url or b"#" in url:
            return False
        parser = self.parser
        if parser.get_method() != b"GET" or parser.should_upgrade() or self.expect_100_continue:
            return False
        cycle = self.cycle
        if (cycle is not None and not cycle.response_complete) or self.pipeline:
            return False  # an earlier answer is still being made: keep the order
        if self.flow.write_paused or self.limit_concurrency is not None:
            return False
        for name, _ in self.headers:
            if name in _BODY_HEADERS:
                return False
        started = time.perf_counter()
        try:
            path = url.decode("ascii")
        except UnicodeDecodeError:
            return False
        if "%" in path:
            path = urllib.parse.unquote(path)
        path = self.root_path + path
        if not path.startswith(PREFIX) or len(path) == len(PREFIX):
            return False
        hit, body, read_at = self.routes.cached_answer(path[len(PREFIX) :], standard=True)
        if not hit or body is None:
            return False
        http_version = parser.get_http_version()
        keep_alive = http_version != "1.0" and parser.should_keep_alive()
        self._out.extend(
            (
                _STATUS_OK,
                _default_headers(self.server_state.default_headers),
                b"content-length: %d" % len(body),
                _AFTER_LENGTH,
                b"%d" % max(self.events.latest_version, read_at),  # as RouteReader.route_answer
                _END if keep_alive else _CLOSE,
                body,
            )
        )
        self._out_bytes += len(body) + 200
        self._fast_in_read = True
        self.server_state.total_requests += 1
        if self.access_log:
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                f"{self.client[0]}:{self.client[1]}" if self.client else "",
                "GET",
                urllib.parse.quote(path),
                http_version,
                200,
            )
        if not keep_alive:
            self._flush()
            self.transport.close()
        elif self._out_bytes >= FLUSH_BYTES:
            self._flush()
        self._count.inc()
        self._latency.observe(time.perf_counter() - started)
        return True


_headers_of: tuple[list[tuple[bytes, bytes]], bytes] = ([], b"")


def _default_headers(headers: list[tuple[bytes, bytes]]) -> bytes:
    """uvicorn's default headers (``date``, refreshed every second, and ``server``) as bytes;
    the server replaces the list when the date changes, so the list's identity is the key."""
    global _headers_of
    cached, encoded = _headers_of
    if headers is not cached:
        encoded = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        _headers_of = (headers, encoded)
    return encoded


def route_protocol(routes: RouteReader, events: RouteEvents) -> type[HttpToolsProtocol]:
    """The protocol class to give ``uvicorn.Config(http=...)`` for a pod's route cache."""
    return type("PodFastRouteProtocol", (FastRouteProtocol,), {"routes": routes, "events": events})
