"""What ``bench persistence`` measures against: a real ``redis-server`` in one persistence mode
with a ``serve`` pod in front of it, or the Java-like baseline (state in the server's memory,
KV in a file). Each backend can be crashed (``kill -9`` of whatever holds the state), restarted
on the same files, and asked what it still holds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from namesrv_redis.bench.children import stop_process
from namesrv_redis.bench.target import free_port, start_server
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.store.embedded import find_redis_server
from namesrv_redis.store.persistence import server_options
from namesrv_redis.store.route_store import RouteStore

KV_NAMESPACE = "BENCH_KV"
NAMESPACE = "bench-persist"
BASELINE = "java-like"


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2) as s:
                if what != "redis-server":
                    return
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):  # not while it loads its files
                    return
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{what} did not answer on port {port}")


def disk_bytes(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        with contextlib.suppress(OSError):
            if p.is_file() and not p.name.endswith(".log"):
                total += p.stat().st_size
    return total


class Backend:
    """A name server whose state holder can be killed and restarted."""

    mode: str
    host = "127.0.0.1"
    port: int
    state_proc: subprocess.Popen[bytes] | None = None

    def __init__(self, mode: str, workdir: Path) -> None:
        self.mode = mode
        self.dir = workdir / mode
        self.dir.mkdir(parents=True, exist_ok=True)

    def _state_cmd(self) -> list[str]:
        raise NotImplementedError  # each backend runs its own state holder

    def start_state(self) -> None:
        self.state_proc = subprocess.Popen(
            self._state_cmd(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_port(self.state_port, self.state_proc, self.state_name)

    @property
    def state_port(self) -> int:
        raise NotImplementedError  # where the state holder listens

    state_name = "state"

    def kill_state(self) -> None:
        """``kill -9`` of the process that holds the state."""
        proc = self.state_proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop_state(self) -> None:
        proc, self.state_proc = self.state_proc, None
        if proc is not None and proc.poll() is None:
            stop_process(proc, 30)

    @contextlib.contextmanager
    def running(self) -> Iterator[Backend]:
        raise NotImplementedError  # each backend starts what it needs
        yield self

    async def open(self) -> None:
        """Client-side resources (run inside the bench's event loop)."""

    async def close(self) -> None:
        pass

    async def routes_answer(self, wanted: Sequence[tuple[str, str]]) -> bool:
        """Every (topic, broker name) answered by a route read."""
        raise NotImplementedError  # each backend reads its own state

    async def surviving_registrations(self, acked: Sequence[tuple[str, str]]) -> int:
        raise NotImplementedError  # each backend reads its own state

    async def surviving_kv(self, keys: Sequence[str]) -> int:
        raise NotImplementedError  # each backend reads its own state


class RedisBackend(Backend):
    """A ``redis-server`` in ``mode`` on a loopback port, and a ``serve`` pod using it."""

    state_name = "redis-server"

    def __init__(self, mode: str, workdir: Path, *, rebuild: bool = False) -> None:
        super().__init__(mode, workdir)
        self.rebuild = rebuild
        """Whether the pod re-applies its connected brokers' registrations after Redis lost
        them (rebuildOnDataLoss, docs/ha.md); off, the table shows what Redis itself keeps."""
        self.redis_port = free_port()
        self.binary = find_redis_server()
        self.client: Any = None
        self.store: RouteStore | None = None

    @property
    def state_port(self) -> int:
        return self.redis_port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def _state_cmd(self) -> list[str]:
        return [
            self.binary,
            "--port",
            str(self.redis_port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--logfile",
            str(self.dir / "redis.log"),
            "--notify-keyspace-events",
            "Ex",
            *server_options(self.mode),
        ]

    @contextlib.contextmanager
    def running(self) -> Iterator[Backend]:
        self.start_state()
        try:
            with (
                open(self.dir / "pod.log", "wb") as log,
                start_server(
                    self.url,
                    NAMESPACE,
                    workers=1,
                    cache=True,
                    pin=False,
                    log_file=log,
                    env_extra={"NAMESRV_REBUILD_ON_DATA_LOSS": str(self.rebuild).lower()},
                ) as srv,
            ):
                self.port = srv["port"]
                yield self
        finally:
            self.stop_state()

    async def open(self) -> None:
        self.client = aioredis.Redis.from_url(self.url, socket_timeout=10)
        self.store = RouteStore(self.client, NAMESPACE)
        await self.store.load_scripts()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def routes_answer(self, wanted: Sequence[tuple[str, str]]) -> bool:
        """As any pod answers a cache miss: the route read straight from Redis."""
        assert self.store is not None
        store = self.store
        for i in range(0, len(wanted), 50):  # within the client's connection pool
            chunk = wanted[i : i + 50]
            routes = await asyncio.gather(*(store.get_route_raw(t) for t, _ in chunk))
            for (_, broker), route in zip(chunk, routes, strict=True):
                if route is None or all(q.broker_name != broker for q in route.queue_datas):
                    return False
        return True

    async def surviving_registrations(self, acked: Sequence[tuple[str, str]]) -> int:
        assert self.store is not None
        keys = self.store.keys
        kept = 0
        for i in range(0, len(acked), 1000):
            async with self.client.pipeline(transaction=False) as pipe:
                for topic, broker in acked[i : i + 1000]:
                    pipe.hexists(keys.topic(topic), broker)
                kept += sum(bool(x) for x in await pipe.execute())
        return kept

    async def surviving_kv(self, keys: Sequence[str]) -> int:
        assert self.store is not None
        if not keys:
            return 0
        values = await self.client.hmget(self.store.keys.kv(KV_NAMESPACE), list(keys))
        return sum(v is not None for v in values)


class JavaLikeBackend(Backend):
    """:mod:`namesrv_redis.bench.javalike`: routes in the process, KV in ``kvConfig.json``."""

    state_name = "java-like name server"

    def __init__(self, mode: str, workdir: Path) -> None:
        super().__init__(mode, workdir)
        self.port = free_port()
        self.client: RemotingClient | None = None

    @property
    def state_port(self) -> int:
        return self.port

    def _state_cmd(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "namesrv_redis.bench.javalike",
            "--port",
            str(self.port),
            "--kv-file",
            str(self.dir / "kvConfig.json"),
        ]

    @contextlib.contextmanager
    def running(self) -> Iterator[Backend]:
        self.start_state()
        try:
            yield self
        finally:
            self.stop_state()

    async def _client(self) -> RemotingClient:
        if self.client is None or self.client.closed.done():
            self.client = await RemotingClient.connect(self.host, self.port)
        return self.client

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    async def _ask_all(self, code: int, fields: list[dict[str, str]]) -> list[Any]:
        client = await self._client()
        out: list[Any] = []
        for i in range(0, len(fields), 200):
            out += await asyncio.gather(
                *(client.request(code, f, timeout=30) for f in fields[i : i + 200])
            )
        return out

    async def _routes(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        answers = await self._ask_all(
            RequestCode.GET_ROUTEINFO_BY_TOPIC, [{"topic": t} for t, _ in pairs]
        )
        return [
            a is not None and a.code == 0 and f'"brokerName":"{b}"'.encode() in (a.body or b"")
            for (_, b), a in zip(pairs, answers, strict=True)
        ]

    async def routes_answer(self, wanted: Sequence[tuple[str, str]]) -> bool:
        return all(await self._routes(wanted))

    async def surviving_registrations(self, acked: Sequence[tuple[str, str]]) -> int:
        return sum(await self._routes(acked))

    async def surviving_kv(self, keys: Sequence[str]) -> int:
        answers = await self._ask_all(
            RequestCode.GET_KV_CONFIG, [{"namespace": KV_NAMESPACE, "key": k} for k in keys]
        )
        return sum(a is not None and a.code == 0 for a in answers)


def make_backend(mode: str, workdir: Path, *, rebuild: bool = False) -> Backend:
    if mode == BASELINE:
        return JavaLikeBackend(mode, workdir)
    return RedisBackend(mode, workdir, rebuild=rebuild)
