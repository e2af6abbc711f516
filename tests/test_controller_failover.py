"""Controller-mode failover with two pods on one real redis-server and simulated controller-mode
brokers (namesrv_redis/sim/controller_broker.py) that heartbeat both pods: a closed master
connection, a master that stops heartbeating, and pods racing one election."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from namesrv_redis.process.pod import Pod
from namesrv_redis.settings.config import Settings
from namesrv_redis.sim.controller_broker import ControllerBroker
from namesrv_redis.store.controller_store import ControllerStore
from namesrv_redis.store.route_store import RouteStore

G = "bset"


async def started_pods(url: str, namespace: str, n: int, **options: Any) -> list[Pod]:
    """``n`` in-process pods (remoting only, on free loopback ports) sharing one namespace."""
    out: list[Pod] = []
    for _ in range(n):
        s = Settings(
            redis_url=url, namespace=namespace, listen_host="127.0.0.1", listen_port=0, **options
        )
        p = Pod(s, http=False)
        await p.start()
        out.append(p)
    return out


async def stop_pods(pods: list[Pod]) -> None:
    for p in pods:
        await p.stop(grace_s=1.0)


@pytest.fixture
async def pods(redis_server: Any, namespace: str) -> AsyncIterator[list[Pod]]:
    out = await started_pods(redis_server.url, namespace, 2, scan_inactive_master_interval=500)
    try:
        yield out
    finally:
        await stop_pods(out)


def addresses(pods: list[Pod]) -> list[str]:
    return [f"127.0.0.1:{p.remoting.bound_port}" for p in pods if p.remoting is not None]


async def until(check: Any, within_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not await check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def estate(pods: list[Pod], timeout_ms: int = 10_000) -> list[ControllerBroker]:
    a, b = addresses(pods)
    master = ControllerBroker("DefaultCluster", G, [a, b], heartbeat_timeout_ms=timeout_ms)
    slave = ControllerBroker("DefaultCluster", G, [b, a], heartbeat_timeout_ms=timeout_ms)
    await master.start()
    await slave.start()
    assert (master.broker_id, slave.broker_id) == (1, 2)
    assert master.is_master and slave.master_id == 1 and master.master_epoch == 1
    assert (await master.report_sync_state_set([1, 2])).code == 0
    return [master, slave]


def won(pods: list[Pod]) -> int:
    return sum(
        p.processor.controller.elections_won for p in pods if p.processor and p.processor.controller
    )


async def test_closed_master_connection_elects_the_slave_once(pods: list[Pod]) -> None:
    master, slave = await estate(pods)
    before, seen = won(pods), len(slave.notifications)
    await master.kill()

    async def slave_is_master() -> bool:
        return slave.is_master

    await until(slave_is_master, 5.0)  # through the 1008 the winning pod sent
    assert slave.master_epoch == 2 and slave.sync_state_set == [2]
    await asyncio.sleep(1.0)  # the other pod's triggers (expiry, sweep, scan) change nothing
    assert won(pods) - before == 1
    assert len(slave.notifications) - seen == 1  # exactly one 1008 per live broker
    await slave.poll()
    assert slave.master_epoch == 2
    await slave.kill()


async def test_master_that_stops_heartbeating_is_replaced_after_its_timeout(
    pods: list[Pod],
) -> None:
    master, slave = await estate(pods, timeout_ms=1500)
    master.freeze()  # SIGSTOP: connections stay open
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def slave_is_master() -> bool:
        return slave.is_master

    await until(slave_is_master, 10.0)
    elapsed = loop.time() - t0
    assert elapsed >= 0.4  # not before the heartbeat timeout had a chance to run out
    assert slave.master_epoch == 2
    # the old master comes back: the controller's higher epoch demotes it
    await master.heartbeat()
    await master.poll()
    assert master.master_id == 2 and not master.is_master
    await master.kill()
    await slave.kill()


async def test_pods_racing_one_election_never_hand_out_an_epoch_twice(
    real_redis: Any, namespace: str
) -> None:
    store = RouteStore(real_redis, namespace)
    await store.load_scripts()
    stores = [ControllerStore(store) for _ in range(8)]
    c = stores[0]
    for i in (1, 2, 3):
        await c.apply_broker_id("C", G, i, f"127.0.0.1:{i};1")
        await c.heartbeat(
            "C",
            G,
            i,
            f"127.0.0.1:{i}",
            epoch=0,
            max_offset=i,
            confirm_offset=0,
            timeout_ms=10_000,
            priority=0,
            conn_id="x",
        )
    await c.elect(G, 1)
    await c.alter_sync_state_set(G, 1, 1, 1, [1, 2, 3])
    epochs: list[int] = []
    for _ in range(5):
        g = await c.group(G)
        assert g is not None and g.master is not None
        await c.drop(G, g.master, "x")
        results = await asyncio.gather(
            *(s.elect(G, -1, expect_epoch=g.master_epoch, expect_dead=g.master) for s in stores)
        )
        winners = [r for r in results if r.code == 0]
        assert len(winners) == 1, [r.code for r in results]
        assert winners[0].group is not None
        epochs.append(winners[0].group.master_epoch)
        # the dead one comes back as a live replica for the next round
        await c.heartbeat(
            "C",
            G,
            g.master,
            "a",
            epoch=0,
            max_offset=0,
            confirm_offset=0,
            timeout_ms=10_000,
            priority=0,
            conn_id="x",
        )
        m = winners[0].group
        await c.alter_sync_state_set(
            G, m.master or 0, m.master_epoch, m.sync_state_set_epoch, sorted({1, 2, 3})
        )
    assert epochs == sorted(set(epochs)) and len(epochs) == 5


async def test_a_separate_controller_port_answers_and_is_named_the_leader(
    redis_server: Any, namespace: str
) -> None:
    from namesrv_redis.remoting.client import RemotingClient
    from tests.conftest import free_port

    port = free_port()
    [pod] = await started_pods(redis_server.url, namespace, 1, controller_listen_port=port)
    try:
        for p in (port, pod.remoting.bound_port if pod.remoting else 0):
            client = await RemotingClient.connect("127.0.0.1", p)
            meta = await client.request(1005)
            assert meta is not None and meta.ext_fields is not None
            assert meta.ext_fields["controllerLeaderAddress"] == f"127.0.0.1:{port}"
            nxt = await client.request(1012, {"clusterName": "C", "brokerName": G})
            assert nxt is not None and nxt.ext_fields == {
                "clusterName": "C",
                "nextBrokerId": "1",
                "brokerName": G,
            }
            await client.close()
    finally:
        await stop_pods([pod])


async def test_a_pod_stopped_in_the_middle_of_an_election_leaves_one_master(
    redis_server: Any, namespace: str
) -> None:
    """The pod holding the master's connection goes away while that close triggers the
    election: the other pod (expiry event, sweep, scan) finishes it; one master, one epoch."""
    pods = await started_pods(redis_server.url, namespace, 2, scan_inactive_master_interval=500)
    try:
        master, slave = await estate(pods, timeout_ms=1500)
        killing = asyncio.create_task(master.kill())
        await pods[0].stop(grace_s=0.0)  # gone at once: whatever it had started is cut off
        await killing

        async def slave_is_master() -> bool:
            await slave.poll()
            return slave.is_master

        await until(slave_is_master, 15.0)
        await asyncio.sleep(1.0)  # late triggers of the surviving pod change nothing
        await slave.poll()
        assert (slave.master_id, slave.master_epoch, slave.sync_state_set) == (2, 2, [2])
        await slave.kill()
    finally:
        await stop_pods(pods[1:])
