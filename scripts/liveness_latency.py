"""Detection latency of dead brokers: (moment the route disappears) − (last heartbeat +
heartbeat timeout), over N brokers, with keyspace notifications on and with the sweeper
alone, beside the Java NameServer's worst case for the same settings.

    python scripts/liveness_latency.py [--brokers 60] [--timeout-ms 2000] [--scan-ms 5000]

Starts its own redis-server on a free port (a real one: fakeredis has no expiry events).
Prints a table and, last, one JSON line. Not a test: it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from namesrv_redis.bench.stats import summarize_us
from namesrv_redis.rocketmq.model import QueueConfig
from namesrv_redis.store.liveness import Liveness
from namesrv_redis.store.route_store import BrokerRegistration, RouteStore
from tests.conftest import RedisServerProcess


async def measure(
    url: str, namespace: str, brokers: int, timeout_ms: int, scan_ms: int
) -> list[int]:
    client = aioredis.Redis.from_url(url)
    store = RouteStore(client, namespace)
    await store.load_scripts()
    liveness = Liveness(store, client, scan_interval_ms=scan_ms)
    await liveness.start()
    while not liveness.cleaner.subscribed:
        await asyncio.sleep(0.01)
    last_beat: dict[str, float] = {}
    for i in range(brokers):  # staggered: each broker's last heartbeat is its registration
        topic = f"Topic-{i}"
        await store.register_broker(
            BrokerRegistration(
                "BenchCluster",
                f"127.0.0.1:{20000 + i}",
                f"bench-broker-{i}",
                0,
                data_version='{"counter":1,"timestamp":1}',
                topics=[QueueConfig(topic, 4, 4, 6), QueueConfig("SELF_TEST_TOPIC", 1, 1, 6)],
                heartbeat_timeout_ms=timeout_ms,
            )
        )
        last_beat[topic] = time.monotonic()
        await asyncio.sleep(0.013)
    pending = set(last_beat)
    latencies: list[int] = []
    deadline = time.monotonic() + timeout_ms / 1000 + scan_ms / 1000 + 30
    while pending and time.monotonic() < deadline:
        for topic in list(pending):
            if await store.get_route(topic) is None:
                seen = time.monotonic()
                latencies.append(int((seen - last_beat[topic] - timeout_ms / 1000) * 1e6))
                pending.discard(topic)
        await asyncio.sleep(0.005)
    await liveness.stop()
    await client.aclose()
    if pending:
        raise RuntimeError(f"{len(pending)} brokers never left")
    return latencies


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brokers", type=int, default=60)
    ap.add_argument("--timeout-ms", type=int, default=2000)
    ap.add_argument("--scan-ms", type=int, default=5000, help="scanNotActiveBrokerInterval")
    args = ap.parse_args()
    results: dict[str, Any] = {
        "brokers": args.brokers,
        "timeout_ms": args.timeout_ms,
        "scan_interval_ms": args.scan_ms,
    }
    runs = {
        "notifications": (),  # expired-key events on
        "sweeper_only": ("--notify-keyspace-events", "", "--rename-command", "CONFIG", ""),
    }
    for name, server_args in runs.items():
        server = RedisServerProcess(*server_args).start()
        try:
            lat = asyncio.run(
                measure(server.url, f"bench-{name}", args.brokers, args.timeout_ms, args.scan_ms)
            )
            results[name] = summarize_us(lat)
        finally:
            server.stop()
    results["java_worst_case_ms"] = {
        "scan_interval": args.scan_ms,
        "rocketmq_4_9_fixed_10s_scan": 10_000,
    }
    print(
        f"detection latency after timeout ({args.brokers} brokers, timeout {args.timeout_ms} ms, "
        f"scan {args.scan_ms} ms), milliseconds"
    )
    print(f"{'mode':<28}{'p50':>9}{'p99':>9}{'max':>9}")
    for mode in ("notifications", "sweeper_only"):
        s = results[mode]
        print(f"{mode:<28}{s['p50'] / 1000:>9.1f}{s['p99'] / 1000:>9.1f}{s['max'] / 1000:>9.1f}")
    print(f"{'Java 5.x worst case':<28}{'':>9}{'':>9}{args.scan_ms:>9.1f}")
    print(f"{'Java 4.9 worst case':<28}{'':>9}{'':>9}{10_000:>9.1f}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
