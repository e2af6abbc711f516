"""Registration, heartbeat and route load against name-server pods while Redis fails, and the
bookkeeping that tells what a failure cost: the window of refused writes, acknowledged writes
lost, route failures, heartbeating brokers removed, and how fast a dead broker is found.

Used by tests/test_ha_*.py (which assert on it) and by ``scripts/ha_windows.py`` (which
prints it for docs/ha.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.sim.broker import SimBroker

CLUSTER = "HaCluster"


def _addr(pod: str) -> tuple[str, int]:
    host, _, port = pod.rpartition(":")
    return host, int(port)


@dataclass
class Report:
    """What one scenario cost; times are seconds relative to ``t0`` (the failure)."""

    acked: list[str] = field(default_factory=list)
    """Probe topics whose one-shot registration was answered success."""
    acked_at: dict[str, tuple[float, int]] = field(default_factory=dict)
    """Probe topic -> (when it was acknowledged, index of the pod that did)."""
    refused_heartbeats: list[tuple[float, str]] = field(default_factory=list)
    """(when, broker) of heartbeats answered with an error (or not at all)."""
    refused: list[float] = field(default_factory=list)
    """When a registration or heartbeat was answered with an error (or not at all)."""
    route_ok: int = 0
    route_failures: list[tuple[float, int]] = field(default_factory=list)
    """(when, response code; -1 = no answer)."""
    lost: list[str] = field(default_factory=list)
    """Acknowledged probe topics missing at the end."""
    removed_heartbeating: list[str] = field(default_factory=list)
    """Brokers that kept heartbeating but were missing at the end."""
    detection_ms: float | None = None
    """How long after its deadline a silenced broker left the routes."""

    def refused_window(self) -> tuple[float, float] | None:
        return (min(self.refused), max(self.refused)) if self.refused else None

    def summary(self) -> dict[str, Any]:
        window = self.refused_window()
        return {
            "acknowledged registrations": len(self.acked),
            "lost acknowledged registrations": len(self.lost),
            "refused writes": len(self.refused),
            "refused window s": None if window is None else [round(w, 2) for w in window],
            "route answers": self.route_ok,
            "route failures": len(self.route_failures),
            "heartbeating brokers removed": len(self.removed_heartbeating),
            "detection ms": None if self.detection_ms is None else round(self.detection_ms),
            # what a loss needs to be understood: when and where the lost ones were acked
            "lost acknowledged at (s, pod)": [self.acked_at.get(t) for t in self.lost],
            "refused heartbeats (s, broker)": [
                (round(w, 2), b) for w, b in self.refused_heartbeats
            ][:20],
        }


class HaLoad:
    """``brokers`` heartbeating brokers, a stream of one-shot probe registrations, and route
    readers, spread over ``pods`` (``host:port`` remoting addresses)."""

    def __init__(
        self,
        pods: list[str],
        *,
        brokers: int = 10,
        timeout_ms: int = 4000,
        heartbeat_s: float = 0.5,
        probe_interval_s: float = 0.1,
        route_interval_s: float = 0.01,
    ) -> None:
        self.pods = pods
        self.n_brokers = brokers
        self.timeout_ms = timeout_ms
        self.heartbeat_s = heartbeat_s
        self.probe_interval_s = probe_interval_s
        self.route_interval_s = route_interval_s
        self.report = Report()
        self.t0 = time.monotonic()
        self._brokers: list[tuple[SimBroker, RemotingClient]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._clients: list[RemotingClient] = []
        self._probe_ids = itertools.count()
        self._route_topics: list[str] = []
        self._stopping = False

    def now(self) -> float:
        return time.monotonic() - self.t0

    def mark(self) -> None:
        """The failure happens now: report times are relative to this."""
        self.t0 = time.monotonic()

    async def _client(self, i: int) -> RemotingClient:
        client = await asyncio.wait_for(
            RemotingClient.connect(*_addr(self.pods[i % len(self.pods)])), 3.0
        )
        self._clients.append(client)
        return client

    async def start(self) -> None:
        for i in range(self.n_brokers):
            b = SimBroker(
                CLUSTER, f"hb-{i}", f"10.1.0.{i}:10911", heartbeat_timeout_ms=self.timeout_ms
            )
            b.add_topics([f"HbTopic{i}", f"HbTopic{i}b"])
            client = await self._client(i)
            resp = await b.register(client)
            assert resp.code == 0, resp.remark
            self._brokers.append((b, client))
            self._route_topics.append(f"HbTopic{i}")
            self._heartbeat(b, client)
        self._tasks += [
            asyncio.create_task(self._probes()),
            *(asyncio.create_task(self._routes(i)) for i in range(len(self.pods))),
        ]

    async def stop(self) -> None:
        """Stop every load task. A loop also checks ``_stopping``, and cancellation is
        repeated: Python 3.11's wait_for can swallow a cancel that races a reply."""
        self._stopping = True
        for _ in range(100):
            pending = [t for t in self._tasks if not t.done()]
            if not pending:
                break
            for t in pending:
                t.cancel()
            await asyncio.wait(pending, timeout=0.2)
        self._tasks = []

    async def close(self) -> None:
        await self.stop()
        for c in self._clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.close(), 2.0)

    async def _request(self, client: RemotingClient, code: int, ext: dict[str, str]) -> int:
        try:
            resp = await client.request(code, ext, timeout=3.0)
        except (TimeoutError, ConnectionError, OSError):
            return -1
        return -1 if resp is None else resp.code

    def _heartbeat(self, b: SimBroker, client: RemotingClient) -> None:
        """Every broker heartbeats on its own schedule, as RocketMQ 5 brokers do."""

        async def beat() -> None:
            while not self._stopping:
                await asyncio.sleep(self.heartbeat_s)
                code = await self._request(
                    client,
                    RequestCode.BROKER_HEARTBEAT,
                    {"clusterName": b.cluster, "brokerAddr": b.addr, "brokerName": b.name},
                )
                if code != 0:
                    self.report.refused.append(self.now())
                    self.report.refused_heartbeats.append((self.now(), b.name))

        self._tasks.append(asyncio.create_task(beat()))

    async def _probes(self) -> None:
        """One-shot registrations: each probe registers once, then only heartbeats."""
        i = 0
        while not self._stopping:
            n = next(self._probe_ids)
            b = SimBroker(
                CLUSTER,
                f"probe-{n}",
                f"10.2.{n // 250}.{n % 250}:10911",
                heartbeat_timeout_ms=self.timeout_ms,
            )
            b.add_topics([f"Probe{n}", f"Probe{n}b"])
            client = await self._client(i)
            i += 1
            try:
                resp = await b.register(client, timeout=3.0)
                code = resp.code
            except (TimeoutError, ConnectionError, OSError):
                code = -1
            if code == 0:
                self.report.acked.append(f"Probe{n}")
                self.report.acked_at[f"Probe{n}"] = (round(self.now(), 2), (i - 1) % len(self.pods))
                self._brokers.append((b, client))
                self._heartbeat(b, client)
            else:
                self.report.refused.append(self.now())
            await asyncio.sleep(self.probe_interval_s)

    async def _routes(self, pod: int) -> None:
        client = await self._client(pod)
        while not self._stopping:
            topic = random.choice(self._route_topics)
            code = await self._request(client, RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
            if code == 0:
                self.report.route_ok += 1
            else:
                self.report.route_failures.append((self.now(), code))
            await asyncio.sleep(self.route_interval_s)

    async def verify(self, pod: str) -> Report:
        """After the load stopped: which acknowledged probes and heartbeating brokers are gone
        (asked through ``pod``, whose cache is refreshed by then)."""
        client = await self._client(0)
        try:
            for topic in self.report.acked:
                code = await self._request(
                    client, RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic}
                )
                if code != 0:
                    self.report.lost.append(topic)
            for i in range(self.n_brokers):
                code = await self._request(
                    client, RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": f"HbTopic{i}"}
                )
                if code != 0:
                    self.report.removed_heartbeating.append(f"hb-{i}")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 2.0)
        return self.report

    async def measure_detection(self, timeout_ms: int = 2000, limit_s: float = 15.0) -> float:
        """Register a broker that then falls silent with its connection open, and measure how
        long after its deadline its route disappears (ms)."""
        b = SimBroker(CLUSTER, "silent", "10.3.0.1:10911", heartbeat_timeout_ms=timeout_ms)
        b.add_topics(["SilentTopic", "SilentTopicB"])
        client = await self._client(0)
        reader = await self._client(1)
        for _ in range(20):
            try:
                resp = await b.register(client, timeout=3.0)
            except (TimeoutError, ConnectionError, OSError):
                await asyncio.sleep(0.2)
                continue
            if resp.code == 0:
                break
            await asyncio.sleep(0.2)
        deadline = time.monotonic() + timeout_ms / 1000
        give_up = deadline + limit_s
        while time.monotonic() < give_up:
            code = await self._request(
                reader, RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "SilentTopic"}
            )
            if code == 17:
                detected = (time.monotonic() - deadline) * 1000
                self.report.detection_ms = detected
                return detected
            await asyncio.sleep(0.02)
        raise AssertionError(f"the silent broker was not removed within {limit_s}s of its deadline")


# ------------------------------------------------------------------ one failure, end to end

SWEEP_MS = 10_000
"""The pods' sweeper interval in these scenarios: a detection under a second is therefore an
expiry notification, not a sweep."""
POD_ENV = {"NAMESRV_SCAN_NOT_ACTIVE_BROKER_INTERVAL": str(SWEEP_MS)}


def running_pods(url: str, namespace: str, count: int = 2) -> Iterator[list[Any]]:
    """A pytest fixture's body: ``count`` ``serve`` pods on ``url``, stopped afterwards."""
    from tests.serverproc import NamesrvProcess

    started = [NamesrvProcess(url, namespace, env=POD_ENV).start() for _ in range(count)]
    try:
        yield started
    finally:
        for p in started:
            p.stop()


async def run_failure(
    pods: list[Any],
    fail: Callable[[], None],
    *,
    brokers: int = 10,
    timeout_ms: int = 4000,
    warmup_s: float = 2.0,
    settle_s: float = 8.0,
) -> HaLoad:
    """Load the pods, call ``fail`` (in a thread) at t=0, keep loading for ``settle_s``, then
    verify what survived and measure detection. Close the returned load when done."""
    load = HaLoad([p.addr for p in pods], brokers=brokers, timeout_ms=timeout_ms)
    await load.start()
    await asyncio.sleep(warmup_s)
    load.mark()
    await asyncio.to_thread(fail)
    await asyncio.sleep(settle_s)
    await load.stop()
    await asyncio.sleep(1.5)  # every pod's cache has seen the last events
    await load.verify(pods[0].addr)
    await load.measure_detection()
    return load


def assert_nothing_lost(load: HaLoad, pods: list[Any], detection_limit_ms: float = 1500) -> None:
    report = load.report
    print(f"\n{report.summary()}")
    assert report.acked, "no registration was acknowledged at all"
    assert report.lost == [], f"acknowledged registrations lost: {report.lost}"
    assert report.removed_heartbeating == [], report.removed_heartbeating
    assert not report.route_failures, f"route failures (s, code): {report.route_failures}"
    assert report.detection_ms is not None and report.detection_ms < detection_limit_ms, (
        f"dead broker found {report.detection_ms} ms after its deadline"
    )
    for p in pods:
        assert "Traceback" not in p.log_path.read_text()
        # route events, the expiry subscription and notifications all came back
        with urllib.request.urlopen(f"http://127.0.0.1:{p.http_port}/readyz", timeout=5) as r:
            ready = json.loads(r.read())
        assert ready == {"status": "ready"}, ready
