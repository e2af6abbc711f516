"""What several pods sweeping at once cost: N expired brokers, swept by 1 and by 3 sweepers
concurrently (each with its own client, like three pods); prints wall time and the number of
remove-script calls, and the cost of a sweep that finds nothing among many live brokers.

    python scripts/sweep_cost.py [--expired 500] [--live 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from namesrv_redis.rocketmq.model import QueueConfig
from namesrv_redis.store.liveness import Sweeper
from namesrv_redis.store.route_store import BrokerRegistration, RouteStore
from tests.conftest import RedisServerProcess


class CountingStore(RouteStore):
    calls = 0

    async def remove_broker(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        type(self).calls += 1
        return await super().remove_broker(*args, **kwargs)


async def populate(store: RouteStore, n: int, first: int, timeout_ms: int) -> None:
    for i in range(first, first + n):
        await store.register_broker(
            BrokerRegistration(
                "C",
                f"10.9.{i // 250}.{i % 250}:10911",
                f"b{i}",
                0,
                data_version='{"counter":1,"timestamp":1}',
                topics=[QueueConfig(f"T{i}", 1, 1, 6), QueueConfig("SELF_TEST_TOPIC", 1, 1, 6)],
                heartbeat_timeout_ms=timeout_ms,
            )
        )


async def run(url: str, expired: int, live: int, sweepers: int, ns: str) -> dict[str, float]:
    clients = [aioredis.Redis.from_url(url) for _ in range(sweepers)]
    stores = [CountingStore(c, ns) for c in clients]
    for s in stores:
        await s.load_scripts()
    await populate(stores[0], live, 0, 600_000)
    await populate(stores[0], expired, live, 100)
    await asyncio.sleep(0.3)
    CountingStore.calls = 0
    t = time.perf_counter()
    removed = await asyncio.gather(*(Sweeper(s).sweep_once() for s in stores))
    wall = time.perf_counter() - t
    calls = CountingStore.calls
    t = time.perf_counter()
    for _ in range(20):
        await Sweeper(stores[0]).sweep_once()
    idle = (time.perf_counter() - t) / 20
    for c in clients:
        await c.aclose()
    return {
        "sweepers": sweepers,
        "removed": sum(removed),
        "remove_calls": calls,
        "wall_ms": round(wall * 1000, 1),
        "idle_sweep_ms": round(idle * 1000, 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--expired", type=int, default=500)
    ap.add_argument("--live", type=int, default=10_000)
    args = ap.parse_args()
    server = RedisServerProcess("--notify-keyspace-events", "").start()
    try:
        rows = [
            asyncio.run(run(server.url, args.expired, args.live, n, f"sweep{n}")) for n in (1, 3)
        ]
    finally:
        server.stop()
    print(f"{'sweepers':>9}{'removed':>9}{'script calls':>14}{'wall ms':>9}{'idle sweep ms':>15}")
    for r in rows:
        print(
            f"{r['sweepers']:>9}{r['removed']:>9}{r['remove_calls']:>14}{r['wall_ms']:>9}"
            f"{r['idle_sweep_ms']:>15}"
        )
    print(json.dumps({"expired": args.expired, "live": args.live, "runs": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
