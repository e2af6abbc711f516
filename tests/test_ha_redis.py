"""Failures of a standalone Redis, on real processes: writes confirmed by replicas (WAIT), a
hung Redis (SIGSTOP) answered within the deadlines, and Redis restarted empty or flushed while
brokers stay connected — the pods re-apply their registrations within 2 s. Each test runs on
redis-server and on valkey-server (``server_kind``)."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.rocketmq.model import QueueConfig
from namesrv_redis.sim.broker import SimBroker
from namesrv_redis.store.connection import create_redis, parse_target
from namesrv_redis.store.keys import Keys
from namesrv_redis.store.replication import Replication, ReplicationNotConfirmed
from namesrv_redis.store.route_store import BrokerRegistration, RegisterStatus, RouteStore
from namesrv_redis.store.topology import Topology
from tests.conftest import RedisServerProcess
from tests.redis_topologies import command, replica_synced, wait_until
from tests.serverproc import NamesrvProcess

pytestmark = [pytest.mark.real_redis, pytest.mark.slow]


def _reg(name: str, addr: str, topics: list[str]) -> BrokerRegistration:
    return BrokerRegistration(
        "C", addr, name, 0, topics=[QueueConfig(t, 4, 4, 6, 0) for t in topics]
    )


# ------------------------------------------------------------------ replication confirmation


async def test_writes_wait_for_the_replica_and_are_refused_without_it(
    namespace: str, server_kind: str
) -> None:
    master = RedisServerProcess(kind=server_kind).start()
    replica = RedisServerProcess(
        "--replicaof", "127.0.0.1", str(master.port), kind=server_kind
    ).start()
    client: Any = create_redis(master.url)
    try:
        wait_until(
            lambda: replica_synced(master.port, replica.port),
            10,
            "the replica to sync",
        )
        replication = Replication()  # auto: the replicas the master has, capped at 1
        store = RouteStore(client, namespace, replication=replication)
        await store.load_scripts()
        topology = Topology(client, parse_target(master.url), store.keys, replication=replication)
        await topology.check(replicas_now=True)
        assert replication.wanted == 1

        result = await store.register_broker(_reg("b1", "10.0.0.1:1", ["T1", "T2"]))
        assert result.status is RegisterStatus.OK
        # acknowledged means on the replica already, not "soon"
        assert command(replica.port, "HEXISTS", store.keys.topic("T1"), "b1").endswith(":1\r\n")

        os.kill(replica.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
        try:
            t = time.monotonic()
            with pytest.raises(ReplicationNotConfirmed, match="not confirmed by 1 replica"):
                await store.register_broker(_reg("b2", "10.0.0.2:1", ["T3", "T4"]))
            assert time.monotonic() - t < 1.9  # the WAIT timeout (1 s), inside the 2 s deadline
            # liveness refreshes are not confirmed: they never fail for want of a replica
            assert await store.heartbeat("C", "10.0.0.1:1")
        finally:
            os.kill(replica.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]

        replica.stop()  # the replica is gone for good: auto mode stops waiting for it
        await asyncio.sleep(0.3)
        await topology.check(replicas_now=True)
        assert replication.wanted == 0
        result = await store.register_broker(_reg("b3", "10.0.0.3:1", ["T5", "T6"]))
        assert result.status is RegisterStatus.OK
    finally:
        await client.aclose()
        replica.stop()
        master.stop()


# ------------------------------------------------------------------ a hung Redis


@pytest.fixture
def own_redis(server_kind: str) -> Iterator[RedisServerProcess]:
    server = RedisServerProcess(kind=server_kind).start()
    yield server
    os.kill(server.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
    server.stop()


async def _timed(coro: Any) -> tuple[Any, float]:
    t = time.monotonic()
    result = await coro
    return result, time.monotonic() - t


async def test_a_hung_redis_is_answered_within_the_deadlines(
    own_redis: RedisServerProcess, namespace: str
) -> None:
    pod = NamesrvProcess(own_redis.url, namespace).start()
    client = await RemotingClient.connect("127.0.0.1", pod.port)
    try:
        broker = SimBroker("C", "b1", "10.0.0.1:10911")
        broker.add_topics(["Cached", "Cached2"])
        assert (await broker.register(client)).code == 0
        route = {"topic": "Cached"}
        assert (await client.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, route)).code == 0  # type: ignore[union-attr]

        os.kill(own_redis.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
        resp, took = await _timed(
            client.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "NeverAsked"})
        )
        assert resp is not None and resp.code == 1, resp
        assert "timed out" in (resp.remark or "")
        assert took < 1.6, f"uncached route answered after {took:.2f}s"

        broker.bump()
        resp, took = await _timed(broker.register(client))
        assert resp.code == 1 and "timed out" in (resp.remark or "")
        assert took < 2.6, f"registration answered after {took:.2f}s"

        resp, took = await _timed(client.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, route))
        assert resp is not None and resp.code == 0, "a cached route must still be served"
        assert took < 0.5

        async with httpx.AsyncClient() as http:
            r, took = await _timed(http.get(f"http://127.0.0.1:{pod.http_port}/readyz"))
        assert r.status_code == 503 and took < 1.6, (r.status_code, took)

        os.kill(own_redis.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
        broker.bump()
        assert (await broker.register(client)).code == 0
        assert "Traceback" not in pod.log_path.read_text()
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
        await client.close()
        pod.stop()


# ------------------------------------------------------------------ Redis lost its data


@pytest.fixture
async def two_pods(
    own_redis: RedisServerProcess, namespace: str
) -> AsyncIterator[list[NamesrvProcess]]:
    pods = [NamesrvProcess(own_redis.url, namespace).start() for _ in range(2)]
    yield pods
    for p in pods:
        p.stop()


async def _all_routes(clients: list[RemotingClient], topics: list[str]) -> bool:
    for c in clients:
        for t in topics:
            try:
                resp = await c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": t}, timeout=1)
            except (TimeoutError, ConnectionError):
                return False
            if resp is None or resp.code != 0:
                return False
    return True


async def _routes_back_after(
    pods: list[NamesrvProcess],
    clients: list[RemotingClient],
    topics: list[str],
    limit_s: float = 10,
) -> float:
    """Seconds until every pod has found the loss, re-applied its brokers and answers every
    route (a pod that has not noticed yet still answers from its cache)."""
    t = time.monotonic()
    while time.monotonic() - t < limit_s:
        noticed = all("re-applied" in p.log_path.read_text() for p in pods)
        if noticed and await _all_routes(clients, topics):
            return time.monotonic() - t
        await asyncio.sleep(0.05)
    raise AssertionError(f"routes not back within {limit_s}s")


async def _connected_brokers(pods: list[NamesrvProcess]) -> tuple[list[RemotingClient], list[str]]:
    clients, topics = [], []
    for i in range(6):
        c = await RemotingClient.connect("127.0.0.1", pods[i % 2].port)
        b = SimBroker("C", f"b{i}", f"10.0.0.{i}:10911")
        b.add_topics([f"T{i}", f"T{i}x"])
        assert (await b.register(c)).code == 0
        clients.append(c)
        topics.append(f"T{i}")
    return clients, topics


@pytest.mark.parametrize("loss", ["restart", "flushall"])
async def test_routes_come_back_without_the_brokers_registering_again(
    own_redis: RedisServerProcess, two_pods: list[NamesrvProcess], loss: str
) -> None:
    brokers, topics = await _connected_brokers(two_pods)
    readers = [await RemotingClient.connect("127.0.0.1", p.port) for p in two_pods]
    # one broker leaves for real, another one's connection drops: neither may come back
    left = SimBroker("C", "gone", "10.0.9.1:10911")
    left.add_topics(["Left", "Left2"])
    assert (await left.register(brokers[0])).code == 0
    await left.unregister(brokers[0])
    dropped_client = await RemotingClient.connect("127.0.0.1", two_pods[1].port)
    dropped = SimBroker("C", "dropped", "10.0.9.2:10911")
    dropped.add_topics(["Dropped", "Dropped2"])
    assert (await dropped.register(dropped_client)).code == 0
    await dropped_client.close()
    try:
        assert await _all_routes(readers, topics)
        if loss == "restart":
            port = own_redis.port
            own_redis.stop()
            own_redis.port, own_redis.dir = port, tempfile.mkdtemp(prefix="nsr-test-redis-")
            own_redis.start()  # empty: no persistence
        else:
            command(own_redis.port, "FLUSHALL")
        took = await _routes_back_after(two_pods, readers, topics)
        print(f"\nroutes back {took * 1000:.0f} ms after Redis {loss}")
        assert took < 2.0
        for gone in ("Left", "Dropped"):
            resp = await readers[0].request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": gone})
            assert resp is not None and resp.code == 17, f"{gone} came back"
        logs = "".join(p.log_path.read_text() for p in two_pods)
        assert "lost the data of namespace" in logs and "re-applied 3 of 3" in logs
    finally:
        for c in brokers + readers:
            await c.close()


async def test_the_epoch_is_shared_by_every_pod(
    own_redis: RedisServerProcess, two_pods: list[NamesrvProcess], namespace: str
) -> None:
    client: Any = create_redis(own_redis.url)
    try:
        epoch = await client.get(Keys(namespace).epoch)
        assert epoch
        await asyncio.sleep(1.2)  # both pods polled: nobody replaced it
        assert await client.get(Keys(namespace).epoch) == epoch
    finally:
        await client.aclose()


# ------------------------------------------------------------------ keyspace notifications


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


async def test_notifications_switched_off_are_switched_on_again(
    own_redis: RedisServerProcess, namespace: str
) -> None:
    pod = NamesrvProcess(own_redis.url, namespace).start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{pod.http_port}") as http:
            # as after a restart or a promotion that brought the node's own setting
            command(own_redis.port, "CONFIG", "SET", "notify-keyspace-events", "")
            wait_until(
                lambda: "x" in command(own_redis.port, "CONFIG", "GET", "notify-keyspace-events"),
                5,
                "the pod to turn expiry events on again",
            )
            # switched back on, the pod observes them again at once (a probe key's expiry)
            for _ in range(50):
                metrics = (await http.get("/metrics")).text
                if _metric(metrics, "namesrv_keyspace_notifications") == 1:
                    break
                await asyncio.sleep(0.1)
            assert _metric(metrics, "namesrv_keyspace_notifications") == 1
            ready = (await http.get("/readyz")).json()
            assert ready["status"] == "ready" and "notices" not in ready
    finally:
        pod.stop()
    assert "notify-keyspace-events was ''" in pod.log_path.read_text()


async def test_notifications_that_cannot_be_enabled_are_reported(
    namespace: str, server_kind: str
) -> None:
    server = RedisServerProcess(
        "--notify-keyspace-events",
        "",
        "--rename-command",
        "CONFIG",
        "NSR_HIDDEN_CONFIG",
        kind=server_kind,
    ).start()
    pod = NamesrvProcess(server.url, namespace).start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{pod.http_port}") as http:
            # judged by a probe key whose expiry event does not come (300 ms TTL + 2 s wait)
            for _ in range(100):
                ready = (await http.get("/readyz")).json()
                if any("no expired-key event seen" in n for n in ready.get("notices", [])):
                    break
                await asyncio.sleep(0.1)
            assert ready["status"] == "ready"
            assert any("sweeper only" in n for n in ready["notices"]), ready
            assert _metric((await http.get("/metrics")).text, "namesrv_keyspace_notifications") == 0
    finally:
        pod.stop()
        server.stop()
    assert "cannot check or set notify-keyspace-events" in pod.log_path.read_text()
