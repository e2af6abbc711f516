"""The controller's Redis state (lua/controller_*.lua through store/controller_store.py), on a
real redis-server: ids, registration, elections (DefaultElectPolicy), sync-state CAS, clean-up,
liveness by TTL, and scripts that refuse bad arguments without writing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ResponseError

from namesrv_redis.store.controller_store import STALE, ControllerStore
from namesrv_redis.store.route_store import RouteStore

G = "bset"
C = "DefaultCluster"


async def ctrl_of(redis: Any, namespace: str) -> ControllerStore:
    store = RouteStore(redis, namespace)
    await store.load_scripts()
    return ControllerStore(store)


async def beat(
    c: ControllerStore,
    broker_id: int,
    *,
    epoch: int = -1,
    max_offset: int = 0,
    priority: int = 2147483647,
    timeout_ms: int = 10_000,
    conn: str = "c1",
) -> bool:
    return await c.heartbeat(
        C,
        G,
        broker_id,
        f"127.0.0.1:{10900 + broker_id}",
        epoch=epoch,
        max_offset=max_offset,
        confirm_offset=0,
        timeout_ms=timeout_ms,
        priority=priority,
        conn_id=conn,
    )


async def two_brokers(c: ControllerStore) -> None:
    """The captured start-up: id 1 and 2 applied and registered, 1 elected, set {1, 2}."""
    for i in (1, 2):
        assert await c.next_broker_id(G) == i
        assert (await c.apply_broker_id(C, G, i, f"127.0.0.1:{10900 + i};17")).code == 0
        assert (await c.register(G, i, f"127.0.0.1:{10900 + i}")).code == 0
        await beat(c, i)
    r = await c.elect(G, 1)
    assert r.code == 0 and r.group is not None
    assert (r.group.master, r.group.master_epoch, r.group.sync_state_set_epoch) == (1, 1, 1)
    r = await c.alter_sync_state_set(G, 1, 1, 1, [1, 2])
    assert r.code == 0 and r.group is not None and r.group.sync_state_set == (1, 2)


async def test_ids_are_applied_once_per_check_code(real_redis: Any, namespace: str) -> None:
    c = await ctrl_of(real_redis, namespace)
    assert (await c.apply_broker_id(C, G, 2, "a:1;5")).code == 2014  # first id must be 1
    assert await c.group(G) is None
    assert (await c.apply_broker_id(C, G, 1, "a:1;5")).code == 0
    assert (await c.apply_broker_id(C, G, 1, "a:1;5")).code == 0  # idempotent retry
    assert (await c.apply_broker_id(C, G, 1, "b:1;6")).code == 2014  # taken
    assert await c.next_broker_id(G) == 2
    assert (await c.register(G, 3, "x:1")).code == 2010
    assert (await c.register("nosuch", 1, "x:1")).code == 2010
    r = await c.register(G, 1, "a:2")  # a new address is written
    assert r.group is not None and r.group.addrs == {1: "a:2"}


async def test_election_policy_and_epochs(real_redis: Any, namespace: str) -> None:
    c = await ctrl_of(real_redis, namespace)
    await two_brokers(c)
    r = await c.elect(G, 1, designate=True)
    assert r.code == 2011 and r.group is not None and r.group.master == 1  # still alive
    assert (await c.elect(G, 9, designate=True)).code == 2012  # not a candidate
    r = await c.elect(G, 2, designate=True)
    assert r.code == 0 and r.group is not None
    assert (r.group.master, r.group.master_epoch, r.group.sync_state_set_epoch) == (2, 2, 3)
    assert r.group.sync_state_set == (2,)
    # a stale master's report is fenced
    assert (await c.alter_sync_state_set(G, 1, 1, 2, [1, 2])).code == 2002
    assert (await c.alter_sync_state_set(G, 2, 1, 3, [1, 2])).code == 2000
    assert (await c.alter_sync_state_set(G, 2, 2, 1, [1, 2])).code == 2001
    assert (await c.alter_sync_state_set(G, 2, 2, 3, [2, 7])).code == 2003
    assert (await c.alter_sync_state_set(G, 2, 2, 3, [2])).code == 2013  # unchanged
    assert (await c.alter_sync_state_set(G, 2, 2, 3, [1])).code == 2013  # lacks the master
    assert (await c.alter_sync_state_set(G, 2, 2, 3, [1, 2])).code == 0


async def test_highest_epoch_then_offset_then_priority_wins(
    real_redis: Any, namespace: str
) -> None:
    c = await ctrl_of(real_redis, namespace)
    for i in (1, 2, 3, 4):
        await c.apply_broker_id(C, G, i, f"127.0.0.1:{10900 + i};1")
        await beat(c, i)
    await c.elect(G, 1)
    await c.alter_sync_state_set(G, 1, 1, 1, [1, 2, 3, 4])
    await beat(c, 2, epoch=1, max_offset=10, priority=5)
    await beat(c, 3, epoch=1, max_offset=20, priority=9)
    await beat(c, 4, epoch=1, max_offset=20, priority=1)
    assert await c.drop(G, 1, "c1")
    r = await c.elect(G, -1, expect_dead=1)
    assert r.code == 0 and r.group is not None and r.group.master == 4
    # the losers of the race: the master moved on, nothing is written
    before = await c.group(G)
    assert (await c.elect(G, -1, expect_dead=1)).code == STALE
    assert (await c.elect(G, -1, expect_epoch=1)).code == STALE
    assert await c.group(G) == before


async def test_no_candidate_clears_the_master_and_still_grows_the_epoch(
    real_redis: Any, namespace: str
) -> None:
    c = await ctrl_of(real_redis, namespace)
    await two_brokers(c)
    assert await c.drop(G, 1, "c1") and await c.drop(G, 2, "c1")
    r = await c.elect(G, -1)
    assert r.code == 2004 and r.group is not None
    assert (r.group.master, r.group.master_epoch) == (None, 2)
    # unclean election: any live replica, even outside the set
    await beat(c, 2)
    r = await c.elect(G, -1, unclean=True)
    assert r.code == 0 and r.group is not None and r.group.master == 2


async def test_unclean_election_reaches_outside_the_set(real_redis: Any, namespace: str) -> None:
    c = await ctrl_of(real_redis, namespace)
    await two_brokers(c)
    await c.apply_broker_id(C, G, 3, "127.0.0.1:10903;1")
    await beat(c, 3)
    await c.drop(G, 1, "c1")
    await c.drop(G, 2, "c1")
    assert (await c.elect(G, 2)).code == 2012
    r = await c.elect(G, -1, unclean=True)
    assert r.code == 0 and r.group is not None and r.group.master == 3


async def test_liveness_is_the_ttl_and_the_sweeper_finds_it(
    real_redis: Any, namespace: str
) -> None:
    c = await ctrl_of(real_redis, namespace)
    await two_brokers(c)
    assert await beat(c, 1, timeout_ms=100) is False  # was alive
    assert not await c.drop(G, 1, "another-connection")  # not its owner
    await asyncio.sleep(0.3)
    g = await c.group(G)
    assert g is not None and g.master == 1 and not g.master_alive
    assert (G, 1) in await c.sweep()
    assert (G, 1) not in await c.sweep()  # once
    r = await c.elect(G, -1, expect_dead=1)
    assert r.code == 0 and r.group is not None and r.group.master == 2


async def test_clean_refuses_living_brokers(real_redis: Any, namespace: str) -> None:
    c = await ctrl_of(real_redis, namespace)
    await two_brokers(c)
    assert (await c.clean("nosuch", [], living=False)).code == 2009
    r = await c.clean(G, [2], living=False)
    assert r.code == 2009 and r.remark == "Broker [bset,  2] is still alive, clean up failure"
    assert (await c.clean(G, [], living=False)).code == 2009
    await c.drop(G, 2, "c1")
    r = await c.clean(G, [2], living=False)
    assert r.code == 0 and r.group is not None
    assert r.group.addrs == {1: "127.0.0.1:10901"} and r.group.sync_state_set == (1,)
    assert (await c.clean(G, [], living=True)).code == 0
    assert await c.group(G) is None and await c.group_names() == []


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("controller_apply_id", ["c", "g", "0", "a;1"]),
        ("controller_apply_id", ["c", "g", "1", "no-semicolon"]),
        ("controller_apply_id", ["", "g", "1", "a;1"]),
        ("controller_register", ["g", "x", "a"]),
        ("controller_heartbeat", ["c", "g", "1", "a", "-2", "0", "0", "10000", "0", "c", "1"]),
        ("controller_heartbeat", ["c", "g", "1", "a", "1", "0", "0", "5", "0", "c", "1"]),
        ("controller_heartbeat", ["c", "g", "1", "a", "1", "1.5", "0", "10000", "0", "c", "1"]),
        ("controller_heartbeat", ["c", "g", "1", "a", "1", "0", "0", "10000", "0", "c", "x"]),
        ("controller_drop", ["g", "1", ""]),
        ("controller_sweep", ["0", "1"]),
        ("controller_sweep", ["10", "-1"]),
        ("controller_elect", ["g", "-2", "0", "0", "-1", "-1"]),
        ("controller_elect", ["g", "1", "yes", "0", "-1", "-1"]),
        ("controller_alter_sync_state", ["g", "1", "1", "1", "[]"]),
        ("controller_alter_sync_state", ["g", "1", "1", "1", "[1,1]"]),
        ("controller_alter_sync_state", ["g", "1", "1", "1", '{"a":1}']),
        ("controller_alter_sync_state", ["g", "1", "1", "1", "[1.5]"]),
        ("controller_clean", ["g", '["x"]', "0"]),
        ("controller_clean", ["g", "[]", "2"]),
        ("controller_elect", ["g", "1", "0", "0", "-1"]),
    ],
)
async def test_scripts_refuse_bad_arguments_without_writing(
    real_redis: Any, namespace: str, script: str, args: list[str]
) -> None:
    c = await ctrl_of(real_redis, namespace)
    await two_brokers(c)
    before = {k: await real_redis.dump(k) for k in await real_redis.keys(f"nsr:{{{namespace}}}:*")}
    with pytest.raises(ResponseError, match="invalid argument"):
        await getattr(c.scripts, script)(keys=[c.keys.prefix], args=args)
    after = {k: await real_redis.dump(k) for k in await real_redis.keys(f"nsr:{{{namespace}}}:*")}
    assert before.keys() == after.keys()
    for k in before:
        if b"ctrl-live" not in k:  # DUMP of a TTL key carries no TTL; its fields must match
            assert before[k] == after[k], k


async def test_liveness_ends_when_the_last_heartbeat_connection_closes(
    real_redis: Any, namespace: str
) -> None:
    c = await ctrl_of(real_redis, namespace)
    await two_brokers(c)
    await beat(c, 1, conn="pod-b/7")  # the broker heartbeats both pods
    assert not await c.drop(G, 1, "c1")  # pod A's connection closed: pod B's still carries it
    assert (await c.group(G)).master_alive  # type: ignore[union-attr]
    assert await c.drop(G, 1, "pod-b/7")
    assert not (await c.group(G)).master_alive  # type: ignore[union-attr]
    assert not await c.drop(G, 1, "pod-b/7")


async def test_check_verifies_the_controller_invariants(real_redis: Any, namespace: str) -> None:
    from namesrv_redis.store.check import check_namespace

    c = await ctrl_of(real_redis, namespace)
    await two_brokers(c)
    assert await check_namespace(real_redis, namespace) == []
    await real_redis.hset(c.keys.controller_group(G), "sset", "[2, 5]")
    kinds = {p.kind for p in await check_namespace(real_redis, namespace)}
    assert kinds == {"controller_master_not_in_set", "controller_unregistered_member"}
