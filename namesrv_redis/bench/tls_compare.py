"""Cached route throughput over TLS against plain TCP, in one run, against one server.

``python -m namesrv_redis.bench.tls_compare`` starts one ``serve`` process (TLS permissive,
the default, with its self-signed test certificate), registers B brokers x K topics, caches
every route, then alternates plain and TLS route load (``--rounds`` of each) on the same
port and prints the median throughput of each and their ratio (docs/security.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from typing import Any

from namesrv_redis.bench.target import cache_all, registered, route_load, start_server
from namesrv_redis.store.embedded import EmbeddedRedis


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m namesrv_redis.bench.tls_compare")
    p.add_argument("--redis-url")
    p.add_argument("--brokers", type=int, default=10)
    p.add_argument("--topics", type=int, default=100)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--pipeline", type=int, default=16)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--procs", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pin", action="store_true")
    args = p.parse_args(argv)

    embedded = None
    url = args.redis_url
    if not url:
        embedded = EmbeddedRedis()
        embedded.start_sync()
        url = embedded.url
    runs: dict[str, list[dict[str, Any]]] = {"remoting": [], "remoting+tls": []}
    try:
        ns = f"bench-tls-{os.getpid()}"
        with start_server(url, ns, workers=1, cache=True, pin=args.pin) as srv:
            host, port = srv["host"], srv["port"]

            async def scenario() -> None:
                async with registered(host, port, args.brokers, args.topics) as topics:
                    await cache_all(host, port, topics)
                    for _ in range(args.rounds):
                        for proto in runs:
                            r = await asyncio.to_thread(
                                route_load, args, host, port, topics, proto, srv["pid"]
                            )
                            runs[proto].append(r)
                            print(
                                f"{proto:<14}{r['throughput_rps']:>10} req/s  p50 "
                                f"{r['latency_us']['p50']:.0f} us  p99 "
                                f"{r['latency_us']['p99']:.0f} us  server "
                                f"{r.get('server_cpu_us_per_req', 0)} us/req  "
                                f"errors {sum(r['errors'].values())}",
                                flush=True,
                            )

            asyncio.run(scenario())
    finally:
        if embedded is not None:
            embedded.stop_sync()
    med = {k: statistics.median(r["throughput_rps"] for r in v) for k, v in runs.items()}
    cpu = {
        k: statistics.median(r.get("server_cpu_us_per_req", 0.0) for r in v)
        for k, v in runs.items()
    }
    ratio = med["remoting+tls"] / med["remoting"] if med["remoting"] else 0.0
    print(
        f"median plain {med['remoting']:.0f} req/s ({cpu['remoting']} us server CPU/req), "
        f"TLS {med['remoting+tls']:.0f} req/s ({cpu['remoting+tls']} us/req): "
        f"TLS/plain throughput = {ratio:.2f}"
    )
    summary = {"median_rps": med, "median_server_cpu_us_per_req": cpu}
    print(json.dumps({**summary, "tls_over_plain": round(ratio, 3), "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
