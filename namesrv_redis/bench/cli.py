"""``namesrv-redis bench``: start (or target) a name server, register B brokers x K topics
over the wire, and measure route throughput and latency over remoting (with the pod cache,
and straight from Redis as the baseline, in the same run), over HTTP, registration latency
for 100 / 1,000 / 10,000 topics (first, changed, unchanged data version), and memory.
Prints a table per measurement and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
from typing import Any

from namesrv_redis.bench.options import ROUTE_LOAD_SETTINGS
from namesrv_redis.bench.target import (
    free_port,
    memory_footprint,
    registered,
    registration_latency,
    route_load,
    start_server,
)
from namesrv_redis.store.embedded import EmbeddedRedis


def _print_route(name: str, r: dict[str, Any]) -> None:
    lat = r["latency_us"]
    print(
        f"{name:<26}{r['throughput_rps']:>10}{lat['p50']:>9.0f}{lat['p90']:>9.0f}"
        f"{lat['p99']:>9.0f}{lat['p999']:>9.0f}{r.get('server_cpu_us_per_req', 0):>10}"
        f"{r['generator_cpu_us_per_req']:>10}{sum(r['errors'].values()):>7}"
    )


def run_bench(args: argparse.Namespace) -> int:
    if getattr(args, "bench_suite", None) == "persistence":
        from namesrv_redis.bench.persistence import run_persistence_bench

        return run_persistence_bench(args)
    if getattr(args, "bench_suite", None) == "capacity":
        from namesrv_redis.bench.capacity import run_capacity_bench

        return run_capacity_bench(args)
    if getattr(args, "bench_suite", None) == "ceiling":
        from namesrv_redis.bench.ceiling import run_ceiling_bench

        return run_ceiling_bench(args)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {k: getattr(args, k) for k in ROUTE_LOAD_SETTINGS},
    }
    embedded = None
    redis_url: str | None = None
    with contextlib.ExitStack() as stack:
        if args.target:
            host, port = args.target.rsplit(":", 1)
            servers = {
                "cached": {
                    "host": host,
                    "port": int(port),
                    "pid": None,
                    "http_port": int(args.http_target.rsplit(":", 1)[1])
                    if args.http_target
                    else None,
                }
            }
        else:
            redis_url = args.redis_url
            if not redis_url:
                embedded = EmbeddedRedis(port=free_port())
                embedded.start_sync()
                stack.callback(embedded.stop_sync)
                redis_url = embedded.url
            servers = {
                "cached": stack.enter_context(
                    start_server(redis_url, "bench", workers=args.workers, cache=True, pin=args.pin)
                )
            }
            if "baseline" not in skip:
                servers["uncached"] = stack.enter_context(
                    start_server(
                        redis_url, "bench", workers=args.workers, cache=False, pin=args.pin
                    )
                )
        main = servers["cached"]

        async def scenario() -> None:
            async with registered(main["host"], main["port"], args.brokers, args.topics) as topics:
                print(
                    f"{'route load':<26}{'req/s':>10}{'p50 us':>9}{'p90':>9}{'p99':>9}"
                    f"{'p99.9':>9}{'srv us/r':>10}{'gen us/r':>10}{'errs':>7}"
                )
                routes: dict[str, Any] = {}
                for name, srv in servers.items():
                    r = await asyncio.to_thread(
                        route_load, args, srv["host"], srv["port"], topics, "remoting", srv["pid"]
                    )
                    routes[f"remoting_{name}"] = r
                    _print_route(f"remoting ({name})", r)
                if "http" not in skip and main.get("http_port"):
                    r = await asyncio.to_thread(
                        route_load,
                        args,
                        main["host"],
                        main["http_port"],
                        topics,
                        "http",
                        main["pid"],
                    )
                    routes["http_cached"] = r
                    _print_route("http (cached)", r)
                if "remoting_uncached" in routes:
                    routes["cache_speedup"] = round(
                        routes["remoting_cached"]["throughput_rps"]
                        / max(1, routes["remoting_uncached"]["throughput_rps"]),
                        2,
                    )
                    print(
                        f"cache speed-up (throughput, cached / straight from Redis): "
                        f"{routes['cache_speedup']}x"
                    )
                result["routes"] = routes
            if "register" not in skip:
                print(
                    f"{'registration':<14}{'first p50 ms':>14}{'changed p50':>13}{'p99':>8}"
                    f"{'unchanged p50':>15}{'p99':>8}"
                )
                regs = []
                for size in (int(s) for s in args.register_sizes.split(",") if s):
                    r = await registration_latency(main["host"], main["port"], size)
                    regs.append(r)
                    print(
                        f"{size:<14}{r['first']['p50'] / 1000:>14.2f}"
                        f"{r['changed']['p50'] / 1000:>13.2f}{r['changed']['p99'] / 1000:>8.2f}"
                        f"{r['unchanged']['p50'] / 1000:>15.2f}{r['unchanged']['p99'] / 1000:>8.2f}"
                    )
                result["registration"] = regs

        asyncio.run(scenario())
        if "memory" not in skip and redis_url is not None:
            print(
                f"{'memory (fresh pod)':<20}{'idle RSS':>10}{'RSS MiB':>9}{'B/topic':>9}"
                f"{'Redis MiB':>11}{'B/topic-broker':>16}{'RSS, JSON API used':>20}"
            )
            result["memory"] = []
            for size in (int(s) for s in args.memory_sizes.split(",") if s):
                m = memory_footprint(args, redis_url, size)
                result["memory"].append(m)
                print(
                    f"{m['topics']:<20}{m['server_rss_idle_mib']:>10}{m['server_rss_mib']:>9}"
                    f"{m['server_bytes_per_topic']:>9}{m['redis_used_memory_mib']:>11}"
                    f"{m['redis_bytes_per_topic_broker']:>16}{m['server_rss_json_api_mib']:>20}"
                )
    print(json.dumps(result))
    return 0
