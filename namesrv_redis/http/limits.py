"""Size limits of the HTTP tier: request heads and bodies.

uvicorn's httptools protocol buffers a request head without bound until it is complete, so a
client sending headers that never end holds memory at will. :class:`BoundedHttpToolsProtocol`
answers ``431`` and closes the connection once a head passes :data:`MAX_HEAD_BYTES` (the h11
protocol gets the same bound through ``h11_max_incomplete_event_size``). :class:`BodyLimit`
answers ``413`` to a body larger than :data:`MAX_BODY_BYTES`, declared or streamed.
"""

from __future__ import annotations

from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
"""Request line plus headers of one request."""
MAX_BODY_BYTES = 1024 * 1024
"""Request body (admin calls carry a few bytes: a KV value, a permission)."""


def _error_response(status: int, reason: str, error: str, detail: str) -> bytes:
    body = orjson.dumps({"error": error, "detail": detail})
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the size of a request head."""

    max_head_bytes = MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_pending = True
        self._head_bytes = 0
        self._heads_done = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_pending = True

    def on_headers_complete(self) -> None:
        self.head_complete()
        super().on_headers_complete()

    def head_complete(self) -> None:
        """Count a complete request head (a subclass answering a request itself calls this
        instead of ``on_headers_complete``)."""
        self._head_pending = False
        self._head_bytes = 0
        self._heads_done += 1

    def data_received(self, data: bytes) -> None:
        heads_done = self._heads_done
        super().data_received(data)
        # Counted after parsing, only while one head stays incomplete: a chunk that completes
        # a head (and carries body) is fine. A chunk that completes one head and starts the
        # next is not counted, so a head may pass the limit by at most one read.
        if not self._head_pending or self._heads_done != heads_done:
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.max_head_bytes:
            self.logger.warning("request head over %d bytes: closing", self.max_head_bytes)
            self._head_pending = False
            if not self.transport.is_closing():
                self.transport.write(
                    _error_response(
                        431,
                        "Request Header Fields Too Large",
                        "head_too_large",
                        f"request line and headers exceed {self.max_head_bytes} bytes",
                    )
                )
                self.transport.close()


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes`` (Content-Length or
    streamed), before the application reads more of it."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers") or ():
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    await self._too_large(send)
                    return
        seen = 0
        started = refused = False

        async def bounded_receive() -> Any:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    if not started:
                        await self._too_large(send)
                    return {"type": "http.disconnect"}  # the application stops reading
            return message

        async def guarded_send(message: Any) -> None:
            nonlocal started
            if refused:
                return  # the 413 answer went out already
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, bounded_receive, guarded_send)

    async def _too_large(self, send: Any) -> None:
        body = orjson.dumps(
            {"error": "body_too_large", "detail": f"request body exceeds {self.max_bytes} bytes"}
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
