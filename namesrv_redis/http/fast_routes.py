"""The HTTP tier's hot path: ``GET /v1/routes/{topic}`` answered from the pod's route cache
as a plain ASGI application in front of FastAPI.

A cached answer is already encoded; FastAPI's routing, dependency solving and middleware
stack would cost about 100 µs of CPU around it. This layer answers a cache hit itself (the
same status, body and headers FastAPI would send) and passes everything else — a miss, an
unknown topic, a blocking query (``?index=``), any other path — to the application.
"""

from __future__ import annotations

import time
from typing import Any

from namesrv_redis.domain.route_reader import RouteReader
from namesrv_redis.http.plain_asgi import send_response
from namesrv_redis.store.events import RouteEvents
from namesrv_redis.telemetry.metrics import REQUEST_LATENCY, REQUESTS

PREFIX = "/v1/routes/"
LABEL = "GET /v1/routes/{topic}"
"""The same metric label as FastAPI's route template (see RequestMetrics)."""


class RouteFastPath:
    """ASGI: cached route answers directly, everything else through ``app``."""

    def __init__(self, app: Any, routes: RouteReader, events: RouteEvents) -> None:
        self.app = app
        self.routes = routes
        self.events = events
        self._count = REQUESTS.labels("http", LABEL)
        self._latency = REQUEST_LATENCY.labels("http", LABEL)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and not scope.get("query_string")
            and scope["path"].startswith(PREFIX)
        ):
            started = time.perf_counter()
            topic = scope["path"][len(PREFIX) :]
            if topic:
                hit, body, read_at = self.routes.cached_answer(topic, standard=True)
                if hit and body is not None:
                    index = str(max(self.events.latest_version, read_at)).encode()
                    await send_response(
                        send, 200, b"application/json", body, (b"x-namesrv-index", index)
                    )
                    self._count.inc()
                    self._latency.observe(time.perf_counter() - started)
                    return
        await self.app(scope, receive, send)
