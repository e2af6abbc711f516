"""The HTTP tier's limits and documentation (issue 12, point 6): request heads and bodies are
bounded, topics containing '/' are routable, and the OpenAPI document describes the bodies
and content types the tier really answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn

from namesrv_redis.http.limits import (
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    BodyLimit,
    BoundedHttpToolsProtocol,
)
from tests.conftest import free_port
from tests.test_http import ADMIN, Tier, register, sim_broker, tier  # noqa: F401


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[int]:
    """The app as the pod serves it: body limit, bounded httptools protocol."""
    port = free_port()
    config = uvicorn.Config(
        BodyLimit(app),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        http=BoundedHttpToolsProtocol,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        yield port
    finally:
        server.should_exit = True
        await serving


async def test_endless_request_head_gets_431_and_is_closed(tier: Tier) -> None:  # noqa: F811
    async with served(tier.app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # a header that never ends, just past the limit (then the client waits for the answer)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * MAX_HEAD_BYTES)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)  # read to EOF: the server closed
        writer.close()
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert b'"error":"head_too_large"' in answer


async def test_normal_requests_with_bodies_pass(tier: Tier) -> None:  # noqa: F811
    async with (
        served(tier.app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as h,
    ):
        assert (await h.get("/healthz", headers={"X-Pad": "p" * 1000})).status_code == 200
        value = "v" * (MAX_HEAD_BYTES * 2)  # a body larger than the head limit is fine
        r = await h.put("/v1/kv/ns/k", json={"value": value}, headers=ADMIN)
        assert r.status_code < 300, r.text
        assert await tier.store.get_kv("ns", "k") == value


async def test_oversized_bodies_get_413(tier: Tier) -> None:  # noqa: F811
    async with (
        served(tier.app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as h,
    ):
        big = b"x" * (MAX_BODY_BYTES + 1)
        r = await h.put("/v1/kv/ns/k", content=big, headers=ADMIN)
        assert r.status_code == 413 and r.json()["error"] == "body_too_large"

        async def chunks() -> AsyncIterator[bytes]:  # streamed: no Content-Length
            for _ in range(MAX_BODY_BYTES // 65536 + 2):
                yield b"y" * 65536

        r = await h.put("/v1/kv/ns/k", content=chunks(), headers=ADMIN)
        assert r.status_code == 413
    assert await tier.store.get_kv("ns", "k") is None


async def test_topics_with_slashes_are_readable(tier: Tier) -> None:  # noqa: F811
    b = sim_broker(topics=("a/b", "%2F", "T1"))
    c = await register(tier, b)
    async with tier.http() as h:
        for path in ("/v1/routes/a/b", "/v1/routes/a%2Fb"):
            r = await h.get(path)
            assert r.status_code == 200, (path, r.text)
            assert r.json()["queueDatas"][0]["brokerName"] == "broker-a"
    await c.close()


async def test_openapi_describes_real_error_bodies_and_sse(tier: Tier) -> None:  # noqa: F811
    doc = tier.app.openapi()
    error_ref = {"$ref": "#/components/schemas/ErrorModel"}
    route = doc["paths"]["/v1/routes/{topic}"]["get"]["responses"]
    for status in ("400", "422"):
        assert route[status]["content"]["application/json"]["schema"] == error_ref
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    events = doc["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]
    assert list(events) == ["text/event-stream"]
    async with tier.http() as h:
        r422 = await h.get("/v1/routes/T1", params={"index": "-1"})
        r400 = await h.get("/v1/routes/T1", params={"index": "1", "wait": "soon"})
    error_fields = set(doc["components"]["schemas"]["ErrorModel"]["properties"])
    for r, status in ((r422, 422), (r400, 400)):
        assert r.status_code == status
        assert set(r.json()) <= error_fields and "error" in r.json()
