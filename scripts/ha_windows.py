"""What each Redis failure costs a namesrv-redis estate, measured on loopback (docs/ha.md).

For each scenario: real Redis processes (a Sentinel set, a 3+3 Cluster, or a standalone
server), two ``namesrv-redis serve`` pods, heartbeating brokers (timeout 4-6 s), a one-shot
registration every 100 ms and route readers on both pods. The failure is injected 1.5-2 s into
the load; then the script reports the window of refused writes (first and last refusal,
seconds after the failure), acknowledged registrations lost, route failures, heartbeating
brokers removed, and how long after its deadline a broker that falls silent after the failure
is removed (notification speed: well under a second; the sweeper is set to 10 s).

    python scripts/ha_windows.py                 # every scenario once (about 2 minutes)
    python scripts/ha_windows.py --runs 3 --json ha.json
    python scripts/ha_windows.py --only sentinel-planned
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

from tests.conftest import RedisServerProcess
from tests.ha_load import run_failure, running_pods
from tests.redis_topologies import ClusterSet, SentinelSet, command
from tests.test_ha_cluster import migrate, promote
from tests.test_ha_sentinel import fail_over

NAMESPACE = "ha-bench"


async def _measure(url: str, fail: Callable[[], None], timeout_ms: int) -> dict[str, Any]:
    with contextlib.contextmanager(running_pods)(url, NAMESPACE) as pods:
        load = await run_failure(pods, fail, timeout_ms=timeout_ms)
        await load.close()
        return load.report.summary()


async def sentinel(planned: bool) -> dict[str, Any]:
    s = SentinelSet().start()
    try:
        return await _measure(s.url, lambda: fail_over(s, planned=planned), 4000)
    finally:
        s.stop()


async def cluster(kind: str) -> dict[str, Any]:
    c = ClusterSet().start()
    try:
        fail = migrate(c, NAMESPACE) if kind == "migration" else promote(c, NAMESPACE)
        return await _measure(c.url, fail, 6000)
    finally:
        c.stop()


async def standalone(kind: str) -> dict[str, Any]:
    server = RedisServerProcess().start()
    pid = server.proc.pid  # type: ignore[union-attr]
    try:

        def fail() -> None:
            if kind == "hung":
                os.kill(pid, signal.SIGSTOP)
                time.sleep(3.0)
                os.kill(pid, signal.SIGCONT)
            elif kind == "flushall":
                command(server.port, "FLUSHALL")
            else:  # restarted empty
                port = server.port
                server.stop()
                server.port, server.dir = port, tempfile.mkdtemp(prefix="nsr-bench-redis-")
                server.start()

        return await _measure(server.url, fail, 6000)
    finally:
        if server.proc is not None and server.proc.poll() is None:
            os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()


SCENARIOS: dict[str, Callable[[], Any]] = {
    "sentinel-planned": lambda: sentinel(True),
    "sentinel-kill-master": lambda: sentinel(False),
    "cluster-slot-migration": lambda: cluster("migration"),
    "cluster-replica-promotion": lambda: cluster("promotion"),
    "standalone-hung-3s": lambda: standalone("hung"),
    "standalone-restart-empty": lambda: standalone("restart"),
    "standalone-flushall": lambda: standalone("flushall"),
}


async def _bounded(scenario: Any, limit_s: float = 240) -> dict[str, Any]:
    """One scenario, or a dump of what it was waiting for when it overran."""
    task = asyncio.ensure_future(scenario)
    done, _ = await asyncio.wait([task], timeout=limit_s)
    if not done:
        for t in asyncio.all_tasks():
            t.print_stack(limit=8, file=sys.stderr)
        task.cancel()
        raise TimeoutError(f"scenario overran {limit_s}s")
    result: dict[str, Any] = task.result()
    return result


def _median(values: list[Any]) -> Any:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    results: dict[str, list[dict[str, Any]]] = {}
    for name in args.only or list(SCENARIOS):
        for _ in range(args.runs):
            results.setdefault(name, []).append(asyncio.run(_bounded(SCENARIOS[name]())))
            print(name, results[name][-1], flush=True)
    header = (
        "scenario",
        "refused window s",
        "refused",
        "lost",
        "route failures",
        "hb removed",
        "detection ms",
    )
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for name, runs in results.items():
        windows = [r["refused window s"] for r in runs if r["refused window s"]]
        window = (
            f"{_median([w[0] for w in windows])}–{_median([w[1] for w in windows])}"
            if windows
            else "none"
        )
        row = (
            name,
            window,
            str(_median([r["refused writes"] for r in runs])),
            str(sum(r["lost acknowledged registrations"] for r in runs)),
            str(sum(r["route failures"] for r in runs)),
            str(sum(r["heartbeating brokers removed"] for r in runs)),
            str(_median([r["detection ms"] for r in runs])),
        )
        print("| " + " | ".join(row) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
