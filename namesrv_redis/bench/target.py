"""The name server a bench run measures, and the clients that fill and ask it: start a pod
(or target one), register simulated brokers over the wire, fill its route cache, ask every
route, measure registration latency and memory. Used by every ``bench`` suite."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import redis

from namesrv_redis.bench.children import stop_process
from namesrv_redis.bench.loadgen import LoadSpec, merge, run_route_load
from namesrv_redis.bench.stats import ProcessTree, redis_used_memory, summarize_us
from namesrv_redis.http.probes import HEALTHZ, METRICS, READYZ
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.sim.broker import SimBroker


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def start_server(
    redis_url: str,
    namespace: str,
    *,
    workers: int,
    cache: bool,
    pin: bool,
    log_file: Any = None,
    env_extra: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """A ``serve`` process on free ports (its stderr to ``log_file`` when given)."""
    port, http_port = free_port(), free_port()
    env = {**os.environ, "NAMESRV_LOG_LEVEL": "WARNING", **(env_extra or {})}
    if not cache:
        env["NAMESRV_ROUTE_CACHE_MAX_AGE_MS"] = "0"
    cmd = [
        sys.executable,
        "-m",
        "namesrv_redis.cli",
        "serve",
        "--redis-url",
        redis_url,
        "--namespace",
        namespace,
        "--listen-host",
        "127.0.0.1",
        "--listen-port",
        str(port),
        "--http-host",
        "127.0.0.1",
        "--http-port",
        str(http_port),
        "--workers",
        str(workers),
    ]
    if pin:
        cmd = ["taskset", "-c", "1", *cmd]
    proc = subprocess.Popen(cmd, env=env, stderr=log_file)
    try:
        deadline = time.monotonic() + 30
        import socket

        while time.monotonic() < deadline:
            try:
                with (
                    socket.create_connection(("127.0.0.1", port), 0.2),
                    socket.create_connection(("127.0.0.1", http_port), 0.2),
                ):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("name server did not start")
        yield {"host": "127.0.0.1", "port": port, "http_port": http_port, "pid": proc.pid}
    finally:
        stop_process(proc)


async def register_all(host: str, port: int, sims: list[SimBroker]) -> list[RemotingClient]:
    """Register each simulated broker over its own connection (kept open: closing it
    removes the broker)."""
    clients = []
    for sim in sims:
        client = await RemotingClient.connect(host, port)
        clients.append(client)
        resp = await sim.register(client, timeout=120)
        if resp.code != 0:
            raise RuntimeError(f"registration failed: {resp.code} {resp.remark}")
    return clients


@contextlib.asynccontextmanager
async def registered(host: str, port: int, brokers: int, topics: int) -> AsyncIterator[list[str]]:
    """B brokers x K topics registered over the wire and kept alive (re-registered every 20 s)."""
    sims = []
    for b in range(brokers):
        sim = SimBroker("BenchCluster", f"bench-broker-{b}", f"127.0.0.1:{20000 + b}")
        sim.add_topics([f"bench-topic-{t}" for t in range(topics)])
        sims.append(sim)
    clients = await register_all(host, port, sims)

    async def keep_alive() -> None:
        while True:
            await asyncio.sleep(20)
            for sim, client in zip(sims, clients, strict=True):
                await sim.register(client, timeout=60)

    task = asyncio.create_task(keep_alive())
    try:
        yield [f"bench-topic-{t}" for t in range(topics)]
    finally:
        task.cancel()
        for c in clients:
            await c.close()


def route_load(
    args: argparse.Namespace,
    host: str,
    port: int,
    topics: list[str],
    protocol: str,
    server_pid: int | None,
    *,
    exclude: tuple[str, ...] = ("redis-server",),
) -> dict[str, Any]:
    """C connections x P in flight from ``args.procs`` generator processes; the server's CPU
    is its process tree's, less the processes named like ``exclude`` (its embedded Redis)."""
    per = max(1, args.connections // args.procs)
    specs = [
        LoadSpec(
            host,
            port,
            topics,
            per,
            args.pipeline,
            args.duration,
            args.warmup,
            protocol=protocol,
            seed=i,
            cpu=0 if args.pin else None,
        )
        for i in range(args.procs)
    ]
    tree = ProcessTree(server_pid, exclude) if server_pid else None
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.procs) as pool:
        pending = pool.map_async(run_route_load, specs)
        time.sleep(args.warmup + 0.3)
        cpu0 = tree.cpu_s() if tree else 0.0
        t0 = time.monotonic()
        time.sleep(max(0.0, args.duration - 0.6))
        cpu1 = tree.cpu_s() if tree else 0.0
        window = time.monotonic() - t0
        results = pending.get(args.warmup + args.duration + 60)
    merged = merge(results)
    rps = merged.ok / merged.window_s if merged.window_s else 0.0
    out: dict[str, Any] = {
        "protocol": protocol,
        "throughput_rps": round(rps),
        "latency_us": summarize_us(merged.latencies_us),
        "errors": dict(merged.errors),
        "generator_cpu_us_per_req": round(merged.cpu_s / max(1, merged.ok) * 1e6, 1),
    }
    if tree:
        server_cpu = cpu1 - cpu0
        out["server_cpu_us_per_req"] = round(server_cpu / max(1.0, rps * window) * 1e6, 1)
        out["server_rss_mib"] = round(tree.rss_mib(), 1)
    return out


async def registration_latency(host: str, port: int, size: int, reps: int = 10) -> dict[str, Any]:
    """REGISTER_BROKER round trips of one broker with ``size`` topics: the first, then pairs
    of a changed data version (one topic added) and the unchanged periodic re-registration.
    Bodies are encoded before the clock starts, as a broker has them ready."""
    client = await RemotingClient.connect(host, port)
    sim = SimBroker("RegCluster", f"reg-broker-{size}", f"127.0.0.1:{30000 + size % 1000}")
    sim.add_topics([f"reg-topic-{size}-{t}" for t in range(size)])
    timings: dict[str, list[int]] = {"first": [], "changed": [], "unchanged": []}

    async def timed(kind: str) -> None:
        ext, body = sim.register_request()
        t = time.perf_counter()
        resp = await client.request(
            RequestCode.REGISTER_BROKER, ext, body, version=sim.version, timeout=120
        )
        timings[kind].append(int((time.perf_counter() - t) * 1e6))
        if resp is None or resp.code != 0:
            raise RuntimeError(f"registration failed: {resp}")

    await timed("first")
    for i in range(reps):
        sim.add_topics([f"reg-extra-{size}-{i}"])  # a topic created: data version bumped
        await timed("changed")
        await timed("unchanged")  # the periodic re-registration
    await sim.unregister(client)
    await client.close()
    return {"topics": size, **{k: summarize_us(v) for k, v in timings.items()}}


async def ask_every_route(
    host: str, port: int, topics: list[str], in_flight: int = 100
) -> dict[str, int]:
    """Ask for every topic's route once (so the pod caches them all), ``in_flight`` at a
    time; returns how many answers had each response code (or each error's type name)."""
    client = await RemotingClient.connect(host, port)
    codes: Counter[str] = Counter()
    try:
        for i in range(0, len(topics), in_flight):
            answers = await asyncio.gather(
                *(
                    client.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": t}, timeout=60)
                    for t in topics[i : i + in_flight]
                ),
                return_exceptions=True,
            )
            for a in answers:
                if isinstance(a, BaseException) or a is None:
                    codes[type(a).__name__] += 1
                else:
                    codes[str(a.code)] += 1
    finally:
        await client.close()
    return dict(codes)


async def cache_all(host: str, port: int, topics: list[str], in_flight: int = 100) -> None:
    """:func:`ask_every_route`, failing unless every answer was a route."""
    codes = await ask_every_route(host, port, topics, in_flight)
    if set(codes) - {"0"}:
        raise RuntimeError(f"a route query failed while filling the cache: {codes}")


PROBE_PATHS = (HEALTHZ, READYZ, METRICS)
"""What a Kubernetes kubelet and a Prometheus server ask every pod."""


def http_get_all(host: str, port: int, paths: tuple[str, ...]) -> None:
    """GET each path once, failing unless it answers 200."""
    for path in paths:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=30) as resp:
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {resp.status}")
            resp.read()


def memory_footprint(args: argparse.Namespace, redis_url: str, size: int) -> dict[str, Any]:
    """A fresh pod; ``size`` distinct topics registered over the wire by 10 brokers
    (size/10 each), every route cached and the probes and metrics asked once: pod RSS and Redis
    memory, before and after; then the pod's RSS once its JSON API answered a request."""
    brokers = 10
    per = max(1, size // brokers)
    client = redis.Redis.from_url(redis_url)
    namespace = f"bench-mem-{size}-{os.getpid()}"
    with start_server(redis_url, namespace, workers=args.workers, cache=True, pin=args.pin) as srv:
        tree = ProcessTree(srv["pid"])
        rss_idle = tree.rss_mib()
        redis_before = redis_used_memory(client.info("memory"))

        out: dict[str, Any] = {"topics": brokers * per, "server_rss_idle_mib": round(rss_idle, 1)}

        async def fill() -> None:
            sims = []
            for b in range(brokers):
                sim = SimBroker("MemCluster", f"mem-broker-{b}", f"127.0.0.1:{21000 + b}")
                sim.add_topics([f"mem-topic-{b}-{t}" for t in range(per)])
                sims.append(sim)
            clients = await register_all(srv["host"], srv["port"], sims)
            await cache_all(
                srv["host"],
                srv["port"],
                [f"mem-topic-{b}-{t}" for b in range(brokers) for t in range(per)],
            )
            await asyncio.to_thread(http_get_all, srv["host"], srv["http_port"], PROBE_PATHS)
            out["server_rss_mib"] = round(tree.rss_mib(), 1)
            # the first request the JSON API answers loads it (http/lazy_app.py)
            await asyncio.to_thread(http_get_all, srv["host"], srv["http_port"], ("/v1/clusters",))
            out["server_rss_json_api_mib"] = round(tree.rss_mib(), 1)
            out["redis_used_memory_mib"] = round(
                (redis_used_memory(client.info("memory")) - redis_before) / 2**20, 1
            )
            for c in clients:  # closing the connections removes the brokers
                await c.close()

        asyncio.run(fill())
    client.close()
    entries = brokers * per
    out["server_bytes_per_topic"] = round((out["server_rss_mib"] - rss_idle) * 2**20 / entries)
    out["redis_bytes_per_topic_broker"] = round(out["redis_used_memory_mib"] * 2**20 / entries)
    return out
