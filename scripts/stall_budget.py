"""How long our own scripts block Redis for everybody else (docs/benchmarks.md, "Redis stall
budget").

Starts a private redis-server on a free loopback port, then for a 10,000- and a 100,000-topic
broker: registers it, re-registers it with a changed data version (every queue number
changed), unregisters it, registers it again and drops it as a closed connection would. For
each step it prints the wall time, the longest command Redis recorded (``SLOWLOG`` with
``slowlog-log-slower-than 0``) and what a client sending PING every millisecond on its own
connection waited (max and p99). Run it on any tree: ``PYTHONPATH=<tree> python
scripts/stall_budget.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from namesrv_redis.store.route_store import (
    BrokerRegistration,
    RemovalReason,
    RouteStore,
    queue_configs,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(binary: str, port: int, directory: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--dir", directory, "--slowlog-log-slower-than", "0", "--slowlog-max-len", "100000"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


class Prober:
    """PING on its own connection, one at a time, recording how long each waited."""

    def __init__(self, url: str) -> None:
        self.client = aioredis.Redis.from_url(url)
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await self.client.ping()
            self.samples.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(0.001)

    def start(self) -> None:
        self.samples = []
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> tuple[float, float]:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        s = sorted(self.samples) or [0.0]
        return s[-1], s[min(len(s) - 1, int(len(s) * 0.99))]


async def longest_command(client: Any) -> tuple[float, str]:
    """The longest command in SLOWLOG (ms, name), then resets it."""
    entries = await client.slowlog_get(100000)
    await client.slowlog_reset()
    best = max(entries, key=lambda e: e["duration"], default=None)
    if best is None:
        return 0.0, "-"
    cmd = best["command"]
    name = (cmd.decode() if isinstance(cmd, bytes) else str(cmd)).split(" ")[0]
    return best["duration"] / 1000, name


async def run(binary: str, sizes: list[int], label: str) -> None:
    port = free_port()
    directory = tempfile.mkdtemp(prefix="nsr-stall-")
    proc = start_redis(binary, port, directory)
    url = f"redis://127.0.0.1:{port}/0"
    client = aioredis.Redis.from_url(url)
    prober = Prober(url)
    try:
        store = RouteStore(client, "bench")
        await store.load_scripts()
        print(f"{label}: redis-server {(await client.info('server'))['redis_version']}")
        header = f"{'topics':>8} {'step':<22} {'wall ms':>9} {'longest cmd ms':>15} "
        print(header + f"{'(cmd)':<8} {'PING max ms':>12} {'PING p99 ms':>12}")
        for n in sizes:

            def reg(counter: int, queues: int) -> BrokerRegistration:
                return BrokerRegistration(
                    "c",
                    "10.0.0.1:10911",
                    f"broker-{n}",
                    0,
                    data_version=f'{{"counter":{counter},"timestamp":1}}',
                    topics=queue_configs(
                        (f"topic-{n}-{i}", queues, queues, 6, 0) for i in range(n)
                    ),
                    conn_id="conn-1",
                )

            steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
                ("register", lambda: store.register_broker(reg(1, 8))),
                ("re-register (new dv)", lambda: store.register_broker(reg(2, 16))),
                (
                    "unregister",
                    lambda: store.unregister_broker("c", "10.0.0.1:10911", f"broker-{n}"),
                ),
                ("register again", lambda: store.register_broker(reg(3, 8))),
                (
                    "connection closed",
                    lambda: store.remove_broker(
                        RemovalReason.CONNECTION_CLOSED, "c", "10.0.0.1:10911", conn_id="conn-1"
                    ),
                ),
            ]
            for name, step in steps:
                await client.slowlog_reset()
                prober.start()
                await asyncio.sleep(0.05)
                t = time.perf_counter()
                await step()
                wall = (time.perf_counter() - t) * 1000
                await asyncio.sleep(0.05)
                ping_max, ping_p99 = await prober.stop()
                longest, cmd = await longest_command(client)
                print(
                    f"{n:>8} {name:<22} {wall:>9.0f} {longest:>15.1f} {cmd:<8} "
                    f"{ping_max:>12.1f} {ping_p99:>12.1f}"
                )
            assert await client.scard(store.keys.topics) == 0, "topics left behind"
    finally:
        await prober.client.aclose()
        await client.aclose()
        proc.terminate()
        proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    parser.add_argument("--sizes", default="10000,100000", help="topics per broker")
    parser.add_argument("--label", default="this tree")
    a = parser.parse_args()
    asyncio.run(run(a.redis_server, [int(s) for s in a.sizes.split(",")], a.label))


if __name__ == "__main__":
    main()
