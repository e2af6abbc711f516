"""The HTTP tier against a real redis-server, with routes registered over the remoting
protocol: every endpoint, blocking queries, Server-Sent Events, auth, metrics, error shapes,
and schemathesis over the OpenAPI schema."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from namesrv_redis.http.app import create_app
from namesrv_redis.http.exposure import warn_if_unprotected
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.remoting.processor import NamesrvProcessor
from namesrv_redis.remoting.server import RemotingServer
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.settings.config import Settings
from namesrv_redis.sim.broker import SimBroker
from namesrv_redis.store.events import RouteEvents
from namesrv_redis.store.liveness import Liveness
from namesrv_redis.store.pods import PodAdvertiser
from namesrv_redis.store.route_store import RouteStore
from tests.conftest import cached_routes, free_port

TOKEN = "s3cret-admin-token"


class Tier:
    def __init__(
        self,
        store: RouteStore,
        remoting: RemotingServer,
        app: Any,
        events: RouteEvents,
        settings: Settings,
    ) -> None:
        self.store, self.remoting, self.app, self.events, self.settings = (
            store,
            remoting,
            app,
            events,
            settings,
        )
        self.ready_reason: str | None = None

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://t")

    async def remoting_client(self) -> RemotingClient:
        return await RemotingClient.connect("127.0.0.1", self.remoting.bound_port)


@pytest.fixture
async def tier(real_redis: Any, namespace: str) -> AsyncIterator[Tier]:
    store = RouteStore(real_redis, namespace)
    await store.load_scripts()
    settings = Settings(admin_token=SecretStr(TOKEN), http_host="127.0.0.1")
    routes, events = await cached_routes(real_redis, store)
    remoting = RemotingServer(NamesrvProcessor(store, settings, routes), host="127.0.0.1", port=0)
    await remoting.start()
    holder: dict[str, Tier] = {}

    async def readiness() -> str | None:
        return holder["tier"].ready_reason

    app = create_app(
        store,
        events=events,
        settings_provider=lambda: settings,
        readiness=readiness,
        routes=routes,
        max_wait_s=3,
    )
    t = holder["tier"] = Tier(store, remoting, app, events, settings)
    for _ in range(100):
        if events.connected:
            break
        await asyncio.sleep(0.02)
    yield t
    await remoting.stop(grace_s=1)
    await events.stop()


def sim_broker(
    name: str = "broker-a", port: int = 10911, topics: tuple[str, ...] = ("T1", "T2")
) -> SimBroker:
    b = SimBroker("HttpCluster", name, f"127.0.0.1:{port}", ha_addr=f"127.0.0.1:{port + 1}")
    b.add_topics(list(topics))
    return b


async def register(tier: Tier, broker: SimBroker) -> RemotingClient:
    c = await tier.remoting_client()
    assert (await broker.register(c)).code == 0
    return c


ADMIN = {"Authorization": f"Bearer {TOKEN}"}


async def test_route_equals_remoting_answer(tier: Tier) -> None:
    c = await register(tier, sim_broker())
    remote = await c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T1"}, version=409)
    async with tier.http() as http:
        r = await http.get("/v1/routes/T1")
        assert r.status_code == 200
        assert r.json() == orjson.loads(remote.body or b"")  # type: ignore[union-attr]
        assert int(r.headers["X-Namesrv-Index"]) >= 1
        missing = await http.get("/v1/routes/nope")
        assert missing.status_code == 404
        assert missing.json()["error"] == "topic_not_found"
        # both front ends answer from the pod's one cache (it was empty when the app was made)
        routes = tier.remoting.processor.routes
        for _ in range(100):  # a late registration event may drop what one read cached
            body = (await http.get("/v1/routes/T2")).content
            if routes.cached_body("T2", standard=True) == (True, body):
                break
            await asyncio.sleep(0.02)
        assert routes.cached_body("T2", standard=True) == (True, body)
    await c.close()


async def test_blocking_query_returns_early_on_change(tier: Tier) -> None:
    """A watch with the index of the answer it has waits (however late the registration's
    event reaches the pod) and returns on the next change, long before its deadline."""
    c = await register(tier, sim_broker())
    app = create_app(
        tier.store,
        events=tier.events,
        settings_provider=lambda: tier.settings,
        readiness=lambda: asyncio.sleep(0),
        routes=tier.remoting.processor.routes,
        max_wait_s=60,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=70) as http:
        first = await http.get("/v1/routes/T1")  # right after the write: its event may lag
        index = int(first.headers["X-Namesrv-Index"])
        assert index == await tier.store.route_version()  # the version of this very answer
        broker = sim_broker(topics=("T1", "T2", "T3"))
        broker.counter = 10
        changing = asyncio.Event()

        async def create_topic() -> None:
            await asyncio.sleep(0.3)
            changing.set()
            assert (await broker.register(c)).code == 0

        started = asyncio.get_running_loop().time()
        task = asyncio.create_task(create_topic())
        watched = await http.get("/v1/routes/T1", params={"index": index, "wait": "50s"})
        returned_after_change = changing.is_set()
        elapsed = asyncio.get_running_loop().time() - started
        await task
        assert watched.status_code == 200
        assert returned_after_change, f"returned after {elapsed:.3f} s, before any change"
        assert int(watched.headers["X-Namesrv-Index"]) > index
        assert elapsed < 45, "returned at its deadline, not on the change"
        assert watched.content == first.content  # T1's own route did not change
    await c.close()


async def test_blocking_query_returns_at_deadline(tier: Tier) -> None:
    c = await register(tier, sim_broker())
    async with tier.http() as http:
        index = int((await http.get("/v1/routes/T1")).headers["X-Namesrv-Index"])
        started = asyncio.get_running_loop().time()
        r = await http.get("/v1/routes/T1", params={"index": index, "wait": "1s"})
        elapsed = asyncio.get_running_loop().time() - started
        assert r.status_code == 200 and int(r.headers["X-Namesrv-Index"]) == index
        assert 0.9 <= elapsed < 2.5
        bad = await http.get("/v1/routes/T1", params={"index": index, "wait": "soon"})
        assert bad.status_code == 400 and bad.json()["error"] == "bad_wait"
    await c.close()


async def test_clusters_topics_and_liveness(tier: Tier) -> None:
    c = await register(tier, sim_broker())
    async with tier.http() as http:
        clusters = (await http.get("/v1/clusters")).json()
        [cluster] = clusters["clusters"]
        assert cluster["name"] == "HttpCluster" and cluster["brokerNames"] == ["broker-a"]
        [addr] = cluster["brokers"][0]["addresses"]
        assert addr["address"] == "127.0.0.1:10911" and addr["alive"]
        assert addr["liveness"]["haServerAddr"] == "127.0.0.1:10912"
        assert 100 < addr["liveness"]["secondsLeft"] <= 120
        assert addr["liveness"]["dataVersion"]["counter"] >= 1
        assert (await http.get("/v1/topics")).json()["topics"] == ["T1", "T2"]
        assert (await http.get("/v1/topics", params={"cluster": "HttpCluster"})).json()[
            "topics"
        ] == ["T1", "T2"]
        assert (await http.get("/v1/topics", params={"cluster": "nope"})).json()["topics"] == []
        system = (await http.get("/v1/topics", params={"flag": "system"})).json()["topics"]
        assert set(system) == {"HttpCluster", "broker-a"}
        assert (await http.get("/v1/topics", params={"flag": "unit"})).json()["topics"] == []
        assert (await http.get("/v1/topics", params={"flag": "bogus"})).status_code == 422
    await c.close()


async def test_kv_config_and_auth(tier: Tier) -> None:
    async with tier.http() as http:
        assert (await http.get("/v1/kv/ns1")).status_code == 404
        no_token = await http.put("/v1/kv/ns1/k", json={"value": "v"})
        assert no_token.status_code == 401 and no_token.json()["error"] == "unauthorized"
        wrong = await http.put(
            "/v1/kv/ns1/k", json={"value": "v"}, headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 403
        ok = await http.put("/v1/kv/ns1/k", json={"value": "v"}, headers=ADMIN)
        assert ok.status_code == 200 and ok.json() == {"namespace": "ns1", "key": "k", "value": "v"}
        assert (await http.get("/v1/kv/ns1/k")).json()["value"] == "v"
        assert (await http.get("/v1/kv/ns1")).json() == {"namespace": "ns1", "table": {"k": "v"}}
        assert (await http.delete("/v1/kv/ns1/k")).status_code == 401
        assert (await http.delete("/v1/kv/ns1/k", headers=ADMIN)).status_code == 204
        assert (await http.get("/v1/kv/ns1/k")).status_code == 404
        assert (await http.get("/v1/kv/ns1")).json()["table"] == {}  # emptied, still there
    # the remoting side sees the same KV table
    c = await tier.remoting_client()
    resp = await c.request(RequestCode.GET_KVLIST_BY_NAMESPACE, {"namespace": "ns1"})
    assert resp is not None and resp.code == 0 and orjson.loads(resp.body or b"") == {"table": {}}
    await c.close()


async def test_admin_write_permission_and_delete_topic(tier: Tier) -> None:
    c = await register(tier, sim_broker())
    async with tier.http() as http:
        url = "/v1/brokers/broker-a/write-permission"
        assert (await http.post(url, json={"enabled": False})).status_code == 401
        wiped = await http.post(url, json={"enabled": False}, headers=ADMIN)
        assert wiped.json() == {"brokerName": "broker-a", "enabled": False, "topicCount": 2}
        route = (await http.get("/v1/routes/T1")).json()
        assert route["queueDatas"][0]["perm"] == 4
        added = await http.post(url, json={"enabled": True}, headers=ADMIN)
        assert added.json()["topicCount"] == 2
        assert (await http.get("/v1/routes/T1")).json()["queueDatas"][0]["perm"] == 6
        assert (await http.delete("/v1/topics/T2")).status_code == 401
        deleted = await http.delete("/v1/topics/T2", headers=ADMIN)
        assert deleted.json() == {"topic": "T2", "cluster": None, "removedQueueDatas": 1}
        assert (await http.get("/v1/routes/T2")).status_code == 404
    await c.close()


async def test_health_readiness_and_address_server(tier: Tier) -> None:
    advertiser = PodAdvertiser(
        tier.store.redis,
        tier.store.keys,
        listen_host="127.0.0.1",
        listen_port=tier.remoting.bound_port,
    )
    await advertiser.advertise_once()
    async with tier.http() as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).status_code == 200
        tier.ready_reason = "redis unreachable: ConnectionError"
        not_ready = await http.get("/readyz")
        assert not_ready.status_code == 503 and not_ready.json()["reason"].startswith("redis")
        nsaddr = await http.get("/rocketmq/nsaddr")
        assert nsaddr.status_code == 200
        assert nsaddr.text == f"127.0.0.1:{tier.remoting.bound_port}"
        assert nsaddr.headers["content-type"].startswith("text/plain")
    await advertiser.stop()


async def test_metrics_parse_and_move(tier: Tier) -> None:
    c = await register(tier, sim_broker())

    def value(text: str, name: str, **labels: str) -> float:
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0

    async with tier.http() as http:
        before = (await http.get("/metrics")).text
        for _ in range(3):
            await c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T1"})
            await http.get("/v1/routes/T1")
        after = (await http.get("/metrics")).text
    assert (
        value(after, "namesrv_requests_total", frontend="remoting", code="105")
        >= value(before, "namesrv_requests_total", frontend="remoting", code="105") + 3
    )
    assert (
        value(after, "namesrv_requests_total", frontend="http", code="GET /v1/routes/{topic}")
        >= value(before, "namesrv_requests_total", frontend="http", code="GET /v1/routes/{topic}")
        + 3
    )
    assert value(after, "namesrv_topics") >= 2
    assert value(after, "namesrv_broker_registrations_total", outcome="ok") >= 1
    await c.close()


async def test_redis_down_is_a_json_503(tier: Tier) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RedisConnectionError("down")

    tier.store.get_cluster_info = broken  # type: ignore[method-assign]
    async with tier.http() as http:
        r = await http.get("/v1/clusters")
    assert r.status_code == 503 and r.json()["error"] == "redis_unavailable"


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[int]:
    """The app under a real uvicorn server on a free port, in this event loop."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        yield port
    finally:
        server.should_exit = True
        await serving


async def test_sse_client_sees_an_expiry(tier: Tier) -> None:
    """A real uvicorn server streams the events; a broker with a short heartbeat timeout
    expires and the liveness loops remove it."""
    liveness = Liveness(tier.store, tier.store.redis, scan_interval_ms=200)
    await liveness.start()
    try:
        async with served(tier.app) as port:
            broker = sim_broker(topics=("Expiring", "T9"))
            broker.heartbeat_timeout_ms = 800
            seen: list[dict[str, Any]] = []
            async with (
                httpx.AsyncClient(timeout=10) as http,
                http.stream(
                    "GET", f"http://127.0.0.1:{port}/v1/events", params={"topic": "Expiring"}
                ) as stream,
            ):
                c = await register(tier, broker)

                async def read() -> None:
                    async for line in stream.aiter_lines():
                        if line.startswith("data: "):
                            event = orjson.loads(line[6:])
                            seen.append(event)
                            if event["kind"] == "expired":
                                return

                try:
                    await asyncio.wait_for(read(), 8)
                except TimeoutError:
                    raise AssertionError(f"no expiry event; saw {seen}") from None
            kinds = [e["kind"] for e in seen]
            assert "register" in kinds and kinds[-1] == "expired"
            assert "Expiring" in (seen[-1]["topics"] or [])
            await c.close()
    finally:
        await liveness.stop()


def test_unprotected_warning(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    log = logging.getLogger("t")
    assert warn_if_unprotected(Settings(http_host="0.0.0.0"), log)
    assert "not protected" in caplog.text
    assert not warn_if_unprotected(Settings(http_host="127.0.0.1"), log)
    assert not warn_if_unprotected(Settings(http_host="0.0.0.0", admin_token=SecretStr("x")), log)
    assert TOKEN not in caplog.text


async def test_schemathesis_finds_no_server_error(tier: Tier) -> None:
    from hypothesis import HealthCheck, given, settings

    c = await register(tier, sim_broker())
    schema = schemathesis.openapi.from_dict(tier.app.openapi())
    failures: list[str] = []
    async with served(tier.app) as port:
        base_url = f"http://127.0.0.1:{port}"
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.path == "/v1/events":
                continue  # an endless stream by design

            @settings(
                max_examples=12,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy())
            def check(case: Any) -> None:
                response = case.call(base_url=base_url, headers=ADMIN, timeout=10)
                if response.status_code >= 500 and response.status_code != 503:
                    failures.append(
                        f"{case.method} {case.formatted_path}: {response.status_code} "
                        f"{response.text[:200]}"
                    )

            await asyncio.to_thread(check)
    await c.close()
    assert failures == []


async def test_route_fast_path_answers_like_the_application(tier: Tier) -> None:
    """Cache hits skip FastAPI with the very same answer; misses, unknown topics, blocking
    queries and other paths still reach the application."""
    from namesrv_redis.http.fast_routes import RouteFastPath

    c = await register(tier, sim_broker())
    routes = tier.remoting.processor.routes
    fast = RouteFastPath(tier.app, routes, tier.events)
    calls: list[str] = []

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await tier.app(scope, receive, send)

    fast.app = spy
    transport = httpx.ASGITransport(app=fast)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        first = await http.get("/v1/routes/T1")  # a miss: FastAPI fills the cache
        for _ in range(100):  # (unless the registration's event was still on its way)
            if routes.cached_body("T1", standard=True)[0]:
                break
            await asyncio.sleep(0.02)
            first = await http.get("/v1/routes/T1")
        calls.clear()
        again = await http.get("/v1/routes/T1")  # a hit: answered in front of it
        assert calls == []
        assert (again.status_code, again.content) == (first.status_code, first.content)
        assert again.headers["content-type"] == first.headers["content-type"]
        assert again.headers["x-namesrv-index"] == first.headers["x-namesrv-index"]
        assert (await http.get("/v1/routes/nope")).status_code == 404
        assert (await http.get("/v1/routes/T1?index=0&wait=1s")).status_code == 200
        assert (await http.get("/healthz")).status_code in (200, 503)
        assert calls == ["/v1/routes/nope", "/v1/routes/T1", "/healthz"]
    await c.close()
