"""Is the RSS a pod keeps after a burst allocator retention? A pod serves a burst of pipelined
route requests (``--connections`` clients, each sending ``--requests`` frames as fast as it can
while reading the answers), then sits idle; its RSS is sampled before, at the peak and for
``--idle`` seconds after. Four runs in one invocation: CPython's own small-object allocator
(pymalloc, the default) or ``PYTHONMALLOC=malloc`` (every object from glibc), each with
malloc trimming off
(``mallocTrimThresholdMb=0``) and on (the default, 32 MiB); prints RSS and the burst's
duration (its cost) for each.

    python scripts/memory_after_burst.py [--connections 20] [--requests 20000] [--idle 12]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.remoting.codec import FrameDecoder, encode_request
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.sim.broker import SimBroker
from tests.conftest import RedisServerProcess
from tests.serverproc import NamesrvProcess


def rss_mib(proc: psutil.Process) -> float:
    return float(proc.memory_info().rss) / 2**20


async def client_burst(port: int, requests: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    frames = [
        encode_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, i, {"topic": f"T{i % 200}"})
        for i in range(requests)
    ]

    async def send() -> None:
        for i in range(0, len(frames), 500):
            writer.write(b"".join(frames[i : i + 500]))
            await writer.drain()

    async def receive() -> None:
        decoder, got = FrameDecoder(), 0
        while got < requests:
            data = await reader.read(1 << 20)
            if not data:
                return
            got += len(decoder.feed(data))

    await asyncio.gather(send(), receive())
    writer.close()


async def one_run(
    redis_url: str, trim_mb: int, allocator: str, args: argparse.Namespace
) -> dict[str, float]:
    env = {"NAMESRV_MALLOC_TRIM_THRESHOLD_MB": str(trim_mb)}
    if allocator != "pymalloc":
        env["PYTHONMALLOC"] = allocator
    pod = NamesrvProcess(redis_url, f"mem{trim_mb}{allocator}", env=env).start()
    assert pod.proc is not None
    proc = psutil.Process(pod.proc.pid)
    try:
        c = await RemotingClient.connect("127.0.0.1", pod.port)
        b = SimBroker("C", "broker-a", "10.0.0.1:10911")
        b.add_topics([f"T{i}" for i in range(200)])
        assert (await b.register(c)).code == 0
        await asyncio.sleep(1)
        before = rss_mib(proc)
        peak = before
        started = time.monotonic()
        burst = asyncio.gather(
            *(client_burst(pod.port, args.requests) for _ in range(args.connections))
        )
        while not burst.done():
            peak = max(peak, rss_mib(proc))
            await asyncio.sleep(0.05)
        await burst
        ended = time.monotonic()
        took = ended - started
        samples: list[float] = []
        while time.monotonic() - ended < args.idle:
            await asyncio.sleep(0.5)
            samples.append(rss_mib(proc))
        await c.close()
        return {
            "before": before,
            "peak": peak,
            "after_1s": samples[1] if len(samples) > 1 else samples[0],
            "after_idle": statistics.median(samples[-3:]),
            "burst_s": took,
        }
    finally:
        log = pod.log_path.read_text(errors="replace")
        pod.stop()
        trims = [line for line in log.splitlines() if "returned free memory" in line]
        if trims:
            print(f"  (pod with threshold {trim_mb} MiB: {trims[-1].split('memtrim')[-1].strip()})")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--idle", type=float, default=12.0)
    args = ap.parse_args()
    redis = RedisServerProcess().start()
    try:
        results = {}
        for allocator in ("pymalloc", "malloc"):
            for trim_mb in (0, 32):
                label = f"{allocator}, trim {'on' if trim_mb else 'off'}"
                results[label] = await one_run(redis.url, trim_mb, allocator, args)
    finally:
        redis.stop()
    print(
        f"burst: {args.connections} connections x {args.requests} pipelined route requests; "
        f"RSS in MiB"
    )
    print(f"{'':22} {'before':>8} {'peak':>8} {'after 1s':>9} {'after idle':>11} {'burst s':>8}")
    for label, r in results.items():
        print(
            f"{label:22} {r['before']:8.1f} {r['peak']:8.1f} {r['after_1s']:9.1f} "
            f"{r['after_idle']:11.1f} {r['burst_s']:8.2f}"
        )
    for label, r in results.items():
        print(f"retained after the burst, {label}: {r['after_idle'] - r['before']:.1f} MiB")


if __name__ == "__main__":
    asyncio.run(main())
