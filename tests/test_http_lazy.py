"""The JSON API loaded on its first request (http/lazy_app.py), probes and metrics answered
without it (http/probes.py): what a pod that serves RocketMQ clients, Kubernetes probes and
Prometheus scrapes never pays for (docs/benchmarks.md "Memory")."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from namesrv_redis.http.app import create_app
from namesrv_redis.http.lazy_app import LazyApp
from namesrv_redis.http.plain_asgi import send_response
from namesrv_redis.http.probes import Probes
from namesrv_redis.store.events import RouteEvents
from namesrv_redis.store.route_store import RouteStore
from namesrv_redis.telemetry.estate_metrics import EstateCollector
from namesrv_redis.telemetry.metrics import REQUESTS
from tests.conftest import RedisServerProcess

POD_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    import httpx
    from namesrv_redis.sim.broker import SimBroker
    from namesrv_redis.settings.config import Settings
    from namesrv_redis.process.pod import Pod
    from namesrv_redis.remoting.client import RemotingClient
    from namesrv_redis.rocketmq.codes import RequestCode

    async def main(url, namespace, preload):
        pod = Pod(Settings(redis_url=url, namespace=namespace, listen_host="127.0.0.1",
                           listen_port=0, http_host="127.0.0.1", http_port=0,
                           http_preload_app=preload))
        await pod.start()
        out = {"loaded_at_start": "fastapi" in sys.modules}
        try:
            client = await RemotingClient.connect("127.0.0.1", pod.remoting.bound_port)
            sim = SimBroker("LazyCluster", "lazy-broker", "127.0.0.1:10911")
            sim.add_topics(["LazyTopic", "LazyOther"])
            reg = await sim.register(client)
            assert reg.code == 0, (reg.code, reg.remark)
            # the registration's own event, arriving after the route is cached, would drop it
            # (a busy machine delays it): cache once the pod's events have caught up
            written = await pod.store.route_version()
            for _ in range(200):
                if pod.events.latest_version >= written:
                    break
                await asyncio.sleep(0.025)
            resp = await client.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "LazyTopic"})
            assert resp.code == 0, (resp.code, resp.remark)  # now cached
            base = f"http://127.0.0.1:{pod.http_port}"
            async with httpx.AsyncClient(base_url=base) as http:
                for path in ("/healthz", "/readyz", "/metrics", "/v1/routes/LazyTopic"):
                    r = await http.get(path)
                    out[path] = [r.status_code, r.headers.get("content-type"), r.text]
                head = await http.head("/healthz")  # load balancers that probe with HEAD
                out["head"] = [head.status_code, head.headers.get("content-length"), head.text]
                out["loaded_after_probes"] = "fastapi" in sys.modules
                first = await asyncio.gather(*(http.get("/v1/clusters") for _ in range(5)))
                out["clusters"] = [r.status_code for r in first]
                out["clusters_body"] = first[0].json()
                out["loaded_after_clusters"] = "fastapi" in sys.modules
                out["openapi_paths"] = sorted((await http.get("/openapi.json")).json()["paths"])
                out["metrics_after"] = (await http.get("/metrics")).text
            await client.close()
        finally:
            await pod.stop(grace_s=1)
        print(json.dumps(out))

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] == "preload"))
    """
)


def _run_pod(url: str, namespace: str, preload: bool) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", POD_SCRIPT, url, namespace, "preload" if preload else "lazy"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_probes_metrics_and_cached_routes_do_not_load_the_json_api(
    redis_server: RedisServerProcess,
) -> None:
    r = _run_pod(redis_server.url, "lazy-http", preload=False)
    assert not r["loaded_at_start"] and not r["loaded_after_probes"]
    assert r["head"] == [200, str(len(r["/healthz"][2])), ""]
    assert r["/healthz"][:2] == [200, "application/json"]
    assert json.loads(r["/healthz"][2]) == {"status": "ok"}
    assert r["/readyz"][0] == 200 and json.loads(r["/readyz"][2])["status"] == "ready"
    assert r["/metrics"][0] == 200 and r["/metrics"][1] == CONTENT_TYPE_LATEST
    assert "namesrv_redis_up 1.0" in r["/metrics"][2]
    assert r["/v1/routes/LazyTopic"][0] == 200
    assert json.loads(r["/v1/routes/LazyTopic"][2])["brokerDatas"][0]["brokerName"] == (
        "lazy-broker"
    )
    # the first other request builds the application once, concurrent ones wait for it
    assert r["loaded_after_clusters"] and r["clusters"] == [200] * 5
    assert "LazyCluster" in json.dumps(r["clusters_body"])
    # OpenAPI still describes the probes the plain-ASGI layer answers
    assert {"/healthz", "/readyz", "/metrics", "/v1/clusters"} <= set(r["openapi_paths"])
    # probes counted under the labels the application's routes use
    assert 'namesrv_requests_total{code="GET /healthz",frontend="http"} 1.0' in r["metrics_after"]
    assert 'namesrv_requests_total{code="GET /metrics",frontend="http"} 1.0' in r["metrics_after"]


def test_http_preload_app_builds_the_json_api_at_start(redis_server: RedisServerProcess) -> None:
    r = _run_pod(redis_server.url, "lazy-http-preload", preload=True)
    assert r["loaded_at_start"]
    assert r["clusters"] == [200] * 5


# ------------------------------------------------------------------ the same answers


async def _get(app: Any, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as http:
        return await http.get(path)


@pytest.mark.parametrize("reason", [None, "route cache not warmed: event subscription down"])
async def test_probes_answer_what_the_application_answers(reason: str | None) -> None:
    redis = fakeredis.FakeAsyncRedis()
    store = RouteStore(redis, "probes")
    await store.load_scripts()
    events = RouteEvents(redis, store.keys)

    async def readiness() -> str | None:
        return reason

    def notices() -> list[str]:
        return ["keyspace notifications are off"]

    from namesrv_redis.settings.config import Settings

    app = create_app(
        store,
        events=events,
        settings_provider=Settings,
        readiness=readiness,
        notices=notices,
    )
    never = LazyApp(lambda: pytest.fail("the application was built"))
    probes = Probes(never, store, EstateCollector("probes"), readiness, notices)
    for path in ("/healthz", "/readyz"):
        ours, theirs = await _get(probes, path), await _get(app, path)
        assert ours.status_code == theirs.status_code
        assert ours.content == theirs.content, path
        assert ours.headers["content-type"] == theirs.headers["content-type"]
        assert ours.headers["content-length"] == theirs.headers["content-length"]
    ours, theirs = await _get(probes, "/metrics"), await _get(app, "/metrics")
    assert ours.status_code == theirs.status_code == 200
    assert ours.headers["content-type"] == theirs.headers["content-type"]
    assert not never.loaded
    await redis.aclose()


async def test_a_probe_that_fails_answers_500_and_the_pod_goes_on() -> None:
    async def broken() -> str | None:
        raise RuntimeError("boom")

    store = RouteStore(fakeredis.FakeAsyncRedis(), "probes-fail")
    before = REQUESTS.labels("http", "GET /readyz")._value.get()
    probes = Probes(LazyApp(lambda: None), store, EstateCollector("probes-fail"), broken)
    r = await _get(probes, "/readyz")
    assert r.status_code == 500 and r.json() == {
        "error": "internal_error",
        "detail": "RuntimeError",
    }
    assert REQUESTS.labels("http", "GET /readyz")._value.get() == before + 1
    assert (await _get(probes, "/healthz")).status_code == 200


async def test_a_probe_that_cannot_reach_redis_answers_503_as_the_application_does() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    async def unreachable() -> str | None:
        raise RedisConnectionError("Connection refused")

    store = RouteStore(fakeredis.FakeAsyncRedis(), "probes-redis")
    probes = Probes(LazyApp(lambda: None), store, EstateCollector("probes-redis"), unreachable)
    r = await _get(probes, "/readyz")
    assert r.status_code == 503
    assert r.json() == {
        "error": "redis_unavailable",
        "detail": "ConnectionError: Connection refused",
    }


async def _no_content(scope: Any, receive: Any, send: Any) -> None:
    """The application a test's LazyApp builds: 204 to everything."""
    await send_response(send, 204, b"text/plain", b"")


async def test_the_application_is_built_once_for_concurrent_first_requests() -> None:
    built: list[int] = []

    def build() -> Any:
        built.append(1)
        return _no_content

    lazy = LazyApp(build, import_modules=("json",))
    answers = await asyncio.gather(*(_get(lazy, f"/v1/x{i}") for i in range(8)))
    assert [a.status_code for a in answers] == [204] * 8 and built == [1]
    assert lazy.loaded


async def test_an_application_that_fails_to_build_answers_500_and_is_tried_again() -> None:
    attempts: list[int] = []

    def build() -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            raise ImportError("fastapi is broken")
        return _no_content

    lazy = LazyApp(build)
    first = await _get(lazy, "/v1/clusters")
    assert first.status_code == 500
    assert first.json() == {
        "error": "internal_error",
        "detail": "the JSON API failed to load: ImportError",
    }
    assert not lazy.loaded
    assert (await _get(lazy, "/v1/clusters")).status_code == 204 and attempts == [1, 1]
