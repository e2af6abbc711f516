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
import multiprocessing
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from namesrv_redis.store.route_store import (
    BrokerRegistration,
    RemovalReason,
    RouteStore,
    queue_configs,
)
from namesrv_redis.store.scripts import script_names


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(binary: str, port: int, directory: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--dir", directory),
            *("--slowlog-log-slower-than", "0", "--slowlog-max-len", "100000"),
        ],
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


def _probe(url: str, conn: Connection) -> None:
    """The prober process: PING on its own connection, one at a time, between a "start" and
    a "stop" message; answers the waits (ms) seen."""
    client = redis.Redis.from_url(url)
    while conn.recv() == "start":
        samples: list[float] = []
        while not conn.poll():
            t = time.perf_counter()
            client.ping()
            samples.append((time.perf_counter() - t) * 1000)
            time.sleep(0.001)
        conn.recv()
        conn.send(samples)


class Prober:
    """A PING client in its own process, so that this process' own work is not measured."""

    def __init__(self, url: str) -> None:
        self.conn, child = multiprocessing.Pipe()
        self.proc = multiprocessing.Process(target=_probe, args=(url, child), daemon=True)
        self.proc.start()

    def start(self) -> None:
        self.conn.send("start")

    def stop(self) -> tuple[float, float]:
        self.conn.send("stop")
        s = sorted(self.conn.recv()) or [0.0]
        return s[-1], s[min(len(s) - 1, int(len(s) * 0.99))]

    def close(self) -> None:
        self.conn.send("exit")
        self.proc.join(5)


async def longest_command(client: Any, store: RouteStore) -> tuple[float, str]:
    """The longest command in SLOWLOG (ms, and its script's name for an EVALSHA); resets it."""
    entries = await client.slowlog_get(100000)
    await client.slowlog_reset()
    best = max(entries, key=lambda e: e["duration"], default=None)
    if best is None:
        return 0.0, "-"
    words = best["command"].decode(errors="replace").split(" ")
    names = {getattr(store.scripts, f).sha: f for f in script_names()}
    return best["duration"] / 1000, names.get(words[1], words[0]) if len(words) > 1 else words[0]


async def measure(store: RouteStore, client: Any, prober: Prober, n: int) -> None:
    """The five steps for one broker of ``n`` topics, one table row each."""
    name, addr = f"broker-{n}", "10.0.0.1:10911"

    def reg(counter: int, queues: int) -> BrokerRegistration:
        return BrokerRegistration(
            "c",
            addr,
            name,
            0,
            data_version=f'{{"counter":{counter},"timestamp":1}}',
            topics=queue_configs((f"topic-{n}-{i}", queues, queues, 6, 0) for i in range(n)),
            conn_id="conn-1",
        )

    steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("register", lambda: store.register_broker(reg(1, 8))),
        ("re-register (new dv)", lambda: store.register_broker(reg(2, 16))),
        ("unregister", lambda: store.unregister_broker("c", addr, name)),
        ("register again", lambda: store.register_broker(reg(3, 8))),
        (
            "connection closed",
            lambda: store.remove_broker(
                RemovalReason.CONNECTION_CLOSED, "c", addr, conn_id="conn-1"
            ),
        ),
    ]
    for step_name, step in steps:
        await client.slowlog_reset()
        prober.start()
        await asyncio.sleep(0.05)
        t = time.perf_counter()
        note = ""
        try:
            await step()
        except RedisError as e:  # e.g. main's 100,000-topic script past the write deadline
            note = f"  ({type(e).__name__}: the script itself ran on)"
            await asyncio.sleep(3)
        wall = (time.perf_counter() - t) * 1000
        await asyncio.sleep(0.05)
        ping_max, ping_p99 = prober.stop()
        longest, cmd = await longest_command(client, store)
        print(
            f"{n:>8} {step_name:<22} {wall:>9.0f} {longest:>15.1f} {cmd:<16} "
            f"{ping_max:>12.1f} {ping_p99:>12.1f}{note}",
            flush=True,
        )
    assert await client.scard(store.keys.topics) == 0, "topics left behind"


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
        print(header + f"{'(command)':<16} {'PING max ms':>12} {'PING p99 ms':>12}", flush=True)
        for n in sizes:
            await measure(store, client, prober, n)
    finally:
        prober.close()
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
