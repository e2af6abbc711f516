"""The client side of ``bench capacity``, in a process of its own: paced RocketMQ clients and
two observers.

- **Clients**: each connection is one RocketMQ client (producer or consumer instance). It
  picks one name server at random and keeps it, as the client's NameServer selection does,
  holds ``topics_per_client`` random topics, and asks for each of their routes once per
  (time-compressed) ``pollNameServerInterval``. Every answer is recorded: send time,
  latency, response code.
- **Detection**: from the rack failure on, the route of a witness topic of every dying broker
  is asked of every pod every ``WATCH_PERIOD_S``; the moment a pod's answer stops naming the
  broker (or the topic is gone) is that pod's detection time for it.
- **Event lag**: every ``LAG_PERIOD_S`` the namespace's route version is read from Redis and
  then each pod's (``X-Namesrv-Index`` of its HTTP route answer, the version its event
  subscription reached). A pod behind Redis has not yet seen the events of those writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from namesrv_redis.bench.estate import Estate
from namesrv_redis.bench.fleet import TIMEOUT, Plan, Records, raise_fd_limit, sleep_until
from namesrv_redis.bench.loadgen import install_uvloop
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode

WATCH_PERIOD_S = 0.25
LAG_PERIOD_S = 0.2
ROUTE_TIMEOUT_S = 3.0
"""A RocketMQ client's route query timeout (3 s)."""


@dataclass
class ClientSpec:
    pods: list[tuple[str, int]]
    http_pods: list[tuple[str, int]]
    clients: int
    topics_per_client: int
    redis_url: str
    version_key: str
    seed: int = 7


@dataclass
class RouteAnswers(Records):
    t: array[float] = field(default_factory=lambda: array("d"))
    latency_us: array[int] = field(default_factory=lambda: array("I"))
    code: array[int] = field(default_factory=lambda: array("h"))

    def add(self, t: float, latency_s: float, code: int) -> None:
        self.t.append(t)
        self.latency_us.append(min(2**32 - 1, int(latency_s * 1e6)))
        self.code.append(code)


class ClientFleet:
    def __init__(self, estate: Estate, spec: ClientSpec) -> None:
        self.estate = estate
        self.spec = spec
        self.answers = RouteAnswers()
        self.detected: dict[int, list[float | None]] = {}
        """Dying broker -> per pod, when its witness route stopped naming it."""
        self.lag: list[tuple[float, int, list[int]]] = []
        """(time, Redis route version, each pod's version)."""
        self._conns: list[RemotingClient] = []

    async def connect(self) -> None:
        rng = random.Random(self.spec.seed)
        gate = asyncio.Semaphore(64)

        async def one() -> RemotingClient:
            host, port = rng.choice(self.spec.pods)
            async with gate:
                return await RemotingClient.connect(host, port)

        self._conns = list(await asyncio.gather(*(one() for _ in range(self.spec.clients))))

    async def run(self, plan: Plan) -> None:
        rng = random.Random(self.spec.seed + 1)
        n = self.estate.topic_count
        tasks = [
            self._client(
                conn,
                [self.estate.topic(rng.randrange(n)) for _ in range(self.spec.topics_per_client)],
                plan.base + rng.uniform(0, self.estate.client_poll_s),
                plan,
            )
            for conn in self._conns
        ]
        await asyncio.gather(*tasks, self._watch_detection(plan), self._watch_lag(plan))

    async def _client(
        self, conn: RemotingClient, topics: list[str], first: float, plan: Plan
    ) -> None:
        t = first
        while t < plan.end_at:
            await sleep_until(t)
            await asyncio.gather(*(self._ask(conn, topic) for topic in topics))
            t += self.estate.client_poll_s

    async def _ask(self, conn: RemotingClient, topic: str) -> None:
        t = time.monotonic()
        try:
            resp = await conn.request(
                RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic}, timeout=ROUTE_TIMEOUT_S
            )
            code = resp.code if resp is not None else TIMEOUT
        except (TimeoutError, ConnectionError):
            code = TIMEOUT
        self.answers.add(t, time.monotonic() - t, code)

    async def _watch_detection(self, plan: Plan) -> None:
        if not plan.dying:
            return
        # connected just before: a pod closes connections that stay silent after connecting
        await sleep_until(plan.death_at - 0.5)
        conns = [await RemotingClient.connect(h, p) for h, p in self.spec.pods]
        self.detected = {b: [None] * len(conns) for b in plan.dying}

        async def probe(b: int, pod: int) -> None:
            name = f'"brokerName":"{self.estate.broker_name(b)}"'.encode()
            with contextlib.suppress(TimeoutError, ConnectionError):
                resp = await conns[pod].request(
                    RequestCode.GET_ROUTEINFO_BY_TOPIC,
                    {"topic": self.estate.witness_topic(b)},
                    timeout=2,
                )
                if resp is not None and (resp.code != 0 or name not in (resp.body or b"")):
                    self.detected[b][pod] = time.monotonic()

        await sleep_until(plan.death_at)
        while time.monotonic() < plan.end_at:
            waiting = [
                (b, pod)
                for b, per_pod in self.detected.items()
                for pod, seen in enumerate(per_pod)
                if seen is None
            ]
            if not waiting:
                break
            await asyncio.gather(*(probe(b, pod) for b, pod in waiting))
            await asyncio.sleep(WATCH_PERIOD_S)
        for c in conns:
            await c.close()

    async def _watch_lag(self, plan: Plan) -> None:
        import redis.asyncio as aioredis

        client: Any = aioredis.Redis.from_url(self.spec.redis_url)
        http = [await _Http.open(h, p) for h, p in self.spec.http_pods]
        probe = f"/v1/routes/{self.estate.topic(0)}"
        try:
            await sleep_until(plan.base)
            while time.monotonic() < plan.end_at:
                with contextlib.suppress(Exception):
                    t = time.monotonic()
                    redis_v = int(await client.get(self.spec.version_key) or 0)
                    pods_v = [await h.index(probe) for h in http]
                    self.lag.append((t, redis_v, pods_v))
                await asyncio.sleep(LAG_PERIOD_S)
        finally:
            for h in http:
                h.close()
            await client.aclose()

    async def close(self) -> None:
        for c in self._conns:
            with contextlib.suppress(Exception):
                await c.close()


class _Http:
    """Just enough HTTP/1.1 keep-alive to read a route answer's X-Namesrv-Index."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, host: str, port: int) -> _Http:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, f"{host}:{port}")

    async def index(self, path: str) -> int:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        head = (await self.reader.readuntil(b"\r\n\r\n")).lower()
        length, index = 0, -1
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name == b"content-length":
                length = int(value)
            elif name == b"x-namesrv-index":
                index = int(value)
        await self.reader.readexactly(length)
        return index

    def close(self) -> None:
        self.writer.close()


def clients_process(estate: Estate, spec: ClientSpec, conn: Connection) -> None:
    """Entry point of the client process: connect, report, run the plan, send results."""
    raise_fd_limit()
    install_uvloop()

    async def main() -> None:
        fleet = ClientFleet(estate, spec)
        await fleet.connect()
        conn.send(("connected",))
        plan: Plan = await asyncio.to_thread(conn.recv)
        await fleet.run(plan)
        conn.send(("result", fleet.answers.to_dict(), fleet.detected, fleet.lag))
        await asyncio.to_thread(conn.recv)
        await fleet.close()

    asyncio.run(main())
