"""The workload of ``bench persistence``: B brokers re-registering (in closed loops, or paced
at a fixed total rate), each time with a new data version (a new marker topic beside its K
topics, so every acknowledged registration leaves something to look for afterwards), a KV
writer (PUT_KV_CONFIG of fresh keys, as ``mqadmin updateKvConfig`` does), and route readers.
Every acknowledgement is kept in a :class:`Ledger`, so that after a crash one can count what
survived of it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from namesrv_redis.bench.persist_backends import KV_NAMESPACE
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.sim.broker import SimBroker

TIMEOUT_S = 3.0


@dataclass
class Ledger:
    """Acknowledged writes and latencies (µs) of one window of the workload."""

    registrations: list[tuple[str, str]] = field(default_factory=list)  # (marker topic, broker)
    kv_keys: list[str] = field(default_factory=list)
    reg_us: list[int] = field(default_factory=list)
    kv_us: list[int] = field(default_factory=list)
    route_us: list[int] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


@dataclass(frozen=True)
class Pace:
    """Rates (per second, whole workload) of a paced run; None everywhere: closed loops."""

    registrations: float | None = None
    kv_writes: float | None = None
    routes: float | None = None


CLOSED = Pace()


class _Ticker:
    """Sleeps to the next tick of a fixed rate (no catching up in bursts when late)."""

    def __init__(self, rate: float | None, phase: float = 0.0) -> None:
        self.interval = 1 / rate if rate else 0.0
        self.next = time.perf_counter() + phase * self.interval

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.perf_counter()
        if self.next > now:
            await asyncio.sleep(self.next - now)
        self.next = max(self.next, now) + self.interval


class _Conn:
    """A connection that comes back after the server behind it was killed."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.client: RemotingClient | None = None

    async def get(self) -> RemotingClient:
        if self.client is None or self.client.closed.done():
            self.client = await RemotingClient.connect(self.host, self.port)
        return self.client

    async def close(self) -> None:
        if self.client is not None and not self.client.closed.done():
            await self.client.close()


class Workload:
    """Brokers, a KV writer and route readers against one name server."""

    def __init__(
        self, host: str, port: int, brokers: int, topics: int, route_conns: int, seed: int
    ) -> None:
        self.host, self.port = host, port
        self.route_conns = route_conns
        self.rng = random.Random(seed)
        self.sims = []
        for b in range(brokers):
            sim = SimBroker("PersistCluster", f"persist-broker-{b}", f"127.0.0.1:{22000 + b}")
            sim.add_topics([f"persist-topic-{b}-{t}" for t in range(topics)])
            self.sims.append(sim)
        self.base_topics = [(t, s.name) for s in self.sims for t in s.topics]
        self.markers: dict[str, str] = {}  # broker -> its current marker topic
        self.conns = [_Conn(host, port) for _ in self.sims]
        self._seq = itertools.count()
        self._kv_seq = itertools.count()
        self._stop = False

    def wanted_routes(self, ledger: Ledger) -> list[tuple[str, str]]:
        """Every route a client should find: the brokers' topics and their newest markers."""
        newest: dict[str, str] = {}
        for topic, broker in ledger.registrations:
            newest[broker] = topic
        return self.base_topics + [(t, b) for b, t in newest.items()]

    async def _register(self, i: int, ledger: Ledger, record: bool) -> None:
        sim = self.sims[i]
        old = self.markers.get(sim.name)
        if old is not None:
            sim.topics.pop(old, None)
        marker = f"persist-mark-{i}-{next(self._seq)}"
        sim.add_topics([marker])  # a new data version
        self.markers[sim.name] = marker
        ext, body = sim.register_request()
        t = time.perf_counter()
        try:
            client = await self.conns[i].get()
            resp = await client.request(
                RequestCode.REGISTER_BROKER, ext, body, version=sim.version, timeout=TIMEOUT_S
            )
        except (OSError, ConnectionError, TimeoutError):
            ledger.error("register_io")
            await asyncio.sleep(0.05)
            return
        if resp is None or resp.code != 0:
            ledger.error(f"register_code_{resp.code if resp else None}")
            await asyncio.sleep(0.02)
            return
        ledger.registrations.append((marker, sim.name))
        if record:
            ledger.reg_us.append(int((time.perf_counter() - t) * 1e6))

    async def register_all(self, ledger: Ledger) -> None:
        await asyncio.gather(*(self._register(i, ledger, False) for i in range(len(self.sims))))

    async def _broker_loop(self, i: int, ledger: Ledger, rate: float | None) -> None:
        tick = _Ticker(rate, i / len(self.sims))
        while not self._stop:
            await tick.wait()
            await self._register(i, ledger, True)

    async def _kv_loop(self, ledger: Ledger, rate: float | None) -> None:
        conn = _Conn(self.host, self.port)
        tick = _Ticker(rate or 500)  # an operator's tool, not a flood
        try:
            while not self._stop:
                await tick.wait()
                n = next(self._kv_seq)
                key = f"persist-kv-{n}"
                t = time.perf_counter()
                try:
                    client = await conn.get()
                    resp = await client.request(
                        RequestCode.PUT_KV_CONFIG,
                        {"namespace": KV_NAMESPACE, "key": key, "value": f"value-{n}"},
                        timeout=TIMEOUT_S,
                    )
                except (OSError, ConnectionError, TimeoutError):
                    ledger.error("kv_io")
                    await asyncio.sleep(0.05)
                    continue
                if resp is None or resp.code != 0:
                    ledger.error("kv_code")
                    await asyncio.sleep(0.02)
                    continue
                ledger.kv_keys.append(key)
                ledger.kv_us.append(int((time.perf_counter() - t) * 1e6))
        finally:
            await conn.close()

    async def _route_loop(self, ledger: Ledger, seed: int, rate: float | None) -> None:
        rng = random.Random(seed)
        conn = _Conn(self.host, self.port)
        tick = _Ticker(rate, rng.random())
        try:
            while not self._stop:
                await tick.wait()
                topic, _ = self.base_topics[rng.randrange(len(self.base_topics))]
                t = time.perf_counter()
                try:
                    client = await conn.get()
                    resp = await client.request(
                        RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic}, timeout=TIMEOUT_S
                    )
                except (OSError, ConnectionError, TimeoutError):
                    ledger.error("route_io")
                    await asyncio.sleep(0.05)
                    continue
                if resp is None or resp.code != 0:
                    ledger.error("route_code")
                    await asyncio.sleep(0.01)
                    continue
                ledger.route_us.append(int((time.perf_counter() - t) * 1e6))
        finally:
            await conn.close()

    @contextlib.asynccontextmanager
    async def running(self, ledger: Ledger, pace: Pace = CLOSED) -> AsyncIterator[None]:
        """The whole workload runs inside the block and stops at its end: answers already
        on their way are still counted (they were acknowledged)."""
        self._stop = False
        per_broker = pace.registrations / len(self.sims) if pace.registrations else None
        per_conn = pace.routes / self.route_conns if pace.routes else None
        tasks = [
            asyncio.create_task(self._broker_loop(i, ledger, per_broker))
            for i in range(len(self.sims))
        ]
        tasks.append(asyncio.create_task(self._kv_loop(ledger, pace.kv_writes)))
        tasks += [
            asyncio.create_task(self._route_loop(ledger, self.rng.randrange(1 << 30), per_conn))
            for _ in range(self.route_conns)
        ]
        try:
            yield
        finally:
            self._stop = True
            _, pending = await asyncio.wait(tasks, timeout=TIMEOUT_S + 1)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        for c in self.conns:
            await c.close()
