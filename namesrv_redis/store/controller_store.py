"""RocketMQ 5 Controller mode: the controller's state in Redis (docs/controller.md).

Per broker group (brokerName) one hash holds the replica info (cluster, next broker id, each
id's address and registerCheckCode) and the sync state (master id, masterEpoch, sync-state
set, syncStateSetEpoch); per broker id a liveness hash with a TTL (its heartbeat timeout:
only the TTL decides that a broker is dead) and an entry in the sweeper's deadline index.
Every transition is one compare-and-set script (``lua/controller_*.lua``) that checks all
its arguments first; the state-changing ones are acknowledged only once a replica confirmed
them (``WAIT``, see :mod:`namesrv_redis.store.replication`), so an epoch a broker was told
survives a failover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from namesrv_redis.store import deadlines
from namesrv_redis.store.keys import split_controller_member
from namesrv_redis.store.replication import run_script
from namesrv_redis.store.route_store import RouteStore, as_text, now_ms

STALE = -1
"""controller_elect.lua's answer when the epoch or master it was told to expect moved on."""


@dataclass(frozen=True, slots=True)
class GroupState:
    """One broker group's controller state."""

    cluster: str
    next_id: int
    master: int | None
    master_epoch: int
    sync_state_set: tuple[int, ...]
    sync_state_set_epoch: int
    addrs: dict[int, str]
    master_alive: bool

    @property
    def master_addr(self) -> str | None:
        return self.addrs.get(self.master) if self.master is not None else None

    @classmethod
    def from_reply(cls, d: dict[str, Any]) -> GroupState:
        return cls(
            cluster=str(d["cluster"]),
            next_id=int(d["next"]),
            master=None if d["master"] is None else int(d["master"]),
            master_epoch=int(d["mepoch"]),
            sync_state_set=tuple(int(i) for i in d["sset"]),
            sync_state_set_epoch=int(d["sepoch"]),
            addrs={int(k): str(v) for k, v in d["addrs"].items()},
            master_alive=bool(d["master_alive"]),
        )


@dataclass(frozen=True, slots=True)
class ControllerResult:
    """A script's status code (RocketMQ's response code, or :data:`STALE`), its remark and the
    group's state after the call (None for an unknown group)."""

    code: int
    remark: str
    group: GroupState | None

    @classmethod
    def parse(cls, raw: Any) -> ControllerResult:
        d = orjson.loads(as_text(raw))
        g = d.get("group")
        return cls(int(d["code"]), str(d["remark"]), GroupState.from_reply(g) if g else None)


@dataclass(frozen=True, slots=True)
class LiveInfo:
    """What the last heartbeat of one broker id said (None fields: not alive)."""

    broker_id: int
    addr: str
    epoch: int
    max_offset: int
    confirm_offset: int
    priority: int


class ControllerStore:
    """Async access to the controller state of one namespace (shares the route store's
    client, keys, scripts, deadlines and replication)."""

    def __init__(self, store: RouteStore) -> None:
        self.redis = store.redis
        self.keys = store.keys
        self.scripts = store.scripts
        self.deadlines = store.deadlines
        self.replication = store.replication
        self._k = [self.keys.prefix]

    async def _run(self, script: Any, args: Sequence[Any], *, confirm: bool) -> Any:
        return await run_script(
            self.redis, self.replication if confirm else None, script, self._k, args
        )

    async def _result(self, script: Any, args: Sequence[Any]) -> ControllerResult:
        return ControllerResult.parse(await self._run(script, args, confirm=True))

    # ------------------------------------------------------------------ reads

    @deadlines.read
    async def next_broker_id(self, broker_name: str) -> int:
        """The id CONTROLLER_GET_NEXT_BROKER_ID answers: 1 for an unknown group."""
        v = await self.redis.hget(self.keys.controller_group(broker_name), "next")
        return int(v) if v is not None else 1

    @deadlines.read
    async def group(self, broker_name: str) -> GroupState | None:
        raw = await self.redis.hgetall(self.keys.controller_group(broker_name))
        if not raw:
            return None
        h = {as_text(k): as_text(v) for k, v in raw.items()}
        addrs = {int(k[5:]): v for k, v in h.items() if k.startswith("addr:")}
        master = int(h["master"]) if h.get("master") else None
        alive = master is not None and bool(
            await self.redis.exists(self.keys.controller_live(broker_name, master))
        )
        return GroupState(
            cluster=h.get("cluster", ""),
            next_id=int(h.get("next", "1")),
            master=master,
            master_epoch=int(h.get("mepoch", "0")),
            sync_state_set=tuple(sorted(int(i) for i in orjson.loads(h.get("sset", "[]")))),
            sync_state_set_epoch=int(h.get("sepoch", "0")),
            addrs=addrs,
            master_alive=alive,
        )

    @deadlines.read
    async def group_names(self) -> list[str]:
        return sorted(as_text(n) for n in await self.redis.smembers(self.keys.controller_groups))

    @deadlines.read
    async def live(self, broker_name: str, ids: Sequence[int]) -> dict[int, LiveInfo]:
        """The live info of each of ``ids`` that is alive."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hgetall(self.keys.controller_live(broker_name, i))
            rows = await pipe.execute()
        out: dict[int, LiveInfo] = {}
        for i, row in zip(ids, rows, strict=True):
            if not row:
                continue
            h = {as_text(k): as_text(v) for k, v in row.items()}
            out[i] = LiveInfo(
                i,
                h.get("addr", ""),
                int(h.get("epoch", "-1")),
                int(h.get("max", "0")),
                int(h.get("confirm", "0")),
                int(h.get("prio", "0")),
            )
        return out

    # ------------------------------------------------------------------ transitions

    @deadlines.write
    async def apply_broker_id(
        self, cluster: str, broker_name: str, broker_id: int, check_code: str
    ) -> ControllerResult:
        return await self._result(
            self.scripts.controller_apply_id, [cluster, broker_name, broker_id, check_code]
        )

    @deadlines.write
    async def register(self, broker_name: str, broker_id: int, addr: str) -> ControllerResult:
        return await self._result(self.scripts.controller_register, [broker_name, broker_id, addr])

    @deadlines.write
    async def elect(
        self,
        broker_name: str,
        broker_id: int,
        *,
        designate: bool = False,
        unclean: bool = False,
        expect_epoch: int = -1,
        expect_dead: int = -1,
    ) -> ControllerResult:
        """One election (controller_elect.lua). ``expect_epoch``/``expect_dead`` make it the
        compare-and-set of a controller-triggered election: :data:`STALE` when another
        election already moved the group on."""
        args = [
            broker_name,
            broker_id,
            int(designate),
            int(unclean),
            expect_epoch,
            expect_dead,
        ]
        return await self._result(self.scripts.controller_elect, args)

    @deadlines.write
    async def alter_sync_state_set(
        self,
        broker_name: str,
        master_id: int,
        master_epoch: int,
        sync_state_set_epoch: int,
        new_set: Sequence[int],
    ) -> ControllerResult:
        body = orjson.dumps(list(new_set)).decode()
        args = [broker_name, master_id, master_epoch, sync_state_set_epoch, body]
        return await self._result(self.scripts.controller_alter_sync_state, args)

    @deadlines.write
    async def clean(
        self, broker_name: str, ids: Sequence[int], *, living: bool
    ) -> ControllerResult:
        args = [broker_name, orjson.dumps(list(ids)).decode(), int(living)]
        return await self._result(self.scripts.controller_clean, args)

    # ------------------------------------------------------------------ liveness (unconfirmed:
    # a lost refresh is redone by the next heartbeat, a lost clean-up by the sweeper)

    @deadlines.write
    async def heartbeat(
        self,
        cluster: str,
        broker_name: str,
        broker_id: int,
        addr: str,
        *,
        epoch: int,
        max_offset: int,
        confirm_offset: int,
        timeout_ms: int,
        priority: int,
        conn_id: str,
    ) -> bool:
        """Refresh one broker id's liveness; True when it was not alive before."""
        args = [
            cluster,
            broker_name,
            broker_id,
            addr,
            epoch,
            max_offset,
            confirm_offset,
            timeout_ms,
            priority,
            conn_id,
            now_ms(),
        ]
        return bool(int(await self._run(self.scripts.controller_heartbeat, args, confirm=False)))

    @deadlines.write
    async def drop(self, broker_name: str, broker_id: int, conn_id: str) -> bool:
        """End a broker id's liveness if ``conn_id`` still owns it (its connection closed)."""
        r = await self._run(
            self.scripts.controller_drop, [broker_name, broker_id, conn_id], confirm=False
        )
        return bool(int(r))

    @deadlines.write
    async def sweep(self, limit: int = 256) -> list[tuple[str, int]]:
        """Take the broker ids past their deadline whose liveness TTL ran out out of the index."""
        raw = await self._run(self.scripts.controller_sweep, [limit, now_ms()], confirm=False)
        out: list[tuple[str, int]] = []
        for m in orjson.loads(as_text(raw)):
            member = split_controller_member(str(m))
            if member is not None:
                out.append(member)
        return out
