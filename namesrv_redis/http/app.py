"""The HTTP/JSON tier: routes, clusters, topics, KV config, admin, watches, health, metrics and
the address server. No business rule lives here: every answer comes from the route store
(or the pod's route cache) exactly as the remoting front end gets it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from namesrv_redis import __version__
from namesrv_redis.domain.route_reader import RouteReader
from namesrv_redis.http.acl_api import add_acl_routes
from namesrv_redis.http.api_docs import add_api_docs
from namesrv_redis.http.exposure import admin_exposed_without_token
from namesrv_redis.http.json_body import JsonBodyRoute, invalid_json
from namesrv_redis.http.openapi import install as install_openapi
from namesrv_redis.http.probes import HEALTHY, metrics_text, readiness_answer
from namesrv_redis.settings.config import Settings
from namesrv_redis.store.acl import AclStore
from namesrv_redis.store.events import RouteEvent, RouteEvents
from namesrv_redis.store.pods import live_pod_addresses
from namesrv_redis.store.route_store import RouteStore
from namesrv_redis.telemetry.estate_metrics import EstateCollector
from namesrv_redis.telemetry.metrics import (
    REQUEST_LATENCY,
    REQUESTS,
    http_route_label,
)

log = logging.getLogger(__name__)

MAX_WAIT_S = 600.0
DEFAULT_WAIT_S = 300.0
KEEPALIVE_S = 15.0
STREAM_BUFFER = 64
"""Events a Server-Sent Events client may be behind before its subscription's own bounded
queue takes the rest (and turns an overflow into one "everything may have changed")."""


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str = "") -> None:
        super().__init__(detail or error)
        self.status, self.error, self.detail = status, error, detail


# ------------------------------------------------------------------------------ models


class QueueDataModel(BaseModel):
    brokerName: str
    perm: int
    readQueueNums: int
    topicSysFlag: int
    writeQueueNums: int


class BrokerDataModel(BaseModel):
    brokerAddrs: dict[str, str]
    brokerName: str
    cluster: str
    enableActingMaster: bool | None = None
    zoneName: str | None = None


class RouteModel(BaseModel):
    brokerDatas: list[BrokerDataModel]
    filterServerTable: dict[str, list[str]]
    orderTopicConf: str | None = None
    queueDatas: list[QueueDataModel]


class Liveness(BaseModel):
    lastUpdateTimestamp: int | None = None
    secondsLeft: float | None = None
    dataVersion: dict[str, Any] | None = None
    haServerAddr: str | None = None


class BrokerAddress(BaseModel):
    id: int
    address: str
    alive: bool
    liveness: Liveness | None = None


class BrokerModel(BaseModel):
    brokerName: str
    cluster: str
    addresses: list[BrokerAddress]


class ClusterModel(BaseModel):
    name: str
    brokerNames: list[str]
    brokers: list[BrokerModel]


class ClustersModel(BaseModel):
    version: int
    clusters: list[ClusterModel]


class TopicsModel(BaseModel):
    topics: list[str]


class KvValue(BaseModel):
    value: str


class KvEntry(BaseModel):
    namespace: str
    key: str
    value: str


class KvTable(BaseModel):
    namespace: str
    table: dict[str, str]


class WritePermRequest(BaseModel):
    enabled: bool


class WritePermResult(BaseModel):
    brokerName: str
    enabled: bool
    topicCount: int


class DeleteTopicResult(BaseModel):
    topic: str
    cluster: str | None
    removedQueueDatas: int


class ErrorModel(BaseModel):
    error: str
    detail: str = ""


class StatusModel(BaseModel):
    status: str
    reason: str | None = None
    notices: list[str] | None = None
    """What works, but degraded (e.g. keyspace notifications off)."""


# ------------------------------------------------------------------------------ helpers


def parse_wait(text: str | None) -> float:
    """Consul-style durations: ``500ms``, ``10s``, ``2m``; a bare number is seconds."""
    if text is None or text == "":
        return DEFAULT_WAIT_S
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", text)
    if not m:
        raise ApiError(400, "bad_wait", f"cannot parse wait={text!r} (use e.g. 500ms, 10s, 1m)")
    value = float(m.group(1))
    unit = m.group(2) or "s"
    seconds = value / 1000 if unit == "ms" else value * 60 if unit == "m" else value
    return min(seconds, MAX_WAIT_S)


async def event_stream(events: RouteEvents, topics: set[str] | None) -> AsyncIterator[bytes]:
    """``/v1/events``: Server-Sent Events of the route changes that concern ``topics`` (all
    when None), with a keep-alive comment after every :data:`KEEPALIVE_S` of silence.

    The subscription is drained by a task of its own into a small queue: waiting for the next
    event with a timeout then cancels only a ``Queue.get``, never the subscription (cancelling
    the subscription's own ``__anext__`` would end it at the first keep-alive). When the client
    leaves, Starlette cancels this generator and the ``finally`` cancels the task, whose own
    ``finally`` closes the subscription: no listener outlives its client."""
    pending: asyncio.Queue[RouteEvent] = asyncio.Queue(STREAM_BUFFER)

    async def pump() -> None:
        subscription = events.subscribe(topics)
        try:
            async for event in subscription:
                await pending.put(event)
        finally:
            if isinstance(subscription, AsyncGenerator):  # (typed as an iterator)
                await subscription.aclose()

    pumping = asyncio.create_task(pump(), name="sse-subscription")
    try:
        await asyncio.sleep(0)  # the task subscribes before the client hears "connected"
        yield b": connected\n\n"
        while True:
            try:
                event = await asyncio.wait_for(pending.get(), KEEPALIVE_S)
            except TimeoutError:
                if pumping.done():  # the subscription ended: say so by ending the stream
                    return
                yield b": keep-alive\n\n"
                continue
            yield b"event: route\ndata: " + orjson.dumps(event.to_json()) + b"\n\n"
    finally:
        pumping.cancel()


# ------------------------------------------------------------------------------ app


def create_app(
    store: RouteStore,
    *,
    events: RouteEvents,
    settings_provider: Callable[[], Settings],
    readiness: Callable[[], Awaitable[str | None]],
    routes: RouteReader | None = None,
    max_wait_s: float = MAX_WAIT_S,
    notices: Callable[[], list[str]] | None = None,
    acl: AclStore | None = None,
    estate: EstateCollector | None = None,
) -> FastAPI:
    """The FastAPI application of one pod (``estate``: the collector of the estate gauges
    that ``/metrics`` reports, shared with :class:`~.probes.Probes` in a pod)."""
    reader = routes if routes is not None else RouteReader(store, enabled=False)
    app = FastAPI(
        docs_url=None,  # served from packaged assets instead of a CDN: add_api_docs below
        redoc_url=None,
        title="namesrv-redis",
        version=__version__,
        description="RocketMQ name server routes and admin over HTTP/JSON.",
        responses={503: {"model": ErrorModel}},
    )
    app.router.route_class = JsonBodyRoute  # bodies are JSON whatever curl -d labels them

    install_openapi(app)
    add_api_docs(app)

    def latest_version() -> int:
        return events.latest_version  # kept current by the event subscription

    # ---------------------------------------------------------------- errors and metrics

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {
                "error": "not_found" if exc.status_code == 404 else "http_error",
                "detail": str(exc.detail),
            },
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        not_json = invalid_json(list(exc.errors()))
        if not_json is not None:
            return JSONResponse({"error": "invalid_json", "detail": not_json}, status_code=400)
        detail = "; ".join(
            f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return JSONResponse({"error": "bad_request", "detail": detail}, status_code=422)

    @app.exception_handler(RedisError)
    async def _redis_error(request: Request, exc: RedisError) -> JSONResponse:
        return JSONResponse(
            {"error": "redis_unavailable", "detail": f"{type(exc).__name__}: {exc}"},
            status_code=503,
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("HTTP %s %s failed", request.method, request.url.path)
        return JSONResponse(
            {"error": "internal_error", "detail": type(exc).__name__}, status_code=500
        )

    def require_admin(authorization: str | None = Header(default=None)) -> None:
        settings = settings_provider()
        token = settings.admin_token
        if token is None:
            if admin_exposed_without_token(settings) and not settings.allow_unauthenticated_admin:
                raise ApiError(
                    403,
                    "admin_disabled",
                    "admin calls are disabled: this HTTP tier listens on a non-loopback "
                    "address without an admin token (set --admin-token, or "
                    "--allow-unauthenticated-admin to accept the risk)",
                )
            return
        if not authorization or not authorization.startswith("Bearer "):
            raise ApiError(401, "unauthorized", "admin calls need Authorization: Bearer <token>")
        if not hmac.compare_digest(authorization[7:].encode(), token.get_secret_value().encode()):
            raise ApiError(403, "forbidden", "wrong admin token")

    # ---------------------------------------------------------------- routes

    @app.get(
        "/v1/routes/{topic:path}",
        response_model=RouteModel,
        response_model_exclude_none=True,
        responses={404: {"model": ErrorModel}},
        summary="A topic's route (blocking query with ?index=N&wait=30s)",
    )
    async def get_route(
        topic: str,
        index: int | None = Query(
            default=None, ge=0, description="return once the route version passes this"
        ),
        wait: str | None = Query(default=None, description="longest wait, e.g. 30s (default 5m)"),
    ) -> Response:
        if index is not None:
            await events.wait_for_version(index, min(parse_wait(wait), max_wait_s))
        body, version = await reader.route_answer(topic, standard=True, latest=latest_version)
        headers = {"X-Namesrv-Index": str(version)}
        if body is None:
            return JSONResponse(
                {
                    "error": "topic_not_found",
                    "detail": f"No topic route info in name server for the topic: {topic}",
                },
                status_code=404,
                headers=headers,
            )
        return Response(body, media_type="application/json", headers=headers)

    @app.get("/v1/events", summary="Server-Sent Events of route changes")
    async def get_events(topic: list[str] | None = Query(default=None)) -> StreamingResponse:
        wanted = set(topic) if topic else None

        return StreamingResponse(
            event_stream(events, wanted),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    # ---------------------------------------------------------------- clusters and topics

    @app.get("/v1/clusters", response_model=ClustersModel, response_model_exclude_none=True)
    async def get_clusters() -> ClustersModel:
        info = await store.get_cluster_info()
        clusters = []
        for cname, names in sorted(info.cluster_addr_table.items()):
            brokers = []
            for name in names:
                bd = info.broker_addr_table.get(name)
                if bd is None:
                    continue
                addresses = []
                for bid, addr in sorted(bd.broker_addrs.items()):
                    live = await store.live_info(bd.cluster, addr)
                    liveness = None
                    if live is not None:
                        pttl = int(live.get("pttl", "-1"))
                        liveness = Liveness(
                            lastUpdateTimestamp=int(live["last"]) if live.get("last") else None,
                            secondsLeft=round(pttl / 1000, 3) if pttl >= 0 else None,
                            dataVersion=orjson.loads(live["dv"]) if live.get("dv") else None,
                            haServerAddr=live.get("ha") or None,
                        )
                    addresses.append(
                        BrokerAddress(
                            id=bid, address=addr, alive=live is not None, liveness=liveness
                        )
                    )
                brokers.append(
                    BrokerModel(brokerName=name, cluster=bd.cluster, addresses=addresses)
                )
            clusters.append(ClusterModel(name=cname, brokerNames=names, brokers=brokers))
        return ClustersModel(version=info.version, clusters=clusters)

    @app.get("/v1/topics", response_model=TopicsModel)
    async def get_topics(
        cluster: str | None = None,
        flag: str | None = Query(default=None, pattern="^(unit|unit_sub|unit_sub_ununit|system)$"),
    ) -> TopicsModel:
        if flag == "system":
            topics, _ = await store.system_topics()
        elif flag == "unit":
            topics = await store.unit_topics()
        elif flag == "unit_sub":
            topics = await store.has_unit_sub_topics()
        elif flag == "unit_sub_ununit":
            topics = await store.has_unit_sub_ununit_topics()
        else:
            topics = await store.all_topics()
        if cluster is not None:
            of_cluster = set(await store.topics_of_cluster(cluster))
            topics = [t for t in topics if t in of_cluster]
        return TopicsModel(topics=sorted(topics))

    # ---------------------------------------------------------------- KV config

    @app.get("/v1/kv/{namespace}", response_model=KvTable, responses={404: {"model": ErrorModel}})
    async def get_kv_table(namespace: str) -> KvTable:
        table = await store.list_kv(namespace)
        if table is None:
            raise ApiError(404, "namespace_not_found", f"No config item, Namespace: {namespace}")
        return KvTable(namespace=namespace, table=table)

    @app.get(
        "/v1/kv/{namespace}/{key}", response_model=KvEntry, responses={404: {"model": ErrorModel}}
    )
    async def get_kv(namespace: str, key: str) -> KvEntry:
        value = await store.get_kv(namespace, key)
        if value is None:
            raise ApiError(
                404, "key_not_found", f"No config item, Namespace: {namespace} Key: {key}"
            )
        return KvEntry(namespace=namespace, key=key, value=value)

    @app.put(
        "/v1/kv/{namespace}/{key}",
        response_model=KvEntry,
        dependencies=[Depends(require_admin)],
        responses={401: {"model": ErrorModel}, 403: {"model": ErrorModel}},
    )
    async def put_kv(namespace: str, key: str, body: KvValue) -> KvEntry:
        await store.put_kv(namespace, key, body.value)
        return KvEntry(namespace=namespace, key=key, value=body.value)

    @app.delete(
        "/v1/kv/{namespace}/{key}",
        status_code=204,
        dependencies=[Depends(require_admin)],
        responses={401: {"model": ErrorModel}, 403: {"model": ErrorModel}},
    )
    async def delete_kv(namespace: str, key: str) -> Response:
        await store.delete_kv(namespace, key)
        return Response(status_code=204)

    # ---------------------------------------------------------------- admin

    @app.post(
        "/v1/brokers/{brokerName}/write-permission",
        response_model=WritePermResult,
        dependencies=[Depends(require_admin)],
        responses={401: {"model": ErrorModel}, 403: {"model": ErrorModel}},
    )
    async def write_permission(brokerName: str, body: WritePermRequest) -> WritePermResult:
        if body.enabled:
            count = await store.add_write_perm(brokerName)
        else:
            count = await store.wipe_write_perm(brokerName)
        return WritePermResult(brokerName=brokerName, enabled=body.enabled, topicCount=count)

    @app.delete(
        "/v1/topics/{topic:path}",
        response_model=DeleteTopicResult,
        dependencies=[Depends(require_admin)],
        responses={401: {"model": ErrorModel}, 403: {"model": ErrorModel}},
    )
    async def delete_topic(topic: str, cluster: str | None = None) -> DeleteTopicResult:
        removed = await store.delete_topic(topic, cluster)
        return DeleteTopicResult(topic=topic, cluster=cluster, removedQueueDatas=removed)

    # ---------------------------------------------------------------- address server

    @app.get(
        "/rocketmq/{subgroup}",
        response_class=PlainTextResponse,
        summary="Name-server addresses in the form RocketMQ clients poll (host:port;…)",
    )
    async def nsaddr(subgroup: str) -> PlainTextResponse:
        pods = await store.deadlines.run("read", live_pod_addresses(store.redis, store.keys))
        return PlainTextResponse(";".join(pods))

    # ---------------------------------------------------------------- health and metrics

    @app.get("/healthz", response_model=StatusModel, response_model_exclude_none=True)
    async def healthz() -> StatusModel:
        return StatusModel(**HEALTHY)

    @app.get("/readyz", response_model=StatusModel, response_model_exclude_none=True)
    async def readyz() -> Response:
        status, content = await readiness_answer(readiness, notices)
        return JSONResponse(content, status_code=status)

    metrics_estate = estate if estate is not None else EstateCollector(store.keys.namespace)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        return Response(await metrics_text(metrics_estate, store), media_type=CONTENT_TYPE_LATEST)

    if acl is not None:
        add_acl_routes(app, acl, require_admin)

    from namesrv_redis.http.console import add_console

    add_console(app, store, settings_provider)
    app.add_middleware(RequestMetrics)
    return app


class RequestMetrics:
    """Counts and times every request by route template (a plain ASGI middleware: Starlette's
    BaseHTTPMiddleware costs a task group per request)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._children: dict[str, tuple[Any, Any]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = scope.get("route")
            label = http_route_label(scope["method"], getattr(route, "path", "unmatched"))
            children = self._children.get(label)
            if children is None:
                children = self._children[label] = (
                    REQUESTS.labels("http", label),
                    REQUEST_LATENCY.labels("http", label),
                )
            children[0].inc()
            children[1].observe(time.perf_counter() - started)
