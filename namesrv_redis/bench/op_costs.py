"""``bench capacity``'s cost phase: the pod CPU and Redis CPU of one broker operation.

Measured on quiet pods (before the estate fills them) with brokers of their own: each of
``brokers`` brokers of ``topics`` topics holds a connection to every pod and, for each kind in
turn, sends ``rounds`` operations to every pod, every broker in parallel and each broker's
operations one after another (a broker waits for its answer, as ``registerBrokerAll`` does):

- ``changed``: REGISTER_BROKER with a new data version (one topic swapped for another, so one
  topic's queue data is written, an event published and routes dropped: the fleet's change);
- ``unchanged``: REGISTER_BROKER repeating the last body (RocketMQ's 30 s re-registration);
- ``heartbeat``: BROKER_HEARTBEAT (RocketMQ 5 between registrations; sent two-way here so the
  driver knows when the pod is done: an upper bound for the broker's one-way heartbeat).

That is the cost at load, when requests arrive together and the pod batches their Redis
calls (the limit of a pod is reached there). The **paced** measurement sends the same kinds
open-loop at ``paced_rate`` a second, evenly spaced and the brokers in turn, as a fleet on its
schedule does when the pod is far from its limit: each request then wakes the pod alone and
pays its own system calls.

After a short unmeasured round of each kind (first-use costs), every pod's CPU (its process
tree, Redis excluded) and Redis' (``INFO cpu``), each less its idle rate, are read around
each kind and divided by the operations every pod answered; each kind is measured
``repeats`` times, the kinds alternating, and the median reported. The driver runs in a
process of its own, so its CPU is not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import statistics
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from namesrv_redis.bench.children import expect, reap
from namesrv_redis.bench.loadgen import install_uvloop
from namesrv_redis.bench.redis_stats import RedisSnapshot
from namesrv_redis.bench.stats import ProcessTree
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.sim.broker import SimBroker

KINDS = ("changed", "unchanged", "heartbeat")
DRIVER = "the cost driver"
CLUSTER = "CostCluster"


@dataclass(frozen=True)
class CostSpec:
    pods: list[tuple[str, int]]
    brokers: int = 50
    topics: int = 100
    rounds: int = 200
    repeats: int = 3
    """Each kind is measured this many times (alternating); the median is reported."""
    paced_rate: float = 300.0
    """Operations a second of the paced measurement (0: none)."""
    paced_seconds: float = 4.0
    timeout_ms: int = 120_000


class _Driver:
    def __init__(self, spec: CostSpec) -> None:
        self.spec = spec
        self.sims: list[SimBroker] = []
        self.conns: list[list[RemotingClient]] = []
        self.extra = [0] * spec.brokers
        self.requests: list[tuple[dict[str, str], bytes] | None] = [None] * spec.brokers

    async def connect(self) -> None:
        for b in range(self.spec.brokers):
            sim = SimBroker(
                CLUSTER,
                f"cost-broker-{b}",
                f"10.255.{b >> 8}.{b & 255}:10911",
                heartbeat_timeout_ms=self.spec.timeout_ms,
            )
            sim.add_topics([f"cost-topic-{b}-{t}" for t in range(self.spec.topics - 1)])
            sim.add_topics([f"cost-extra-{b}-0"])
            self.sims.append(sim)
            self.conns.append([await RemotingClient.connect(h, p) for h, p in self.spec.pods])
        await self.run("unchanged", 1)  # registered, remembered by every pod

    def _change(self, b: int) -> None:
        sim = self.sims[b]
        sim.topics.pop(f"cost-extra-{b}-{self.extra[b]}", None)
        self.extra[b] += 1
        sim.add_topics([f"cost-extra-{b}-{self.extra[b]}"])

    async def _one(self, kind: str, b: int) -> tuple[int, int]:
        """Broker ``b``'s operation of ``kind``, sent to every pod: (answered, failed)."""
        sim = self.sims[b]
        if kind == "heartbeat":
            code = RequestCode.BROKER_HEARTBEAT
            ext: dict[str, str] = {
                "clusterName": CLUSTER,
                "brokerAddr": sim.addr,
                "brokerName": sim.name,
                "brokerId": "0",
            }
            body: bytes | None = None
        else:
            if kind == "changed":
                self._change(b)
                self.requests[b] = None
            request = self.requests[b]
            if request is None:
                request = self.requests[b] = sim.register_request()
            code = RequestCode.REGISTER_BROKER
            ext, body = request
        answers = await asyncio.gather(
            *(c.request(code, ext, body, version=sim.version, timeout=30) for c in self.conns[b]),
            return_exceptions=True,
        )
        ok = sum(1 for a in answers if not isinstance(a, BaseException) and a and a.code == 0)
        return ok, len(answers) - ok

    async def run(self, kind: str, rounds: int) -> tuple[int, int]:
        """Closed loop: every broker at once, each its ``rounds`` operations one after the
        other. (operations answered, operations that failed)."""
        totals = [0, 0]

        async def broker(b: int) -> None:
            for _ in range(rounds):
                ok, failed = await self._one(kind, b)
                totals[0] += ok
                totals[1] += failed

        await asyncio.gather(*(broker(b) for b in range(len(self.sims))))
        return totals[0], totals[1]

    async def run_paced(self, kind: str, rate: float, seconds: float) -> tuple[int, int]:
        """Open loop: ``rate`` operations a second, evenly spaced, the brokers in turn — as a
        fleet on its schedule sends them, each one alone (nothing to batch it with)."""
        totals = [0, 0]
        pending: set[asyncio.Task[tuple[int, int]]] = set()
        busy: set[int] = set()
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            b = i % len(self.sims)
            if b in busy:  # its last operation is still out: a broker sends one at a time
                continue
            busy.add(b)
            task = asyncio.ensure_future(self._one(kind, b))
            pending.add(task)

            def done(t: asyncio.Task[tuple[int, int]], b: int = b) -> None:
                pending.discard(t)
                busy.discard(b)
                if not t.cancelled() and t.exception() is None:
                    ok, failed = t.result()
                    totals[0] += ok
                    totals[1] += failed

            task.add_done_callback(done)
        if pending:
            await asyncio.wait(pending)
        return totals[0], totals[1]

    async def unregister(self) -> None:
        for sim, conns in zip(self.sims, self.conns, strict=True):
            for c in conns:
                with contextlib.suppress(Exception):
                    await sim.unregister(c)
                with contextlib.suppress(Exception):
                    await c.close()


def cost_process(spec: CostSpec, conn: Connection) -> None:
    """The driver: connect and register, then run each kind it is sent."""
    install_uvloop()

    async def main() -> None:
        driver = _Driver(spec)
        await driver.connect()
        conn.send(("ready",))
        while True:
            msg = await asyncio.to_thread(conn.recv)
            if msg[0] == "close":
                break
            t = time.monotonic()
            if msg[0] == "paced":
                ok, failed = await driver.run_paced(msg[1], spec.paced_rate, spec.paced_seconds)
            else:
                ok, failed = await driver.run(msg[1], msg[2] if len(msg) > 2 else spec.rounds)
            conn.send(("done", ok, failed, time.monotonic() - t))
        await driver.unregister()
        conn.send(("closed",))

    asyncio.run(main())


def measure_costs(
    spec: CostSpec,
    trees: list[ProcessTree],
    redis_client: Any,
    redis_idle_cpu_pct: float,
    pod_idle_cpu_pct: float = 0.0,
) -> dict[str, Any]:
    """Pod CPU and Redis CPU per operation of each kind (microseconds), answers and seconds.
    ``*_idle_cpu_pct``: what Redis and each pod spend idle (their polls, crons), subtracted
    over each window."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=cost_process, args=(spec, child))
    proc.start()
    out: dict[str, Any] = {
        "brokers": spec.brokers,
        "topics": spec.topics,
        "rounds": spec.rounds,
        "repeats": spec.repeats,
    }
    try:
        expect(parent, "ready", 120, DRIVER)
        for kind in KINDS:  # warm-up, not measured: first-use costs, allocator growth
            parent.send(("run", kind, max(1, spec.rounds // 10)))
            expect(parent, "done", 300, DRIVER)
        modes = [("loaded", "run")] + ([("paced", "paced")] if spec.paced_rate > 0 else [])
        samples: dict[tuple[str, str], list[dict[str, float]]] = {
            (mode, k): [] for mode, _ in modes for k in KINDS
        }
        for _ in range(spec.repeats):  # kinds alternate: a noisy stretch hits each alike
            for mode, verb in modes:
                for kind in KINDS:
                    time.sleep(0.3)  # the last kind's events and polls settle
                    cpu0 = [t.cpu_s() for t in trees]
                    r0 = RedisSnapshot.take(redis_client)
                    parent.send((verb, kind))
                    _, ok, failed, seconds = expect(parent, "done", 300, DRIVER)
                    cpu1 = [t.cpu_s() for t in trees]
                    r1 = RedisSnapshot.take(redis_client)
                    idle = pod_idle_cpu_pct / 100 * seconds * len(trees)
                    pod_cpu = max(0.0, sum(cpu1) - sum(cpu0) - idle)
                    redis_cpu = max(0.0, r1.cpu_s - r0.cpu_s - redis_idle_cpu_pct / 100 * seconds)
                    samples[mode, kind].append(
                        {
                            "operations": ok,
                            "failed": failed,
                            "seconds": seconds,
                            "pod_cpu_us": pod_cpu / max(1, ok) * 1e6,
                            "redis_cpu_us": redis_cpu / max(1, ok) * 1e6,
                        }
                    )
        for (mode, kind), runs in samples.items():
            summary = {
                "operations": sum(int(r["operations"]) for r in runs),
                "failed": sum(int(r["failed"]) for r in runs),
                "seconds": round(sum(r["seconds"] for r in runs), 3),
                "pod_cpu_us": round(statistics.median(r["pod_cpu_us"] for r in runs), 1),
                "redis_cpu_us": round(statistics.median(r["redis_cpu_us"] for r in runs), 1),
                "pod_cpu_us_runs": [round(r["pod_cpu_us"], 1) for r in runs],
            }
            if mode == "loaded":
                out[kind] = summary
            else:
                out.setdefault("paced", {"rate": spec.paced_rate})[kind] = summary
        parent.send(("close",))
        expect(parent, "closed", 120, DRIVER)
    finally:
        reap(proc)
    return out


def format_costs(costs: dict[str, Any]) -> str:
    paced = costs.get("paced") or {}
    rows = [
        f"cost per operation ({costs['brokers']} brokers x {costs['topics']} topics, median of "
        f"{costs['repeats']}); loaded: {costs['rounds']} rounds to every pod, every broker at "
        f"once" + (f"; paced: {paced['rate']:g} a second, one at a time" if paced else "") + ":"
    ]
    for label, group in (("loaded", costs), ("paced", paced)):
        for kind in KINDS:
            c = group.get(kind)
            if not c:
                continue
            rows.append(
                f"  {label:<7}{kind:<10} pod CPU {c['pod_cpu_us']:>7.1f} us   Redis CPU "
                f"{c['redis_cpu_us']:>6.1f} us   ({c['operations']} answered, "
                f"{c['failed']} failed, {c['seconds']} s)"
            )
    return "\n".join(rows)
