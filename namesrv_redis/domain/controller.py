"""RocketMQ 5 Controller mode above Redis: who elects when, and who is told (docs/controller.md).

There is no controller leader: every pod answers every controller code and may elect. An
election is one compare-and-set script (``lua/controller_elect.lua``), so when several pods
react to the same dead master exactly one moves the epoch and the others get "stale" (or
"master still exists") and do nothing. The winner sends NOTIFY_BROKER_ROLE_CHANGED (1008)
to the group's live brokers.

Triggers, fastest first:
- the pod holding a master's heartbeat connection sees it close (:meth:`connection_closed`);
- the master's liveness key expires (its TTL is the broker's heartbeat timeout): every pod
  gets the expired-key event (:class:`ControllerWatch`);
- the deadline sweep (every second; the TTL decides, the deadline only says when to look) and
  the inactive-master scan (every ``scanInactiveMasterInterval``) catch what events missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from namesrv_redis.rocketmq.controller_headers import encode_sync_state_set
from namesrv_redis.store.controller_store import ControllerResult, ControllerStore

log = logging.getLogger(__name__)

Notifier = Callable[[str, dict[str, str], bytes], Awaitable[None]]
"""Sends one oneway NOTIFY_BROKER_ROLE_CHANGED (address, extFields, body)."""


class Controller:
    """The controller logic of one pod (stateless: the state is in Redis)."""

    def __init__(
        self,
        store: ControllerStore,
        *,
        address: str,
        unclean: Callable[[], bool] = lambda: False,
        notify_enabled: Callable[[], bool] = lambda: True,
        notifier: Notifier | None = None,
    ) -> None:
        self.store = store
        self.address = address
        """What CONTROLLER_GET_METADATA_INFO answers as the leader's address: this pod."""
        self.unclean = unclean
        self.notify_enabled = notify_enabled
        self.notifier = notifier
        self.elections_won = 0

    async def elect(self, broker_name: str, broker_id: int, designate: bool) -> ControllerResult:
        """CONTROLLER_ELECT_MASTER from a broker or an admin; the group is told on success."""
        r = await self.store.elect(
            broker_name, broker_id, designate=designate, unclean=self.unclean()
        )
        await self._elected(broker_name, r, "requested")
        return r

    async def master_inactive(self, broker_name: str, broker_id: int) -> ControllerResult | None:
        """``broker_id`` of ``broker_name`` stopped being alive: if it is the master, elect
        another (compare-and-set on the epoch and the dead master seen)."""
        g = await self.store.group(broker_name)
        if g is None or g.master != broker_id or g.master_alive:
            return None
        r = await self.store.elect(
            broker_name,
            -1,
            unclean=self.unclean(),
            expect_epoch=g.master_epoch,
            expect_dead=broker_id,
        )
        await self._elected(broker_name, r, f"master {broker_id} inactive")
        return r

    async def scan_inactive_masters(self) -> int:
        """Java's scanInactiveMasterAndTriggerReelect: every group whose master is not alive."""
        elected = 0
        for name in await self.store.group_names():
            g = await self.store.group(name)
            if g is not None and g.master is not None and not g.master_alive:
                r = await self.master_inactive(name, g.master)
                elected += int(r is not None and r.code == 0)
        return elected

    async def connection_closed(self, conn_id: str, members: Iterable[tuple[str, int]]) -> None:
        """A heartbeat connection closed: each broker id it carried loses that connection;
        a master left with no live connection is replaced at once."""
        for name, broker_id in list(members):
            try:
                if await self.store.drop(name, broker_id, conn_id):
                    await self.master_inactive(name, broker_id)
            except Exception as e:  # the TTL and the sweeper still catch it
                log.warning("controller: close of %s/%d not handled: %s", name, broker_id, e)

    async def _elected(self, broker_name: str, r: ControllerResult, why: str) -> None:
        g = r.group
        if r.code != 0 or g is None or g.master is None:
            if r.code == 2004:
                log.warning("controller: group %s has no master candidate (%s)", broker_name, why)
            return
        self.elections_won += 1
        log.info(
            "controller: group %s elected master %d (masterEpoch %d, %s)",
            broker_name,
            g.master,
            g.master_epoch,
            why,
        )
        if self.notifier is None or not self.notify_enabled():
            return
        ext = {
            "masterAddress": g.master_addr or "",
            "masterBrokerId": str(g.master),
            "masterEpoch": str(g.master_epoch),
            "syncStateSetEpoch": str(g.sync_state_set_epoch),
        }
        body = encode_sync_state_set(g.sync_state_set, g.sync_state_set_epoch)
        live = await self.store.live(broker_name, sorted(g.addrs))
        for info in live.values():
            addr = g.addrs.get(info.broker_id) or info.addr
            try:
                await self.notifier(addr, ext, body)
            except Exception as e:  # optional: brokers learn it within 5 s through 1004
                log.info("controller: notifying %s of group %s failed: %s", addr, broker_name, e)


class ControllerWatch:
    """The controller's liveness loops of one pod: the deadline sweep (every
    ``sweep_interval_ms``) and the inactive-master scan; expired-key events of controller
    liveness keys come through the route liveness cleaner's subscription
    (:meth:`expired_key`, wired by the pod), so there is one subscription per pod."""

    def __init__(
        self,
        controller: Controller,
        *,
        scan_interval_ms: Callable[[], int] = lambda: 5000,
        sweep_interval_ms: int = 1000,
    ) -> None:
        self.controller = controller
        self.scan_interval_ms = scan_interval_ms
        self.sweep_interval_ms = sweep_interval_ms
        self._tasks: list[asyncio.Task[None]] = []

    async def expired_key(self, key: str) -> None:
        """An expired key of the namespace: a controller liveness key may mean a dead master."""
        member = self.controller.store.keys.controller_member_of_live_key(key)
        if member is not None:
            await self.controller.master_inactive(*member)

    async def sweep_once(self) -> None:
        for name, broker_id in await self.controller.store.sweep():
            await self.controller.master_inactive(name, broker_id)

    async def _sweeps(self) -> None:
        loop = asyncio.get_running_loop()
        next_scan = loop.time()
        while True:
            await asyncio.sleep(self.sweep_interval_ms / 1000)
            try:
                await self.sweep_once()
                if loop.time() >= next_scan:
                    next_scan = loop.time() + self.scan_interval_ms() / 1000
                    await self.controller.scan_inactive_masters()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("controller sweep failed (%s); retrying", e)

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._sweeps(), name="controller-sweeper")]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)
        self._tasks = []
