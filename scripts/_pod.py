"""Shared scaffolding of the attack load test and the soak: a real redis-server, a real
``namesrv-redis serve`` process, an RSS sampler of that process, and an observer process
whose clients (route queries, a broker's heartbeats and registrations) measure what other
clients see while the pod is under load. The observer runs in its own process so that the
load generator's own work never shows up as the pod's latency."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import random
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from namesrv_redis.bench.stats import percentile
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.sim.broker import SimBroker
from tests.conftest import RedisServerProcess
from tests.serverproc import NamesrvProcess

MIB = 1024 * 1024


@dataclass
class PodUnderTest:
    redis: RedisServerProcess
    pod: NamesrvProcess

    @classmethod
    def start(cls, *extra: str, env: dict[str, str] | None = None) -> PodUnderTest:
        redis = RedisServerProcess().start()
        pod = NamesrvProcess(redis.url, "bench", *extra, env=env).start()
        return cls(redis, pod)

    @property
    def port(self) -> int:
        return self.pod.port

    @property
    def pid(self) -> int:
        assert self.pod.proc is not None
        return self.pod.proc.pid

    def stop(self) -> None:
        self.pod.stop()
        self.redis.stop()


def run_against_pod(
    run: Callable[[argparse.Namespace, PodUnderTest], Awaitable[int]], args: argparse.Namespace
) -> int:
    """``run(args, pod)`` against a fresh redis-server and pod, both stopped afterwards; its
    exit status."""
    put = PodUnderTest.start()
    try:
        return asyncio.run(run(args, put))
    finally:
        put.stop()


class RssSampler:
    """Samples a process's RSS every ``interval_s`` on a thread: ``peak(t0, t1)``."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self.proc = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), self.proc.memory_info().rss))
            except psutil.Error:
                return
            self._stop.wait(self.interval_s)

    def now(self) -> int:
        return int(self.proc.memory_info().rss)

    def peak(self, t0: float, t1: float) -> int:
        inside = [rss for t, rss in self.samples if t0 <= t <= t1]
        return max(inside) if inside else self.now()


# ------------------------------------------------------------------ the observer


@dataclass
class Samples:
    """(wall time, latency µs, response code) per request kind; code -1 = timed out."""

    by_kind: dict[str, list[tuple[float, int, int]]] = field(default_factory=dict)

    def add(self, kind: str, t: float, us: int, code: int) -> None:
        self.by_kind.setdefault(kind, []).append((t, us, code))

    def window(self, kind: str, t0: float, t1: float) -> list[tuple[float, int, int]]:
        return [s for s in self.by_kind.get(kind, []) if t0 <= s[0] <= t1]

    def stats(self, kind: str, t0: float, t1: float) -> dict[str, float]:
        inside = self.window(kind, t0, t1)
        lat = sorted(us for _, us, _ in inside)
        return {
            "count": len(lat),
            "p50_ms": percentile(lat, 50) / 1000,
            "p99_ms": percentile(lat, 99) / 1000,
            "max_ms": (lat[-1] / 1000) if lat else 0.0,
            "busy": sum(1 for _, _, c in inside if c == 2),
            "failed": sum(1 for _, _, c in inside if c not in (0, 2)),
        }


async def _timed(
    samples: Samples, kind: str, client: RemotingClient, code: int, ext: dict[str, str], **kw: Any
) -> None:
    t = time.time()
    started = time.perf_counter()
    try:
        resp = await client.request(code, ext, timeout=5.0, **kw)
        rc = resp.code if resp is not None else -1
    except (TimeoutError, ConnectionError):
        rc = -1
    samples.add(kind, t, int((time.perf_counter() - started) * 1e6), rc)


async def _observe(port: int, topics: list[str], pipe: Connection) -> Samples:
    samples = Samples()
    stop = asyncio.Event()
    rnd = random.Random(1)

    async def routes() -> None:
        c = await RemotingClient.connect("127.0.0.1", port)
        while not stop.is_set():
            await _timed(
                samples,
                "route",
                c,
                RequestCode.GET_ROUTEINFO_BY_TOPIC,
                {"topic": rnd.choice(topics)},
                version=409,
            )
            await asyncio.sleep(0.002)

    async def broker() -> None:
        c = await RemotingClient.connect("127.0.0.1", port)
        b = SimBroker(cluster="ObserverCluster", name="observer-broker", addr="127.0.0.2:10911")
        b.add_topics([f"ObserverTopic{i}" for i in range(8)])
        ticks = 0
        while not stop.is_set():
            if ticks % 10 == 0:
                ext, body = b.register_request()
                t, started = time.time(), time.perf_counter()
                try:
                    resp = await c.request(
                        RequestCode.REGISTER_BROKER, ext, body, version=b.version, timeout=5.0
                    )
                    rc = resp.code if resp is not None else -1
                except (TimeoutError, ConnectionError):
                    rc = -1
                samples.add("register", t, int((time.perf_counter() - started) * 1e6), rc)
            else:
                await _timed(
                    samples,
                    "heartbeat",
                    c,
                    RequestCode.QUERY_DATA_VERSION,
                    {
                        "clusterName": b.cluster,
                        "brokerAddr": b.addr,
                        "brokerName": b.name,
                        "brokerId": "0",
                    },
                )
            ticks += 1
            await asyncio.sleep(0.05)

    async def watch() -> None:
        while not pipe.poll():
            await asyncio.sleep(0.05)
        pipe.recv()
        stop.set()

    async def lag() -> None:
        """The observer's own loop stalls (the machine's, not the pod's)."""
        while not stop.is_set():
            t, started = time.time(), time.perf_counter()
            await asyncio.sleep(0.01)
            samples.add("lag", t, int((time.perf_counter() - started - 0.01) * 1e6), 0)

    tasks = [asyncio.create_task(routes()) for _ in range(2)]
    tasks.append(asyncio.create_task(lag()))
    tasks.append(asyncio.create_task(broker()))
    await watch()
    await asyncio.gather(*tasks, return_exceptions=True)
    return samples


def _observer_main(port: int, topics: list[str], pipe: Connection) -> None:
    samples = asyncio.run(_observe(port, topics, pipe))
    pipe.send(samples.by_kind)


class Observer:
    """Other clients of the pod, in a process of their own."""

    def __init__(self, port: int, topics: list[str]) -> None:
        ctx = mp.get_context("spawn")
        self._pipe, child = ctx.Pipe()
        self._proc = ctx.Process(target=_observer_main, args=(port, topics, child), daemon=True)

    def __enter__(self) -> Observer:
        self._proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc.is_alive():
            self._proc.kill()

    def stop(self) -> Samples:
        self._pipe.send("stop")
        by_kind = self._pipe.recv()
        self._proc.join(10)
        return Samples(by_kind)


def mib(n: float) -> str:
    return f"{n / MIB:.0f} MiB"
