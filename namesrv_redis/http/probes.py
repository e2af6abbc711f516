"""Health probes and the metrics scrape, answered without the JSON API's application.

Kubernetes asks every pod ``GET /healthz`` and ``GET /readyz`` every few seconds and
Prometheus scrapes ``GET /metrics``; none of them needs FastAPI, whose import and application
cost a pod about 10 MB of RSS (docs/benchmarks.md "Memory"). :class:`Probes` answers those
three in plain ASGI and passes every other request on — to the JSON API, which is loaded on
its first request (:mod:`.lazy_app`). The answers are built by the functions below, which the
application's own handlers for the same paths use too (:func:`~.app.create_app`), so both
send the same status, headers and bytes, and OpenAPI still describes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from namesrv_redis.http.plain_asgi import json_bytes, send_response
from namesrv_redis.store.route_store import RouteStore
from namesrv_redis.telemetry.estate_metrics import EstateCollector, exposition
from namesrv_redis.telemetry.metrics import (
    REQUEST_LATENCY,
    REQUESTS,
    http_route_label,
    set_table_sizes,
)

log = logging.getLogger(__name__)

HEALTHZ = "/healthz"
READYZ = "/readyz"
METRICS = "/metrics"


HEALTHY = {"status": "ok"}


async def readiness_answer(
    readiness: Callable[[], Awaitable[str | None]],
    notices: Callable[[], list[str]] | None,
) -> tuple[int, dict[str, Any]]:
    """``/readyz``: 200 and ``ready``, or 503 and why not; with what works but degraded."""
    reason = await readiness()
    extra = {"notices": n} if notices is not None and (n := notices()) else {}
    if reason is None:
        return 200, {"status": "ready", **extra}
    return 503, {"status": "not_ready", "reason": reason, **extra}


async def metrics_text(estate: EstateCollector, store: RouteStore) -> bytes:
    """``/metrics``: one Redis round trip per scrape; on failure the estate gauges keep their
    last value and ``namesrv_redis_up`` says 0."""
    snap = await estate.refresh(
        store.redis,
        store.keys,
        int(time.time() * 1000),
        timeout_s=store.deadlines.read_ms / 1000,
    )
    if snap.redis_up:
        set_table_sizes(snap.brokers, snap.clusters, snap.topics)
    return exposition(estate)


_METHODS = frozenset({"GET", "HEAD"})
"""As the application's GET routes (Starlette adds HEAD; the server sends no body for it)."""
_JSON = b"application/json"
_METRICS_TYPE = CONTENT_TYPE_LATEST.encode()


class Probes:
    """ASGI: ``GET`` (and ``HEAD``) ``/healthz``, ``/readyz`` and ``/metrics`` answered here
    (counted under the labels the application's routes have), everything else through ``app``."""

    def __init__(
        self,
        app: Any,
        store: RouteStore,
        estate: EstateCollector,
        readiness: Callable[[], Awaitable[str | None]],
        notices: Callable[[], list[str]] | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.estate = estate
        self.readiness = readiness
        self.notices = notices
        self._answers: dict[str, Callable[[], Awaitable[tuple[int, bytes, bytes]]]] = {
            HEALTHZ: self._healthz,
            READYZ: self._readyz,
            METRICS: self._metrics,
        }
        self._children = {
            (method, path): (REQUESTS.labels("http", label), REQUEST_LATENCY.labels("http", label))
            for path in self._answers
            for method in _METHODS
            for label in (http_route_label(method, path),)
        }

    async def _healthz(self) -> tuple[int, bytes, bytes]:
        return 200, _JSON, json_bytes(HEALTHY)

    async def _readyz(self) -> tuple[int, bytes, bytes]:
        status, content = await readiness_answer(self.readiness, self.notices)
        return status, _JSON, json_bytes(content)

    async def _metrics(self) -> tuple[int, bytes, bytes]:
        return 200, _METRICS_TYPE, await metrics_text(self.estate, self.store)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        answer = None
        if scope["type"] == "http" and scope["method"] in _METHODS:
            answer = self._answers.get(scope["path"])
        if answer is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            status, content_type, body = await answer()
        except RedisError as e:  # as the application's handlers answer
            status, content_type = 503, _JSON
            body = json_bytes({"error": "redis_unavailable", "detail": f"{type(e).__name__}: {e}"})
        except Exception as e:
            log.exception("HTTP %s %s failed", scope["method"], scope["path"])
            status, content_type = 500, _JSON
            body = json_bytes({"error": "internal_error", "detail": type(e).__name__})
        await send_response(send, status, content_type, body)
        count, latency = self._children[scope["method"], scope["path"]]
        count.inc()
        latency.observe(time.perf_counter() - started)
