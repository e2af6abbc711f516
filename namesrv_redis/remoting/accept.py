"""The remoting port's accept loop when TLS is on: TLS and plain frames on one port.

RocketMQ's NettyRemotingServer (its TlsModeHandler) looks at the first byte of every new
connection: 0x16 is a TLS handshake record (ClientHello), anything else is the first byte of a
plain frame's length (a frame of 0x16000000 bytes or more is far past the 16 MiB limit, so the
two never collide). Here the same choice is made before asyncio sees the connection: accept,
wait until the socket is readable, peek one byte (``MSG_PEEK``, so nothing is consumed), then
hand the socket to ``loop.connect_accepted_socket`` with or without the SSL context.

- ``permissive``: TLS clients get TLS, plain clients stay plain.
- ``enforcing``: plain clients are closed (as Java does, with a log line).
A connection that sends nothing within the handshake timeout is closed; accepted sockets
still waiting for their first byte count against the connection limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from namesrv_redis.settings.tls_modes import TlsMode
from namesrv_redis.telemetry.metrics import TLS_CONNECTIONS

log = logging.getLogger(__name__)

TLS_HANDSHAKE_RECORD = 0x16


def bind_listener(host: str, port: int, *, reuse_port: bool, backlog: int = 1024) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


class SniffingAcceptor:
    """Accepts on ``sock`` and starts ``protocol_factory`` over TLS or plain TCP per socket."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        *,
        mode: TlsMode,
        context: Callable[[], ssl.SSLContext],
        handshake_timeout_s: float,
        capacity_left: Callable[[], int],
        idle_timeout_s: Callable[[], float] | None = None,
    ) -> None:
        self.sock = sock
        self.protocol_factory = protocol_factory
        self.mode = mode
        self.context = context
        self.handshake_timeout_s = handshake_timeout_s
        self.capacity_left = capacity_left
        self.idle_timeout_s = idle_timeout_s
        """The remoting idle timeout in force: a connection silent from its start is closed
        after the shorter of it and the handshake timeout."""
        self.pending: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._accept_loop(), name="accept")

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, addr = await loop.sock_accept(self.sock)
            except asyncio.CancelledError:
                raise
            except OSError as e:  # EMFILE and friends: back off, keep accepting
                log.warning("accept failed: %s", e)
                await asyncio.sleep(0.1)
                continue
            if self.capacity_left() - len(self.pending) <= 0:
                log.warning("refusing connection from %s: connection limit reached", addr)
                conn.close()
                continue
            task = loop.create_task(self._start_connection(conn, addr))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

    async def _first_byte(self, conn: socket.socket) -> bytes:
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()
        fd = conn.fileno()

        def on_readable() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(fd, on_readable)
        try:
            started = loop.time()
            while not readable.done():  # the idle timeout may change meanwhile (at run time)
                limit = self.handshake_timeout_s
                if self.idle_timeout_s is not None:
                    limit = min(limit, self.idle_timeout_s())
                left = started + limit - loop.time()
                if left <= 0:
                    raise TimeoutError
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(readable), min(left, 0.5))
        finally:
            loop.remove_reader(fd)
        return conn.recv(1, socket.MSG_PEEK)

    async def _start_connection(self, conn: socket.socket, addr: Any) -> None:
        conn.setblocking(False)
        try:
            first = await self._first_byte(conn)
        except (TimeoutError, OSError) as e:
            log.info("closing connection from %s before its first byte: %r", addr, e)
            conn.close()
            return
        if not first:
            conn.close()
            return
        is_tls = first[0] == TLS_HANDSHAKE_RECORD
        if not is_tls and self.mode is TlsMode.ENFORCING:
            log.warning(
                "closing plain connection from %s: this server runs in TLS enforcing mode", addr
            )
            TLS_CONNECTIONS.labels("refused_plain").inc()
            conn.close()
            return
        loop = asyncio.get_running_loop()
        try:
            if is_tls:
                await loop.connect_accepted_socket(
                    self.protocol_factory,
                    conn,
                    ssl=self.context(),
                    ssl_handshake_timeout=self.handshake_timeout_s,
                )
            else:
                await loop.connect_accepted_socket(self.protocol_factory, conn)
        except (OSError, ssl.SSLError, TimeoutError) as e:
            log.info("TLS handshake with %s failed: %s", addr, e)
            TLS_CONNECTIONS.labels("handshake_failed").inc()
            with contextlib.suppress(OSError):
                conn.close()
            return
        TLS_CONNECTIONS.labels("tls" if is_tls else "plain").inc()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self.pending):
            task.cancel()
        self.sock.close()
