"""What a pod costs, for sizing Kubernetes requests and limits (docs/operations.md).

Starts a real redis-server and a ``namesrv-redis serve`` pod (``--workers N``), registers
10 brokers x T/10 topics over the wire, asks every route a few times, and prints the pod's
RSS (all its processes), its CPU per route answer and Redis's ``used_memory`` increase.

    python scripts/pod_footprint.py --workers 1 --topics 10000
    python scripts/pod_footprint.py --workers 2 --topics 10000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.sim.broker import SimBroker
from tests.conftest import RedisServerProcess
from tests.serverproc import NamesrvProcess


def tree(pid: int) -> list[psutil.Process]:
    p = psutil.Process(pid)
    return [p, *p.children(recursive=True)]


def rss_mib(pid: int) -> float:
    return sum(p.memory_info().rss for p in tree(pid)) / 2**20


def cpu_s(pid: int) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in tree(pid))


async def load(port: int, topics: int, rounds: int) -> tuple[list[RemotingClient], float, int]:
    names = [f"topic-{i}" for i in range(topics)]
    clients = []
    for b in range(10):
        sim = SimBroker("SizingCluster", f"broker-{b}", f"10.1.0.{b}:10911")
        sim.add_topics(names[b::10], queues=8)
        c = await RemotingClient.connect("127.0.0.1", port)
        assert (await sim.register(c)).code == 0
        clients.append(c)
    readers = [await RemotingClient.connect("127.0.0.1", port) for _ in range(8)]
    started = time.perf_counter()
    answered = 0
    for _ in range(rounds):
        for i in range(0, topics, 64):
            batch = names[i : i + 64]
            await asyncio.gather(
                *(
                    readers[j % 8].request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": t})
                    for j, t in enumerate(batch)
                )
            )
            answered += len(batch)
    elapsed = time.perf_counter() - started
    for c in readers:
        await c.close()
    # the brokers stay registered until measured: their connections are closed by the caller
    return clients, elapsed, answered


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--topics", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for _ in range(args.runs):
        server = RedisServerProcess().start()
        r = redis.Redis(port=server.port)
        pod = NamesrvProcess(server.url, "sizing", "--workers", str(args.workers)).start()
        try:
            assert pod.proc is not None
            time.sleep(1.0)
            idle = rss_mib(pod.proc.pid)
            redis_before = int(r.info("memory")["used_memory"])
            cpu_before = cpu_s(pod.proc.pid)
            loop = asyncio.new_event_loop()
            brokers, elapsed, answered = loop.run_until_complete(
                load(pod.port, args.topics, args.rounds)
            )
            cpu = cpu_s(pod.proc.pid) - cpu_before
            loaded = rss_mib(pod.proc.pid)
            redis_mib = (int(r.info("memory")["used_memory"]) - redis_before) / 2**20
            rows.append((idle, loaded, cpu / answered * 1e6, answered / elapsed, redis_mib))
            for c in brokers:
                loop.run_until_complete(c.close())
            loop.close()
        finally:
            pod.stop()
            server.stop()
    med = [statistics.median(col) for col in zip(*rows, strict=True)]
    print(f"workers={args.workers} topics={args.topics} (10 brokers) runs={args.runs}, medians:")
    print(f"  pod RSS idle            {med[0]:8.1f} MiB")
    print(f"  pod RSS loaded+cached   {med[1]:8.1f} MiB")
    print(f"  pod CPU per route       {med[2]:8.1f} us (registration and client included)")
    print(f"  routes/s (this client)  {med[3]:8.0f}")
    print(f"  Redis used_memory added {med[4]:8.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
