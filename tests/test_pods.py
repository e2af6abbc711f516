"""Several name-server pods (separate processes) sharing one Redis: a pod killed with SIGKILL
loses nothing, brokers that move to another pod stay registered, a dead broker is removed
exactly once, and pods ride out a Redis restart without being restarted themselves."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.sim.broker import SimBroker
from tests.conftest import RedisServerProcess
from tests.serverproc import NamesrvProcess

pytestmark = pytest.mark.slow

FAST_LIVENESS = {"NAMESRV_SCAN_NOT_ACTIVE_BROKER_INTERVAL": "300"}
HEARTBEAT_TIMEOUT_MS = 2000


class Broker:
    """A simulated broker that re-registers every 0.4 s through its current pod."""

    def __init__(self, i: int, pod: NamesrvProcess) -> None:
        self.sim = SimBroker(
            "PodCluster",
            f"broker-{i}",
            f"127.0.0.1:{31000 + i}",
            heartbeat_timeout_ms=HEARTBEAT_TIMEOUT_MS,
        )
        self.sim.add_topics([f"Topic-{i}", "Shared"])
        self.pod = pod
        self.client: RemotingClient | None = None
        self.alive = True
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while self.alive:
            try:
                if self.client is None or self.client.closed.done():
                    self.client = await RemotingClient.connect("127.0.0.1", self.pod.port)
                await self.sim.register(self.client, timeout=2)
            except (TimeoutError, OSError, ConnectionError):
                self.client = None
            await asyncio.sleep(0.4)

    def start(self) -> None:
        self.task = asyncio.create_task(self.run())

    async def stop(self, close: bool = True) -> None:
        self.alive = False
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if close and self.client is not None:
            await self.client.close()


async def route_code(pod: NamesrvProcess, topic: str) -> int:
    c = await RemotingClient.connect("127.0.0.1", pod.port)
    try:
        resp = await c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
        assert resp is not None
        return resp.code
    finally:
        await c.close()


async def removals(pod: NamesrvProcess, reason: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{pod.http_port}/metrics")).text
    for family in text_string_to_metric_families(text):
        if family.name == "namesrv_broker_removals":
            return sum(
                s.value
                for s in family.samples
                if s.name.endswith("_total") and s.labels.get("reason") == reason
            )
    return 0.0


async def wait_for(check: Any, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {within_s}s")


@pytest.fixture
async def three_pods(
    redis_server: RedisServerProcess, namespace: str
) -> AsyncIterator[list[NamesrvProcess]]:
    pods = [
        NamesrvProcess(redis_server.url, namespace, env=FAST_LIVENESS).start() for _ in range(3)
    ]
    yield pods
    for p in pods:
        p.stop()


async def test_sigkilled_pod_loses_nothing(three_pods: list[NamesrvProcess]) -> None:
    pods = three_pods
    brokers = [Broker(i, pods[i % 3]) for i in range(6)]
    for b in brokers:
        b.start()
    await wait_for(lambda: _all_routes(pods, 6, 0), 10)

    pods[0].kill()
    for b in brokers:  # brokers of the dead pod reconnect through the others
        if b.pod is pods[0]:
            b.pod = pods[1]
            b.client = None
    # every route stays served by the surviving pods, past several heartbeat timeouts
    end = time.monotonic() + 2.5 * HEARTBEAT_TIMEOUT_MS / 1000
    while time.monotonic() < end:
        for i in range(6):
            for p in pods[1:]:
                assert await route_code(p, f"Topic-{i}") == 0
        await asyncio.sleep(0.2)

    # one broker dies: it is removed exactly once, by whichever pod saw it first
    before = sum([await removals(p, "expired") for p in pods[1:]])
    await brokers[5].stop(close=False)
    await wait_for(lambda: _gone(pods[1], "Topic-5"), HEARTBEAT_TIMEOUT_MS / 1000 + 3)
    await asyncio.sleep(1.0)  # let any late duplicate removal happen
    after = sum([await removals(p, "expired") for p in pods[1:]])
    assert after - before == 1
    for i in range(5):
        assert await route_code(pods[2], f"Topic-{i}") == 0
    for b in brokers[:5]:
        await b.stop()


async def _all_routes(pods: list[NamesrvProcess], n: int, code: int) -> bool:
    for p in pods:
        for i in range(n):
            if await route_code(p, f"Topic-{i}") != code:
                return False
    return True


async def _gone(pod: NamesrvProcess, topic: str) -> bool:
    return await route_code(pod, topic) == 17


async def test_pods_ride_out_a_redis_restart(namespace: str) -> None:
    server = RedisServerProcess().start()
    pod = NamesrvProcess(server.url, namespace, env=FAST_LIVENESS).start()
    brokers = [Broker(i, pod) for i in range(3)]
    try:
        for b in brokers:
            b.start()
        await wait_for(lambda: _all_routes([pod], 3, 0), 10)
        port = server.port
        server.stop()  # everything in Redis is lost (no persistence)
        await asyncio.sleep(1.0)
        restarted = RedisServerProcess()
        restarted.port = port
        server = restarted.start()
        # brokers' next registrations restore the tables; the pod needed no restart
        await wait_for(lambda: _all_routes([pod], 3, 0), 15)
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                ready = await http.get(f"http://127.0.0.1:{pod.http_port}/readyz")
                if ready.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert ready.status_code == 200, ready.text
        assert pod.proc is not None and pod.proc.poll() is None
    finally:
        for b in brokers:
            await b.stop()
        pod.stop()
        server.stop()


async def test_two_workers_share_the_ports(
    redis_server: RedisServerProcess, namespace: str
) -> None:
    import psutil

    pod = NamesrvProcess(redis_server.url, namespace, "--workers", "2").start()
    try:
        assert pod.proc is not None
        for _ in range(100):
            workers = [
                c
                for c in psutil.Process(pod.proc.pid).children()
                if "spawn_main" in " ".join(c.cmdline())
            ]
            if len(workers) == 2:
                break
            await asyncio.sleep(0.1)
        assert len(workers) == 2
        broker = Broker(0, pod)
        broker.start()
        await wait_for(lambda: _all_routes([pod], 1, 0), 10)
        # new connections land on either worker; every one answers the same route
        for _ in range(20):
            assert await route_code(pod, "Topic-0") == 0
        async with httpx.AsyncClient() as http:
            for _ in range(10):
                assert (
                    await http.get(f"http://127.0.0.1:{pod.http_port}/v1/routes/Topic-0")
                ).status_code == 200
        await broker.stop()
    finally:
        pod.stop()
    assert pod.proc.returncode == 0
    assert all(not w.is_running() or w.status() == psutil.STATUS_ZOMBIE for w in workers)
