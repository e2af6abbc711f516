"""What the test name server (namesrv_redis.testing.NameServer, the rocketmq_namesrv fixture)
costs: its first start in a fresh process (imports included), then the median of N starts,
stops and resets (``rocketmq_namesrv`` resets the session's server before each test), with
a restart (stop + start) as the baseline a reset is compared with.

    python scripts/testing_fixture.py [--runs 20] [--brokers 10] [--topics 100]

Each reset clears a populated estate (brokers × topics, registered by the helper) and is
followed by one route query over the wire, so the timing includes the cache being dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from namesrv_redis.remoting.client import RemotingClient  # noqa: E402
from namesrv_redis.rocketmq.codes import RequestCode  # noqa: E402
from namesrv_redis.testing import NameServer  # noqa: E402

FIRST_START = """
import json, time
t = time.perf_counter()
from namesrv_redis.testing.server import NameServer
import fakeredis, lupa
imported = time.perf_counter() - t
ns = NameServer().start()
started = time.perf_counter() - t
ns.stop()
print(json.dumps({"import_s": imported, "first_start_s": started}))
"""


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def first_start(runs: int) -> tuple[float, float]:
    """Medians over fresh processes: (imports, imports + first start)."""
    imports, starts = [], []
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-c", FIRST_START], cwd=ROOT, capture_output=True, text=True
        )
        d = json.loads(proc.stdout.strip().splitlines()[-1])
        imports.append(d["import_s"])
        starts.append(d["first_start_s"])
    return statistics.median(imports), statistics.median(starts)


def populate(ns: NameServer, brokers: int, topics: int) -> None:
    for b in range(brokers):
        names = [f"T{b}-{t}" for t in range(topics)]
        ns.register_broker("BenchCluster", f"broker-{b}", f"127.0.0.1:{20000 + b}", names)


async def query(ns: NameServer, topic: str) -> int:
    client = await RemotingClient.connect("127.0.0.1", ns.port)
    try:
        resp = await client.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
        assert resp is not None
        return resp.code
    finally:
        await client.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--brokers", type=int, default=10)
    p.add_argument("--topics", type=int, default=100)
    p.add_argument("--redis", default="memory://", help="memory://, embedded or a redis:// URL")
    a = p.parse_args()

    cold_imports, cold = first_start(max(3, a.runs // 4))
    starts, stops, restarts = [], [], []
    NameServer(redis=a.redis).start().stop()  # warm: imports and the Lua compile cache
    for _ in range(a.runs):
        ns = NameServer(redis=a.redis)
        starts.append(timed(ns.start))
        stops.append(timed(ns.stop))
    ns = NameServer(redis=a.redis).start()
    for _ in range(a.runs):
        restarts.append(timed(lambda: (ns.stop(), ns.start())))
    resets, populated_resets = [], []
    for _ in range(a.runs):
        resets.append(timed(ns.reset))
        populate(ns, a.brokers, a.topics)
        populated_resets.append(timed(ns.reset))
        assert asyncio.run(query(ns, "T0-0")) == 17  # the reset also dropped the cached route
    ns.stop()

    reset_ms = median_ms(populated_resets)
    restart_ms = median_ms(restarts)
    print(f"namesrv_redis.testing.NameServer, redis={a.redis}, median of {a.runs}:")
    print(f"  first start in a fresh process (imports included): {cold * 1000:8.1f} ms")
    print(f"    of which importing the server and fakeredis:      {cold_imports * 1000:8.1f} ms")
    print(f"  start:                                              {median_ms(starts):8.1f} ms")
    print(f"  stop:                                               {median_ms(stops):8.1f} ms")
    print(f"  restart (stop + start, the baseline):               {restart_ms:8.1f} ms")
    print(f"  reset, empty:                                       {median_ms(resets):8.2f} ms")
    print(
        f"  reset, {a.brokers} brokers x {a.topics} topics:                   "
        f"{reset_ms:8.2f} ms  ({restart_ms / reset_ms:.1f}x cheaper than a restart)"
    )


if __name__ == "__main__":
    main()
