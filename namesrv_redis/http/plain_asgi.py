"""Answers written straight to an ASGI ``send``, for the layers in front of the FastAPI
application (cached routes, probes, the lazily loaded JSON API): the same status, headers and
JSON bytes Starlette would send, without Starlette."""

from __future__ import annotations

import json
from typing import Any


def json_bytes(content: dict[str, Any]) -> bytes:
    """JSON as Starlette's JSONResponse renders it (compact, UTF-8, no NaN)."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


async def send_response(
    send: Any,
    status: int,
    content_type: bytes,
    body: bytes,
    *headers: tuple[bytes, bytes],
) -> None:
    """One whole response: its length and type first, then ``headers``, then the body."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", content_type),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
