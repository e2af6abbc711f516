"""Where the namespace's data lives right now, and what follows when that changes.

One :class:`Topology` per pod watches the Redis deployment (docs/ha.md):

- **Sentinel**: it subscribes to ``+switch-master`` on every sentinel. When the service's
  master moves, every connection of the pod — commands and subscriptions alike — is dropped
  at once, so nothing more is written to the demoted master (which stays writable for
  seconds and then discards what it took when it resyncs as a replica).
- **Cluster**: keyspace events are node-local, published only by the node that owns the
  namespace's slot. It finds that node (``CLUSTER SLOTS``, every check) and hands the expiry
  cleaner a client of it; a slot migration or a replica promotion moves the subscription.
- **All deployments**: every check makes sure the node that owns the namespace emits
  expired-key events (a promoted replica or a restarted server starts with its own
  ``notify-keyspace-events``; where CONFIG is refused, it tries again only every minute or on a
  new node — whether events arrive is observed by the expiry cleaner's probe key, not read
  here), and re-reads how many replicas the master has, which sets how many replicas each
  write waits for (:mod:`namesrv_redis.store.replication`). A user that may not run ``INFO``
  is told once, at WARNING, what to grant; the last replica count read is kept.

A master switch or a new slot owner also calls the ``on_failover`` callbacks: the pod then
re-applies its connected brokers' registrations (a failover may have dropped acknowledged
writes, see :mod:`namesrv_redis.domain.rebuild`) and wakes the sweeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from namesrv_redis.store.capabilities import is_refusal
from namesrv_redis.store.connection import (
    Deployment,
    EpochSentinel,
    MasterOnlyPool,
    RedisTarget,
    create_sentinel,
    ensure_keyspace_events,
    node_client,
    sentinel_options,
)
from namesrv_redis.store.keys import Keys
from namesrv_redis.store.replication import Replication
from namesrv_redis.store.route_store import as_text
from namesrv_redis.telemetry.metrics import REDIS_ERRORS, REDIS_FAILOVERS

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0
REPLICAS_INTERVAL_S = 2.0
CONFIG_RETRY_S = 60.0
"""Where CONFIG is refused, how long until the check tries it again on the same node."""
SWITCH_MASTER = "+switch-master"
_DOWN_FLAGS = frozenset({"s_down", "o_down", "disconnected"})

FailoverCallback = Callable[[str], Awaitable[None]]


def _healthy_replicas(replicas: list[dict[str, Any]], demoted: tuple[str, int] | None) -> int:
    """Replicas a write can be confirmed by, as Sentinel sees them.

    A replica counts unless Sentinel flags it down. One exception: the master a failover just
    demoted, until it has resynced from the new master (it cannot confirm anything yet, and
    the new master holds all there is). A replica whose link merely looks broken still counts:
    during a failover that is the node being promoted, and counting it is what makes writes
    that still reach the old master fail WAIT instead of being acknowledged and then lost.
    """
    count = 0
    for r in replicas:
        flags = set(as_text(r.get("flags", "")).split(","))
        if flags & _DOWN_FLAGS or r.get("is_disconnected") is True:
            continue
        resyncing = as_text(r.get("master-link-status", "ok")) != "ok"
        if (
            resyncing
            and demoted is not None
            and (as_text(r.get("ip")), int(r.get("port", 0))) == demoted
        ):
            continue
        count += 1
    return count


class Topology:
    """Follows masters and slot owners; keeps notifications on and the replica count fresh."""

    def __init__(
        self,
        redis: Any,
        target: RedisTarget,
        keys: Keys,
        *,
        replication: Replication | None = None,
        check_interval_s: float = CHECK_INTERVAL_S,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self.redis = redis
        self.target = target
        self.keys = keys
        self.replication = replication
        self.check_interval_s = check_interval_s
        self.on_notifications_switched_on: list[Callable[[], None]] = []
        """Called when this pod switched expiry events back on (the cleaner observes again)."""
        self.client_options = dict(client_options or {})
        """Credentials and TLS options the pod's client was made with (redis_tls.py)."""
        self.config_allowed: bool | None = None
        """Whether CONFIG could check/set notify-keyspace-events on the node (None: not
        tried yet)."""
        self._config_retry_at = 0.0
        self._config_generation = -1
        self._info_refusal_said = False
        self.generation = 0
        """Bumped whenever the node to subscribe to for expiry events changes."""
        self.on_failover: list[FailoverCallback] = []
        self.master: tuple[str, int] | None = None
        self._demoted: tuple[str, int] | None = None
        """The master the last Sentinel failover replaced."""
        self._owner: tuple[str, int] | None = None
        self._owner_client: Redis | None = None
        self._sentinel: EpochSentinel | None = None
        if target.deployment is Deployment.SENTINEL:
            # the client's own discovery, so that what the topology learns (the newest
            # config epoch) also decides where the client's next connection goes
            manager = getattr(getattr(redis, "connection_pool", None), "sentinel_manager", None)
            self._sentinel = (
                manager
                if isinstance(manager, EpochSentinel)
                else create_sentinel(target, self.client_options)
            )
        self._tasks: list[asyncio.Task[None]] = []
        self._last_replicas_check = 0.0
        self._check_lock = asyncio.Lock()
        if replication is not None and target.deployment is Deployment.CLUSTER:
            replication.node_client = self.expiry_client
            replication.slot_moved = self.check

    # ------------------------------------------------------------------ for the cleaner

    def expiry_client(self) -> Any:
        """The client whose pub/sub carries the namespace's expired-key events."""
        if self.target.deployment is Deployment.CLUSTER and self._owner_client is not None:
            return self._owner_client
        return self.redis

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        with contextlib.suppress(Exception):
            await self.check()
        self._tasks.append(asyncio.create_task(self._monitor(), name="redis-topology"))
        if self._sentinel is not None:
            for host, port in self.target.hosts:
                self._tasks.append(
                    asyncio.create_task(
                        self._watch_sentinel(host, port), name=f"sentinel-{host}:{port}"
                    )
                )

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)
        self._tasks = []
        if self._owner_client is not None:
            with contextlib.suppress(Exception):
                await self._owner_client.aclose()

    # ------------------------------------------------------------------ checks

    async def check(self, *, replicas_now: bool = False) -> None:
        """One round: slot owner (Cluster), notifications, replica count."""
        if self._sentinel is not None:
            await self._follow_master()
        async with self._check_lock:
            if self.target.deployment is Deployment.CLUSTER:
                await self._follow_slot_owner()
            loop = asyncio.get_running_loop()
            await self._keep_notifications_on(loop.time())
            if self.replication is not None and (
                replicas_now or loop.time() - self._last_replicas_check >= REPLICAS_INTERVAL_S
            ):
                self._last_replicas_check = loop.time()
                seen = await self._replica_count_or_last()
                if seen != self.replication.replicas_seen:
                    self._replicas_changed(self.replication.replicas_seen, seen)
                self.replication.replicas_seen = seen

    def _replicas_changed(self, before: int, now: int) -> None:
        assert self.replication is not None
        where = self.target.service or "(standalone)"
        master = f"{self.master[0]}:{self.master[1]}" if self.master else where
        if self.replication.wait_replicas < 0 and now == 0 and before > 0:
            log.warning(
                "Redis master %s has no healthy replica now (had %d): writes are acknowledged "
                "without replica confirmation until one is back",
                master,
                before,
            )
        else:
            log.info("Redis master %s: %d healthy replica(s)", master, now)

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval_s)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                REDIS_ERRORS.labels("topology").inc()
                log.debug("topology check failed: %s", e)

    def _notifications_switched_on(self) -> None:
        for listener in self.on_notifications_switched_on:
            listener()

    async def _keep_notifications_on(self, now: float) -> None:
        """CONFIG SET notify-keyspace-events where allowed (the cleaner warned at subscribe
        time when it is not); refused, tried again after a minute or on another node."""
        if self.config_allowed is False and (
            now < self._config_retry_at and self._config_generation == self.generation
        ):
            return
        self.config_allowed = await ensure_keyspace_events(
            self.expiry_client(), warn=False, on_switched=self._notifications_switched_on
        )
        self._config_generation = self.generation
        self._config_retry_at = now + CONFIG_RETRY_S

    async def _replica_count_or_last(self) -> int:
        """The replica count; where INFO is refused, said once, and the last count kept."""
        assert self.replication is not None
        try:
            seen = await self._replica_count()
        except Exception as e:
            if not is_refusal(e):
                raise
            if not self._info_refusal_said:
                self._info_refusal_said = True
                log.warning(
                    "the Redis user may not run INFO (%s): the master's replica count, which "
                    "sets how many replicas a write waits for (WAIT), cannot be read; grant "
                    "+info (docs/redis.md). Writes wait for %d replica(s) meanwhile "
                    "(redisWaitReplicas=N sets a fixed count)",
                    e,
                    self.replication.wanted,
                )
            return self.replication.replicas_seen
        self._info_refusal_said = False
        return seen

    async def _replica_count(self) -> int:
        if self._sentinel is not None:
            # the sentinel with the newest configuration epoch: one that has not heard of a
            # failover yet would count the promoted node as a replica
            sentinel, _, _ = await self._sentinel.current(self.target.service)
            replicas = await sentinel.sentinel_slaves(self.target.service)
            return _healthy_replicas(replicas, self._demoted)
        info = await self.expiry_client().info("replication")
        return sum(  # replicas still syncing cannot confirm a write yet
            1
            for k, v in info.items()
            if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
        )

    async def _follow_slot_owner(self) -> None:
        owner = await self._slot_owner()
        if owner is None or owner == self._owner:
            return
        previous, old_client = self._owner, self._owner_client
        self._owner = owner
        self._owner_client = node_client(self.target, self.client_options, *owner)
        self.generation += 1
        if previous is not None:
            log.warning(
                "Redis Cluster: slot of namespace %s moved from %s:%d to %s:%d; following it",
                self.keys.namespace,
                *previous,
                *owner,
            )
            REDIS_FAILOVERS.inc()
            asyncio.get_running_loop().create_task(self._failed_over("cluster slot moved"))
        if old_client is not None:
            with contextlib.suppress(Exception):
                await old_client.aclose()

    async def _slot_owner(self) -> tuple[str, int] | None:
        await self.redis.initialize()  # a no-op once the cluster client knows its nodes
        slot = self.redis.keyslot(self.keys.prefix)
        # Ask the owner we know first: after CLUSTER SETSLOT it is the first to know.
        askers: list[Any] = [self._owner_client] if self._owner_client is not None else []
        askers.append(None)
        for asker in askers:
            try:
                if asker is None:
                    raw = await self.redis.execute_command(
                        "CLUSTER SLOTS", target_nodes=self.redis.get_random_node()
                    )
                else:
                    raw = await asker.execute_command("CLUSTER SLOTS")
            except Exception:
                continue
            found = _owner_in(raw, slot)
            if found is not None:
                return found
        return None

    # ------------------------------------------------------------------ Sentinel

    async def _watch_sentinel(self, host: str, port: int) -> None:
        delay = 0.2
        while True:
            client = Redis(
                host=host,
                port=port,
                socket_connect_timeout=1.0,
                client_name="namesrv-redis-sentinel-watch",
                **sentinel_options(self.target, self.client_options),
            )
            pubsub: Any = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(SWITCH_MASTER)
                delay = 0.2
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None or message.get("type") != "message":
                        continue
                    parts = as_text(message["data"]).split()
                    if len(parts) == 5 and parts[0] == self.target.service:
                        await self._master_switched(
                            (parts[1], int(parts[2])), (parts[3], int(parts[4]))
                        )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.debug("sentinel %s:%d watch: %s; reconnecting", host, port, e)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)

    async def _follow_master(self) -> None:
        """Pub/sub may miss a ``+switch-master`` (a sentinel connection down at that moment):
        every check also asks the sentinels which master is current."""
        assert self._sentinel is not None
        if self._sentinel.is_pinned():
            return  # just switched: the sentinels' answers are still converging
        _, ip, port = await self._sentinel.current(self.target.service)
        if self.master is None:
            self.master = (ip, port)
        elif self.master != (ip, port):
            await self._master_switched(self.master, (ip, port))

    async def _master_switched(self, old: tuple[str, int], new: tuple[str, int]) -> None:
        if self.master == new:
            return  # another sentinel said so already
        self.master, self._demoted = new, old
        REDIS_FAILOVERS.inc()
        log.warning(
            "Sentinel: master of %r switched from %s:%d to %s:%d; dropping every connection "
            "to the old master",
            self.target.service,
            *old,
            *new,
        )
        if self._sentinel is not None:
            self._sentinel.pin(new)
        pool = self.redis.connection_pool
        if isinstance(pool, MasterOnlyPool):
            pool.follow(new)  # a connection still busy on the old master is not reused
        await pool.disconnect(inuse_connections=True)
        self.generation += 1
        with contextlib.suppress(Exception):
            await self.check(replicas_now=True)
        await self._failed_over("sentinel +switch-master")

    async def _failed_over(self, reason: str) -> None:
        for cb in self.on_failover:
            try:
                await cb(reason)
            except Exception:
                log.exception("failover callback failed")


def _owner_in(raw: Any, slot: int) -> tuple[str, int] | None:
    """The primary serving ``slot`` in a CLUSTER SLOTS reply (raw or as redis-py parses it)."""
    if isinstance(raw, dict):
        for (start, end), info in raw.items():
            if int(start) <= slot <= int(end):
                primary = info.get("primary") or info.get("master")
                if primary:
                    return as_text(primary[0]), int(primary[1])
        return None
    for entry in raw or ():
        start, end, primary = int(entry[0]), int(entry[1]), entry[2]
        if start <= slot <= end:
            return as_text(primary[0]), int(primary[1])
    return None
