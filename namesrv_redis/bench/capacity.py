"""``namesrv-redis bench capacity``: large estates against N pods sharing one Redis.

One *scenario* is an :class:`~namesrv_redis.bench.estate.Estate` (brokers, topics, spread),
a number of client connections and a number of pods. It runs, on one timeline that every
process shares:

0. **costs**: on quiet pods, the pod CPU and Redis CPU of one changed registration, one
   unchanged registration and one heartbeat (:mod:`namesrv_redis.bench.op_costs`).
1. **fill**: Redis and the pods start, every broker registers once with every pod; pod 0 is
   asked for every topic's route (all cached) and its RSS read; the namespace's Redis memory
   is read key by key.
2. **steady**: brokers re-register on the compressed schedule, clients poll their routes;
   registration and route latencies, pod and Redis CPU, Redis' per-command cost.
3. **load**: closed-loop route load on top (remoting, spread over the pods), then the same
   over HTTP: throughput, latency and server CPU per answer.
4. **storm**: every broker re-registers within ``storm_spread_s`` with a new data version.
5. **rack failure**: ``dying`` brokers go silent; how long until every pod's routes stop
   naming them, and whether any pod's event stream falls behind.

The analysis lives in :mod:`namesrv_redis.bench.capacity_report`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import platform
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import redis

from namesrv_redis.bench.capacity_report import (
    analyse,
    print_scenario,
    print_summary,
)
from namesrv_redis.bench.children import expect, reap
from namesrv_redis.bench.clients import ClientSpec, RouteAnswers, clients_process
from namesrv_redis.bench.estate import Estate
from namesrv_redis.bench.fleet import Plan, Registrations, fleet_process
from namesrv_redis.bench.loadgen import LoadSpec, merge, run_route_load
from namesrv_redis.bench.op_costs import CostSpec, format_costs, measure_costs
from namesrv_redis.bench.redis_stats import RedisSnapshot, namespace_memory, split_memory
from namesrv_redis.bench.stats import ProcessTree
from namesrv_redis.bench.target import ask_every_route, free_port, start_server
from namesrv_redis.store.embedded import EmbeddedRedis
from namesrv_redis.store.keys import Keys

PROFILES: dict[str, dict[str, int]] = {
    "brokers": {"brokers": 1000, "topics_per_broker": 100, "spread": 4, "clients": 256},
    "topics": {"brokers": 10, "topics_per_broker": 10_000, "spread": 1, "clients": 256},
    "clients": {"brokers": 100, "topics_per_broker": 100, "spread": 4, "clients": 1024},
}
"""The estates of rocketmq-rust's capacity profiles: 1,000 brokers; 100,000 topics;
1,024 client connections."""
QUICK = {"brokers": 200, "topics_per_broker": 50, "spread": 4, "clients": 128}
IDLE_S = 2.0
SWEEP_S = 5.0
"""The pods' sweeper period (scanNotActiveBrokerInterval): the backstop of expiry events."""


@dataclass(frozen=True)
class Options:
    """One run's settings, from the command line (its defaults are in
    :func:`~namesrv_redis.bench.options.add_capacity_options`, the one place they live)."""

    interval_s: float
    topics_per_client: int
    steady_s: float
    load_s: float
    load_connections: int
    pipeline: int
    generator_procs: int
    storm_spread_s: float
    dying: int
    change_probability: float
    heartbeat_interval_s: float
    workers: int
    http: bool
    redis_url: str | None
    cost_brokers: int
    cost_topics: int
    cost_rounds: int
    cost_paced_rate: float
    cost_paced_seconds: float
    costs_only: bool


@dataclass(frozen=True)
class Scenario:
    name: str
    estate: Estate
    clients: int
    pods: int


def _remoting_answers(http_port: int) -> float:
    """Remoting requests a pod has answered (its /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("namesrv_requests_total{")
    )


@dataclass
class _Mark:
    """Counters at one moment of the timeline."""

    t: float
    pod_cpu: list[float]
    pod_answers: list[float]
    redis: RedisSnapshot


def _mark(trees: list[ProcessTree], pods: list[dict[str, Any]], client: Any) -> _Mark:
    return _Mark(
        time.monotonic(),
        [t.cpu_s() for t in trees],
        [_remoting_answers(p["http_port"]) for p in pods],
        RedisSnapshot.take(client),
    )


def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _route_load(
    pods: list[dict[str, Any]],
    topics: list[str],
    opts: Options,
    protocol: str,
    start_at: float,
    pool: Any,
) -> Any:
    """Closed-loop route load over every pod, measured in [start_at, start_at + load_s)."""
    ports = tuple(p["http_port" if protocol == "http" else "port"] for p in pods)
    per = max(len(pods), opts.load_connections // opts.generator_procs)
    specs = [
        LoadSpec(
            "127.0.0.1",
            ports[0],
            topics,
            per,
            opts.pipeline,
            opts.load_s,
            0.5,
            protocol=protocol,
            seed=i,
            ports=ports,
            start_at=start_at,
        )
        for i in range(opts.generator_procs)
    ]
    return pool.map_async(run_route_load, specs)


def run_scenario(sc: Scenario, opts: Options) -> dict[str, Any]:
    estate = sc.estate
    ctx = mp.get_context("spawn")
    namespace = f"cap-{sc.name}-{sc.pods}-{os.getpid()}"
    keys = Keys(namespace)
    print(
        f"\n== {sc.name}: {estate.brokers} brokers x {estate.topics_per_broker} topics "
        f"(spread {estate.spread}: {estate.topic_count} topics), {sc.clients} clients, "
        f"{sc.pods} pod(s); registration every {estate.interval_s:g} s "
        f"(RocketMQ's 30 s compressed {estate.compression:g}x), timeout {estate.timeout_ms} ms",
        flush=True,
    )
    with contextlib.ExitStack() as stack:
        redis_url = opts.redis_url
        if not redis_url:
            embedded = EmbeddedRedis(port=free_port())
            embedded.start_sync()
            stack.callback(embedded.stop_sync)
            redis_url = embedded.url
        client: Any = redis.Redis.from_url(redis_url)
        stack.callback(client.close)
        base_memory = RedisSnapshot.take(client).used_memory
        pods = [
            stack.enter_context(
                start_server(redis_url, namespace, workers=opts.workers, cache=True, pin=False)
            )
            for _ in range(sc.pods)
        ]
        trees = [ProcessTree(p["pid"]) for p in pods]
        addrs = [("127.0.0.1", int(p["port"])) for p in pods]
        out: dict[str, Any] = {
            "scenario": sc.name,
            "estate": asdict(estate),
            "topics": estate.topic_count,
            "clients": sc.clients,
            "pods": sc.pods,
            "pod_rss_idle_mib": [round(t.rss_mib(), 1) for t in trees],
        }

        # Redis' own background cost (its cron, the pods' polls), subtracted from the steady
        # window's CPU when it is divided among registrations
        idle0 = RedisSnapshot.take(client)
        pods_idle0 = [t.cpu_s() for t in trees]
        time.sleep(IDLE_S)
        idle1 = RedisSnapshot.take(client)
        pods_idle1 = [t.cpu_s() for t in trees]
        out["redis_idle_cpu_pct"] = round((idle1.cpu_s - idle0.cpu_s) / IDLE_S * 100, 2)
        out["pod_idle_cpu_pct"] = round(
            (sum(pods_idle1) - sum(pods_idle0)) / IDLE_S * 100 / len(trees), 2
        )

        # 0. what one broker operation costs, on quiet pods
        if opts.cost_rounds > 0:
            spec = CostSpec(
                addrs,
                brokers=opts.cost_brokers,
                topics=opts.cost_topics,
                rounds=opts.cost_rounds,
                paced_rate=opts.cost_paced_rate,
                paced_seconds=opts.cost_paced_seconds,
                timeout_ms=estate.timeout_ms,
            )
            out["op_costs"] = measure_costs(
                spec, trees, client, out["redis_idle_cpu_pct"], out["pod_idle_cpu_pct"]
            )
            print(format_costs(out["op_costs"]), flush=True)
            if opts.costs_only:
                return out

        # 1. fill
        fleet_procs = max(1, min(4, estate.brokers * sc.pods // 1500))
        fleets: list[tuple[Any, Connection]] = []
        for f in range(fleet_procs):
            parent, child = ctx.Pipe()
            indices = list(range(f, estate.brokers, fleet_procs))
            proc = ctx.Process(target=fleet_process, args=(estate, addrs, indices, child))
            proc.start()
            stack.callback(reap, proc)
            fleets.append((proc, parent))
        filled = [expect(c, "filled", 900) for _, c in fleets]
        out["fill"] = {
            "seconds": round(max(f[1]["seconds"] for f in filled), 2),
            "failed": sum(f[1]["failed"] for f in filled),
        }
        # every pod asked for every route once (in parallel), so that the load windows measure
        # warm caches; how long that takes is what a cold pod costs
        t = time.monotonic()
        out["cache_all_codes"] = asyncio.run(_ask_every_route_on(addrs, estate.all_topics()))
        out["cache_all_s"] = round(time.monotonic() - t, 2)
        out["pod0_rss_all_cached_mib"] = round(trees[0].rss_mib(), 1)
        snapshot = RedisSnapshot.take(client)
        out["redis_used_memory_mib"] = round((snapshot.used_memory - base_memory) / 2**20, 1)
        entries = estate.brokers * estate.topics_per_broker
        out["redis_keys"] = split_memory(namespace_memory(client, keys), entries, estate.brokers)
        out["redis_keys"]["used_memory_per_entry"] = round(
            (snapshot.used_memory - base_memory) / max(1, entries)
        )
        print(
            f"filled in {out['fill']['seconds']} s ({out['fill']['failed']} failed); "
            f"route answers while caching {out['cache_all_codes']}; every route cached on "
            f"every pod in {out['cache_all_s']} s: pod 0's RSS "
            f"{out['pod0_rss_all_cached_mib']} MiB; Redis {out['redis_used_memory_mib']} MiB",
            flush=True,
        )

        # 2-5. the timeline
        parent, child = ctx.Pipe()
        cproc = ctx.Process(
            target=clients_process,
            args=(
                estate,
                ClientSpec(
                    addrs,
                    [("127.0.0.1", int(p["http_port"])) for p in pods],
                    sc.clients,
                    opts.topics_per_client,
                    redis_url,
                    keys.version,
                ),
                child,
            ),
        )
        cproc.start()
        stack.callback(reap, cproc)
        expect(parent, "connected", 300)
        pool = stack.enter_context(ctx.Pool(opts.generator_procs))
        pool.map(_ready, range(opts.generator_procs))  # workers up before the clock starts

        base = time.monotonic() + 1.0
        steady = (base + estate.interval_s + 1.0, 0.0)
        steady = (steady[0], steady[0] + opts.steady_s)
        load = (steady[1] + 0.5, steady[1] + 0.5 + opts.load_s)
        http = (load[1] + 0.5, load[1] + 0.5 + opts.load_s) if opts.http else (load[1], load[1])
        storm_at = http[1] + 2.0
        death_at = storm_at + max(6.0, 2 * estate.interval_s)
        end_at = death_at + estate.timeout_ms / 1000 + SWEEP_S + 5.0
        dying = frozenset(estate.dying(min(opts.dying, estate.brokers // 5)))
        plan = Plan(
            base,
            storm_at,
            death_at,
            end_at,
            dying,
            opts.storm_spread_s,
            opts.change_probability,
            opts.heartbeat_interval_s,
        )
        for _, c in fleets:
            c.send(plan)
        parent.send(plan)
        windows = {
            "steady": steady,
            "load": load,
            "http": http,
            "storm": (storm_at, storm_at + opts.storm_spread_s + 4.0),
            "death": (death_at, end_at),
        }
        out["windows"] = {
            k: [round(a - base, 2), round(b - base, 2)] for k, (a, b) in windows.items()
        }
        marks: dict[str, tuple[_Mark, _Mark]] = {}
        topics = estate.all_topics()

        _sleep_until(steady[0])
        m0 = _mark(trees, pods, client)
        _sleep_until(steady[1] - 0.4)
        pending = _route_load(pods, topics, opts, "remoting", load[0], pool)
        _sleep_until(steady[1])
        m1 = _mark(trees, pods, client)
        marks["steady"] = (m0, m1)
        _sleep_until(load[0])
        m0 = _mark(trees, pods, client)
        _sleep_until(load[1])
        m1 = _mark(trees, pods, client)
        marks["load"] = (m0, m1)
        load_results = merge(pending.get(opts.load_s + 60))
        http_results = None
        if opts.http:
            pending = _route_load(pods, topics, opts, "http", http[0], pool)
            _sleep_until(http[0])
            m0 = _mark(trees, pods, client)
            _sleep_until(http[1])
            m1 = _mark(trees, pods, client)
            marks["http"] = (m0, m1)
            http_results = merge(pending.get(opts.load_s + 60))
        _sleep_until(windows["storm"][0])
        m0 = _mark(trees, pods, client)
        _sleep_until(windows["storm"][1])
        m1 = _mark(trees, pods, client)
        marks["storm"] = (m0, m1)
        _sleep_until(death_at)
        m0 = _mark(trees, pods, client)

        fleet_results = [expect(c, "result", end_at - time.monotonic() + 120) for _, c in fleets]
        client_result = expect(parent, "result", 120)
        m1 = _mark(trees, pods, client)
        marks["death"] = (m0, m1)
        out["pod_rss_end_mib"] = [round(t.rss_mib(), 1) for t in trees]
        regs = Registrations.from_dict(fleet_results[0][1])
        last_ack: dict[int, list[float]] = dict(fleet_results[0][2])
        for r in fleet_results[1:]:
            regs.extend(Registrations.from_dict(r[1]))
            last_ack.update(r[2])
        out["tables_after"] = _tables_after(redis_url, namespace, keys, estate, dying)
        for _, c in fleets:
            c.send("close")
        parent.send("close")
        out.update(
            analyse(
                base=base,
                windows=windows,
                marks={k: (_mark_dict(a), _mark_dict(b)) for k, (a, b) in marks.items()},
                registrations=regs,
                answers=RouteAnswers.from_dict(client_result[1]),
                detected=client_result[2],
                last_ack=last_ack,
                timeout_s=estate.timeout_ms / 1000,
                lag=client_result[3],
                load={"remoting": load_results, "http": http_results},
                redis_idle_cpu_pct=out["redis_idle_cpu_pct"],
            )
        )
    print_scenario(out)
    return out


def _tables_after(
    redis_url: str, namespace: str, keys: Keys, estate: Estate, dying: frozenset[int]
) -> dict[str, Any]:
    """Whether the tables are right once the run is over: the dead brokers gone (from the
    broker table and every route) and the namespace consistent (``namesrv-redis check``)."""
    import redis.asyncio as aioredis

    from namesrv_redis.store.check import check_namespace

    async def run() -> dict[str, Any]:
        client: Any = aioredis.Redis.from_url(redis_url)
        try:
            brokers = {k.decode() for k in await client.hkeys(keys.brokers)}
            dead = {estate.broker_name(b) for b in dying}
            problems = await check_namespace(client, namespace)
            return {
                "brokers": len(brokers),
                "brokers_expected": estate.brokers - len(dying),
                "dead_brokers_left": len(brokers & dead),
                "topics": int(await client.scard(keys.topics)),
                "consistency_problems": [str(p) for p in problems][:10],
            }
        finally:
            await client.aclose()

    return asyncio.run(run())


def _mark_dict(m: _Mark) -> dict[str, Any]:
    return {"t": m.t, "pod_cpu": m.pod_cpu, "pod_answers": m.pod_answers, "redis": m.redis}


async def _ask_every_route_on(pods: list[tuple[str, int]], topics: list[str]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for codes in await asyncio.gather(*(ask_every_route(h, p, topics) for h, p in pods)):
        total.update(codes)
    return dict(total)


def _ready(_: int) -> int:
    return os.getpid()


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    out: list[Scenario] = []

    def estate_of(sizes: dict[str, int]) -> tuple[Estate, int]:
        def pick(name: str) -> int:
            v = getattr(args, name, None)
            return int(v) if v is not None else sizes[name]

        return (
            Estate(
                pick("brokers"),
                pick("topics_per_broker"),
                pick("spread"),
                interval_s=args.interval,
            ),
            pick("clients"),
        )

    for name in _csv(args.profiles):
        if name not in PROFILES:
            raise SystemExit(f"unknown profile {name!r}: choose from {', '.join(PROFILES)}")
        estate, clients = estate_of(QUICK if args.quick else PROFILES[name])
        pods = [int(p) for p in _csv(args.scale_out)] if name == args.scale_profile else [1]
        out.extend(Scenario(name, estate, clients, n) for n in pods)
    return out


def run_capacity_bench(args: argparse.Namespace) -> int:
    opts = Options(
        interval_s=args.interval,
        topics_per_client=args.topics_per_client,
        steady_s=args.steady if not args.quick else min(args.steady, 5.0),
        load_s=args.load if not args.quick else min(args.load, 4.0),
        load_connections=args.load_connections,
        pipeline=args.pipeline,
        generator_procs=args.generator_procs,
        storm_spread_s=args.storm_spread,
        dying=args.dying,
        change_probability=args.change_probability,
        heartbeat_interval_s=args.heartbeat_interval,
        workers=args.workers,
        http=not args.no_http,
        redis_url=args.redis_url,
        cost_brokers=args.cost_brokers,
        cost_topics=args.cost_topics,
        cost_rounds=args.cost_rounds,
        cost_paced_rate=args.cost_paced_rate,
        cost_paced_seconds=args.cost_paced_seconds,
        costs_only=args.costs_only,
    )
    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "options": asdict(opts),
        "scenarios": [],
    }
    for sc in scenarios(args):
        result["scenarios"].append(run_scenario(sc, opts))
        if args.json:  # written after each scenario: a long run that stops keeps its numbers
            Path(args.json).write_text(json.dumps(result, indent=1))
    print_summary(result)
    if args.plots:
        from namesrv_redis.bench.capacity_plots import write_plots

        for p in write_plots(result, Path(args.plots)):
            print(f"wrote {p}")
    return 0
