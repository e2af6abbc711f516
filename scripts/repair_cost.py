"""What verifying a broker costs Redis (docs/ha.md, Repair): registers one broker with N
topics on a throwaway redis-server, then runs one verification pass (``lua/repair_broker.lua``,
256 topics per call) with nothing lost and one with every topic hash lost; prints the calls,
Redis' own time per call (``INFO commandstats``) and the round trips.

    python scripts/repair_cost.py [--topics 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from namesrv_redis.domain.reconcile import CHUNK
from namesrv_redis.store.deadlines import Deadlines
from namesrv_redis.store.route_store import (
    BrokerRegistration,
    RepairTarget,
    RouteStore,
    queue_configs,
)
from tests.conftest import RedisServerProcess

DV = '{"counter":1,"timestamp":1}'


def _text(entry: dict[str, object]) -> bytes:
    command = entry["command"]
    return command if isinstance(command, bytes) else str(command).encode()


async def one_run(url: str, n: int, run: int) -> None:
    r = aioredis.Redis.from_url(url)
    store = RouteStore(r, f"cost{run}", deadlines=Deadlines(30_000, 30_000))
    await store.load_scripts()
    topics = queue_configs([(f"Topic-{i:06d}", 8, 8, 6, 0) for i in range(n)])
    await store.register_broker(
        BrokerRegistration(
            "C", "10.0.0.1:1", "b", 0, topics=topics, data_version=DV, conn_id="c1", table_token="t"
        )
    )
    target = RepairTarget("C", "10.0.0.1:1", "b", 0, DV, 0, "", "t", 120_000, "c1")
    for label in ("nothing lost", "every topic hash lost"):
        if label != "nothing lost":
            await r.delete(*[store.keys.topic(t.topic) for t in topics])
        await r.config_resetstat()
        await r.config_set("slowlog-log-slower-than", "0")
        await r.config_set("slowlog-max-len", "100000")
        await r.slowlog_reset()
        trips = []
        for i in range(0, n, CHUNK):
            t = time.perf_counter()
            await store.repair_broker(target, topics[i : i + CHUNK])
            trips.append(time.perf_counter() - t)
        stat = (await r.info("commandstats"))["cmdstat_evalsha"]
        longest = max(e["duration"] for e in await r.slowlog_get(100_000) if b"EVALSHA" in _text(e))
        print(
            f"{n} topics, {label}: {stat['calls']} calls, Redis {stat['usec_per_call']:.0f} us "
            f"per call, longest {longest} us ({stat['usec'] / 1000:.1f} ms in all); "
            f"round trip median {statistics.median(trips) * 1000:.2f} ms, "
            f"max {max(trips) * 1000:.2f} ms"
        )
    await r.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topics", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    server = RedisServerProcess().start()
    try:
        for run in range(args.runs):
            await one_run(server.url, args.topics, run)
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
