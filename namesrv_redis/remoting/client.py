"""A small asyncio RocketMQ remoting client: requests matched to answers by opaque, any
number in flight. Test brokers, the tests and ``namesrv-redis bench`` speak to name servers
with it (interoperability itself is judged with real RocketMQ clients)."""

from __future__ import annotations

import asyncio
import itertools
import ssl as _ssl
from typing import Any, cast

from namesrv_redis.remoting.codec import JSON, FrameDecoder, RemotingCommand, encode_request


class NotRemoting(ConnectionError):
    """The peer does not speak RocketMQ remoting (an HTTP port given for the remoting one)."""


def _not_remoting(data: bytes, error: Exception) -> NotRemoting:
    if data[:5] == b"HTTP/":
        return NotRemoting(
            "an HTTP server answered, not a RocketMQ name server: is this the HTTP port? "
            "Give the remoting port (9876 by default, --listen-port of serve)"
        )
    return NotRemoting(f"the answer is not RocketMQ remoting ({error})")


class RemotingClient(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder()
        self.pending: dict[int, asyncio.Future[RemotingCommand]] = {}
        self.requests: asyncio.Queue[RemotingCommand] = asyncio.Queue()
        """Requests the server sends us (none are expected from a name server)."""
        self.closed = asyncio.get_running_loop().create_future()
        self._opaques = itertools.count(1)

    @classmethod
    async def connect(
        cls, host: str, port: int, *, ssl: _ssl.SSLContext | None = None
    ) -> RemotingClient:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(
            cls, host, port, ssl=ssl, server_hostname=host if ssl is not None else None
        )
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            commands = self.decoder.feed(data)
        except ValueError as e:  # a FrameError or bad header: never raise out of here
            self._fail(_not_remoting(data, e))
            return
        for cmd in commands:
            if not cmd.is_response:
                self.requests.put_nowait(cmd)
                continue
            fut = self.pending.pop(cmd.opaque, None)
            if fut is not None and not fut.done():
                fut.set_result(cmd)

    def _fail(self, error: ConnectionError) -> None:
        """Fail every pending request with ``error`` and close the connection."""
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(error)
        self.pending.clear()
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection closed"))
        self.pending.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    def send_raw(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def request(
        self,
        code: int,
        ext_fields: dict[str, str] | None = None,
        body: bytes | None = None,
        *,
        timeout: float = 5.0,
        oneway: bool = False,
        **options: Any,
    ) -> RemotingCommand | None:
        """Send one request; await its answer (None for oneway requests)."""
        opaque = next(self._opaques)
        frame = encode_request(
            code,
            opaque,
            ext_fields,
            body,
            oneway=oneway,
            serialize_type=options.pop("serialize_type", JSON),
            **options,
        )
        if oneway:
            self.send_raw(frame)
            return None
        fut: asyncio.Future[RemotingCommand] = asyncio.get_running_loop().create_future()
        self.pending[opaque] = fut
        self.send_raw(frame)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.pending.pop(opaque, None)

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            await self.closed
