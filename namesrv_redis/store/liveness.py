"""Broker liveness: an expired-key cleaner and a deadline sweeper (DESIGN.md, Liveness).

A broker's live info is a key whose TTL is its heartbeat timeout. When Redis deletes it, it
publishes an ``expired`` keyspace event carrying the key's name (cluster and address); the
:class:`ExpiryCleaner` runs the idempotent remove script for it at once. Pub/sub is
fire-and-forget (events are lost while disconnected, and Redis fires them when it actually
deletes the key), so the :class:`Sweeper` also reads the deadline index every
``scanNotActiveBrokerInterval`` — O(log n + expired), never a scan of all brokers — and
removes whatever is past its deadline. Several pods may do both at once: the remove script
removes a broker exactly once and answers ``removed=0`` to everyone else.

A liveness key that is gone *before* the deadline in the index was evicted (a ``volatile-*``
``maxmemory`` policy takes the namespace's only keys with a TTL first) or deleted, not
expired: the remove script leaves such a broker alone, and the broker's next refresh
recreates the key (``refresh_liveness`` in ``lua/_common.lua``; docs/ha.md, Repair).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from namesrv_redis.store.connection import ensure_keyspace_events
from namesrv_redis.store.keys import split_ident
from namesrv_redis.store.route_store import RemovalReason, RouteStore, record_removal
from namesrv_redis.store.topology import Topology
from namesrv_redis.telemetry.metrics import EXPIRY_EVENTS, REDIS_ERRORS, SWEEPS

log = logging.getLogger(__name__)


async def remove_expired(
    store: RouteStore, cluster: str, addr: str, source: str, *, now: int | None = None
) -> bool:
    """Remove one broker process whose liveness key is gone and whose deadline (as of ``now``,
    default: the clock) has passed; log and count it once."""
    result = await store.remove_broker(RemovalReason.EXPIRED, cluster, addr, now=now)
    return record_removal(result, RemovalReason.EXPIRED, cluster, addr, f"found by {source}")


def _db_of(redis: Any) -> int:
    try:
        return int(redis.connection_pool.connection_kwargs.get("db", 0) or 0)
    except AttributeError:
        return 0


class ExpiryCleaner:
    """Subscribes to expired-key events and removes the brokers whose liveness key expired."""

    def __init__(
        self,
        store: RouteStore,
        redis: Any,
        *,
        on_reconnect: Callable[[], Any] | None = None,
        max_backoff_s: float = 5.0,
        topology: Topology | None = None,
    ) -> None:
        self.store = store
        self.redis = redis
        self.topology = topology
        """Where expiry events are published (Cluster: the namespace's slot owner)."""
        self.on_reconnect = on_reconnect
        self.max_backoff_s = max_backoff_s
        self.subscribed = False
        self.notifications = False
        """True when Redis emits expired-key events; False means the sweeper works alone."""
        self.reconnects = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def channel(self) -> str:
        return f"__keyevent@{_db_of(self.redis)}__:expired"

    def _generation(self) -> int:
        return self.topology.generation if self.topology is not None else 0

    async def run(self) -> None:
        delay = 0.1
        while True:
            client = self.topology.expiry_client() if self.topology is not None else self.redis
            generation = self._generation()
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                self.notifications = await ensure_keyspace_events(client)
                await pubsub.subscribe(self.channel)
                self.subscribed = True
                self.reconnects += 1
                delay = 0.1
                if self.on_reconnect is not None:
                    r = self.on_reconnect()
                    if asyncio.iscoroutine(r):
                        await r
                while generation == self._generation():
                    message = await pubsub.get_message(timeout=0.5)
                    if message is None or message.get("type") != "message":
                        continue
                    data = message["data"]
                    key = data.decode() if isinstance(data, bytes) else str(data)
                    ident = self.store.keys.ident_of_live_key(key)
                    if ident is None:
                        continue
                    EXPIRY_EVENTS.inc()
                    try:
                        cluster, addr = split_ident(ident)
                        await remove_expired(self.store, cluster, addr, "expiry event")
                    except asyncio.CancelledError:
                        raise
                    except RedisError as e:  # the sweeper tries again
                        REDIS_ERRORS.labels("cleaner").inc()
                        log.warning("removing expired broker %s failed: %s", ident, e)
                    except Exception:
                        REDIS_ERRORS.labels("cleaner").inc()
                        log.exception("removing expired broker %s failed", ident)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                REDIS_ERRORS.labels("cleaner").inc()
                log.warning("expiry subscription lost (%s); reconnecting in %.1fs", e, delay)
            finally:
                self.subscribed = False
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)
            if generation != self._generation():
                log.info("expiry events now come from another Redis node: resubscribing")
                continue
            await asyncio.sleep(delay)
            delay = min(self.max_backoff_s, delay * 2)


class Sweeper:
    """Every ``interval_ms``, removes every broker past its deadline in the index."""

    def __init__(self, store: RouteStore, *, interval_ms: int = 5000, batch: int = 256) -> None:
        self.store = store
        self.interval_ms = interval_ms
        self.batch = batch
        self.wake = asyncio.Event()

    async def sweep_once(self) -> int:
        SWEEPS.inc()
        removed = 0
        seen: set[tuple[str, str]] = set()
        while True:
            candidates = [
                c for c in await self.store.expired_candidates(limit=self.batch) if c not in seen
            ]
            if not candidates:
                return removed
            for cluster, addr in candidates:
                seen.add((cluster, addr))
                if await remove_expired(self.store, cluster, addr, "sweeper"):
                    removed += 1

    async def run(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.interval_ms / 1000)
            self.wake.clear()
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                REDIS_ERRORS.labels("sweeper").inc()
                log.warning("sweep failed (%s); retrying next interval", e)


class Liveness:
    """The cleaner and the sweeper of one pod, as background tasks."""

    def __init__(
        self,
        store: RouteStore,
        redis: Any,
        *,
        scan_interval_ms: int = 5000,
        on_reconnect: Callable[[], Any] | None = None,
        topology: Topology | None = None,
    ) -> None:
        self.sweeper = Sweeper(store, interval_ms=scan_interval_ms)

        def reconnected() -> Any:
            self.sweeper.wake.set()  # catch up on what expired while we were away
            return on_reconnect() if on_reconnect is not None else None

        self.cleaner = ExpiryCleaner(store, redis, on_reconnect=reconnected, topology=topology)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.cleaner.run(), name="expiry-cleaner"),
            asyncio.create_task(self.sweeper.run(), name="sweeper"),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._tasks:  # bounded: shutdown never hangs on a half-closed connection
            await asyncio.wait(self._tasks, timeout=2.0)
        self._tasks = []
