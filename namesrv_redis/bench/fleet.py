"""The broker fleet of ``bench capacity``: simulated brokers in a process of their own, each
with its own connection to every pod, registering on RocketMQ's (time-compressed) schedule.

A RocketMQ broker registers with *every* name server it is configured with, in parallel
(registerBrokerAll), every ``registerNameServerPeriod``; most registrations repeat the last
data version, some carry a new one (a topic was created or changed). The fleet does the same
and follows a :class:`Plan` that every process of the run shares (``time.monotonic()`` is one
clock for all processes of a Linux host):

- *fill*: every broker registers once, as fast as the pods take it (the estate coming up);
- the schedule: each broker at its own phase of the interval, a changed data version with
  probability ``change_probability`` (one topic swapped for another, so queue data is
  written, an event published and cached routes dropped);
- a *storm* at ``storm_at``: every broker re-registers within ``storm_spread_s`` with a new
  data version (what follows a Redis failover or a rolling restart of the brokers) and resumes
  its schedule from there;
- a *rack failure* at ``death_at``: the brokers in ``dying`` stop registering and keep their
  connections open, as brokers whose host lost power do: only the heartbeat timeout removes
  them.

Every registration is recorded (send time, latency, pod, response code, kind).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import time
from array import array
from dataclasses import dataclass, field, fields
from multiprocessing.connection import Connection
from typing import TypeVar

from namesrv_redis.bench.estate import Estate
from namesrv_redis.bench.loadgen import install_uvloop
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.sim.broker import SimBroker

FILL, UNCHANGED, CHANGED, STORM = 0, 1, 2, 3
KINDS = {FILL: "fill", UNCHANGED: "unchanged", CHANGED: "changed", STORM: "storm"}
TIMEOUT, DISCONNECTED = -1, -2
"""Codes recorded for a registration that got no answer."""
REGISTER_TIMEOUT_S = 6.0
"""A broker's registration timeout (registerBrokerAll's 6 s)."""


@dataclass
class Plan:
    """The shared timeline of one run (absolute ``time.monotonic()`` seconds)."""

    base: float
    storm_at: float
    death_at: float
    end_at: float
    dying: frozenset[int] = frozenset()
    storm_spread_s: float = 1.0
    change_probability: float = 0.05
    heartbeat_interval_s: float = 0.0
    seed: int = 1


class Records:
    """Parallel ``array`` fields (one record per index), shipped between processes as
    their bytes."""

    def to_dict(self) -> dict[str, bytes]:
        return {f.name: getattr(self, f.name).tobytes() for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[R], d: dict[str, bytes]) -> R:
        r = cls()
        for f in fields(r):  # type: ignore[arg-type]
            getattr(r, f.name).frombytes(d[f.name])
        return r

    def extend(self: R, other: R) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            getattr(self, f.name).extend(getattr(other, f.name))

    def __len__(self) -> int:
        return len(getattr(self, fields(self)[0].name))  # type: ignore[arg-type]


R = TypeVar("R", bound=Records)


@dataclass
class Registrations(Records):
    """One record per registration answer (or timeout), as parallel arrays."""

    t: array[float] = field(default_factory=lambda: array("d"))
    latency_us: array[int] = field(default_factory=lambda: array("I"))
    pod: array[int] = field(default_factory=lambda: array("B"))
    code: array[int] = field(default_factory=lambda: array("h"))
    kind: array[int] = field(default_factory=lambda: array("B"))

    def add(self, t: float, latency_s: float, pod: int, code: int, kind: int) -> None:
        self.t.append(t)
        self.latency_us.append(min(2**32 - 1, int(latency_s * 1e6)))
        self.pod.append(pod)
        self.code.append(code)
        self.kind.append(kind)


@dataclass
class _Broker:
    index: int
    sim: SimBroker
    conns: list[RemotingClient]
    extra: int = 0
    request: tuple[dict[str, str], bytes] | None = None
    last_ack: list[float] = field(default_factory=list)
    """Per pod: when its last registration was acknowledged."""

    def change(self) -> None:
        """A new data version: the broker's extra topic replaced by the next one."""
        self.sim.topics.pop(f"cap-extra-{self.index}-{self.extra}", None)
        self.extra += 1
        self.sim.add_topics([f"cap-extra-{self.index}-{self.extra}"])
        self.request = None


class Fleet:
    def __init__(self, estate: Estate, pods: list[tuple[str, int]], indices: list[int]) -> None:
        self.estate = estate
        self.pods = pods
        self.indices = indices
        self.brokers: list[_Broker] = []
        self.records = Registrations()

    async def connect(self, concurrency: int = 64) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(b: int) -> _Broker:
            async with gate:
                conns = [await RemotingClient.connect(h, p) for h, p in self.pods]
            sim = SimBroker(
                self.estate.cluster(b),
                self.estate.broker_name(b),
                self.estate.broker_addr(b),
                heartbeat_timeout_ms=self.estate.timeout_ms,
            )
            sim.add_topics(self.estate.topics_of(b))
            return _Broker(b, sim, conns, last_ack=[0.0] * len(self.pods))

        self.brokers = list(await asyncio.gather(*(one(b) for b in self.indices)))

    async def register(self, broker: _Broker, kind: int) -> None:
        """One registration with every pod, in parallel, as registerBrokerAll does."""
        if broker.request is None:
            broker.request = broker.sim.register_request()
        ext, body = broker.request

        async def to_pod(i: int, conn: RemotingClient) -> None:
            t = time.monotonic()
            try:
                resp = await conn.request(
                    RequestCode.REGISTER_BROKER,
                    ext,
                    body,
                    version=broker.sim.version,
                    timeout=REGISTER_TIMEOUT_S,
                )
                code = resp.code if resp is not None else TIMEOUT
            except TimeoutError:
                code = TIMEOUT
            except ConnectionError:
                code = DISCONNECTED
            now = time.monotonic()
            self.records.add(t, now - t, i, code, kind)
            if code == 0:
                broker.last_ack[i] = now

        await asyncio.gather(*(to_pod(i, c) for i, c in enumerate(broker.conns)))

    async def fill(self, concurrency: int = 32) -> float:
        """Every broker registered once; returns the seconds it took."""
        gate = asyncio.Semaphore(concurrency)
        t = time.monotonic()

        async def one(b: _Broker) -> None:
            async with gate:
                await self.register(b, FILL)

        await asyncio.gather(*(one(b) for b in self.brokers))
        return time.monotonic() - t

    async def run(self, plan: Plan) -> None:
        await asyncio.gather(*(self._schedule(b, plan) for b in self.brokers))

    async def _schedule(self, broker: _Broker, plan: Plan) -> None:
        interval = self.estate.interval_s
        rng = random.Random(plan.seed * 1_000_003 + broker.index)
        dies = broker.index in plan.dying
        beats = (
            asyncio.create_task(self._heartbeats(broker, plan, dies))
            if plan.heartbeat_interval_s > 0
            else None
        )
        next_t = plan.base + rng.uniform(0, interval)
        stormed = False
        try:
            while True:
                kind = UNCHANGED
                if not stormed and next_t >= plan.storm_at:
                    next_t = plan.storm_at + rng.uniform(0, plan.storm_spread_s)
                    stormed, kind = True, STORM
                if next_t >= plan.end_at or (dies and next_t >= plan.death_at):
                    return
                await sleep_until(next_t)
                if kind == STORM or rng.random() < plan.change_probability:
                    broker.change()
                    kind = kind if kind == STORM else CHANGED
                await self.register(broker, kind)
                next_t += interval
                while next_t < time.monotonic():  # a fixed-rate schedule that fell behind
                    next_t += interval
        finally:
            if beats is not None:
                beats.cancel()

    async def _heartbeats(self, broker: _Broker, plan: Plan, dies: bool) -> None:
        """RocketMQ 5's BROKER_HEARTBEAT between registrations (brokerHeartbeatInterval)."""
        ext = {
            "clusterName": broker.sim.cluster,
            "brokerAddr": broker.sim.addr,
            "brokerName": broker.sim.name,
            "brokerId": "0",
        }
        t = plan.base + random.Random(broker.index).uniform(0, plan.heartbeat_interval_s)
        while t < plan.end_at and not (dies and t >= plan.death_at):
            await sleep_until(t)
            for conn in broker.conns:
                with contextlib.suppress(ConnectionError, TimeoutError):
                    await conn.request(RequestCode.BROKER_HEARTBEAT, ext, oneway=True)
            t += plan.heartbeat_interval_s

    async def close(self) -> None:
        for b in self.brokers:
            for c in b.conns:
                with contextlib.suppress(Exception):
                    await c.close()


async def sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def raise_fd_limit() -> None:
    """Thousands of connections: the soft descriptor limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def fleet_process(
    estate: Estate, pods: list[tuple[str, int]], indices: list[int], conn: Connection
) -> None:
    """Entry point of one fleet process: connect, fill, report; then run the plan it is sent
    and send back its records and its dying brokers' last acknowledgements."""
    raise_fd_limit()
    install_uvloop()

    async def main() -> None:
        fleet = Fleet(estate, pods, indices)
        await fleet.connect()
        fill_s = await fleet.fill()
        failed = sum(1 for c in fleet.records.code if c != 0)
        conn.send(("filled", {"seconds": fill_s, "failed": failed}))
        # registering on schedule until the plan comes: a broker whose registrations stop is
        # removed after its timeout (and the measurements before the plan can take longer)
        never = float("inf")
        keep_alive = asyncio.create_task(
            fleet.run(Plan(time.monotonic(), never, never, never, change_probability=0.0))
        )
        plan: Plan = await asyncio.to_thread(conn.recv)
        keep_alive.cancel()
        await asyncio.gather(keep_alive, return_exceptions=True)
        await fleet.run(plan)
        last_ack = {b.index: b.last_ack for b in fleet.brokers if b.index in plan.dying}
        conn.send(("result", fleet.records.to_dict(), last_ack))
        await asyncio.to_thread(conn.recv)  # "close": the run is over
        await fleet.close()

    asyncio.run(main())
