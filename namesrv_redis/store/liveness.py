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
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from namesrv_redis.store.capabilities import (
    ExpiryProbe,
    Refusal,
    SubscriptionRefused,
    subscribe_confirmed,
)
from namesrv_redis.store.connection import ensure_keyspace_events
from namesrv_redis.store.keys import split_ident
from namesrv_redis.store.route_store import RemovalReason, RouteStore, record_removal
from namesrv_redis.store.topology import Topology
from namesrv_redis.telemetry.metrics import (
    EXPIRY_EVENTS,
    KEYSPACE_NOTIFICATIONS,
    REDIS_ERRORS,
    SWEEPS,
    set_redis_permission,
)

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


REFUSED_FIRST_S = 2.0
REFUSED_MAX_S = 60.0
"""A refused subscription (ACL) is retried 2, 4, 8 … up to 60 s apart: the pod opens at most
one connection a minute for it once degraded, and notices an ACL fix within a minute."""
PROBE_INTERVAL_S = 60.0
"""How often a subscribed cleaner checks, with a probe key, that expiry events still arrive."""


class ExpiryCleaner:
    """Subscribes to expired-key events and removes the brokers whose liveness key expired.

    A subscription is counted (and ``on_reconnect`` called: events may have been lost while
    it was down) only once Redis has confirmed it. A refused subscription (the user may not
    SUBSCRIBE, or not to the expired-event channel) is not a reconnect: it is retried with an
    exponential backoff up to a minute, said once at WARNING, and the pod stays ready with the
    sweeper alone (``refusal`` says why). Whether events actually arrive is observed with a
    probe key (:class:`~namesrv_redis.store.capabilities.ExpiryProbe`) after every subscription
    and every ``probe_interval_s``: ``notifications``.
    """

    def __init__(
        self,
        store: RouteStore,
        redis: Any,
        *,
        on_reconnect: Callable[[], Any] | None = None,
        max_backoff_s: float = 5.0,
        topology: Topology | None = None,
        probe_interval_s: float = PROBE_INTERVAL_S,
    ) -> None:
        self.store = store
        self.redis = redis
        self.topology = topology
        """Where expiry events are published (Cluster: the namespace's slot owner)."""
        self.on_reconnect = on_reconnect
        self.max_backoff_s = max_backoff_s
        self.probe_interval_s = probe_interval_s
        self.subscribed = False
        self.refusal: Refusal | None = None
        """Why Redis refused the subscription (None: not refused)."""
        self.notifications: bool | None = None
        """Whether an expired probe key's event was seen (None: not observed yet); False means
        dead brokers are found by the sweeper alone."""
        self.reconnects = 0
        self.on_other_key: Callable[[str], Awaitable[None]] | None = None
        """Called with every other expired key of the namespace (controller liveness keys:
        domain/controller.py's ControllerWatch)."""
        self.probe = ExpiryProbe(store.redis, store.keys, store.scripts.probe_expiry)
        self._config_said = False

    @property
    def channel(self) -> str:
        return f"__keyevent@{_db_of(self.redis)}__:expired"

    def _generation(self) -> int:
        return self.topology.generation if self.topology is not None else 0

    async def _observe(self) -> None:
        """One probe: set ``notifications`` from what was seen; say it when it changes."""
        try:
            seen = await self.probe.observe()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the probe could not be written: nothing observed
            log.debug("expiry probe failed: %s", e)
            return
        if seen != self.notifications:
            if seen:
                log.info("expired-key events arrive: dead brokers are removed on expiry")
            else:
                log.warning(
                    "no expired-key event arrived for a probe key within %.1fs: dead brokers "
                    "are found by the sweeper only (up to one scanNotActiveBrokerInterval "
                    "late); set notify-keyspace-events to include Ex on the Redis server",
                    self.probe.event_wait_s,
                )
        self.notifications = seen
        KEYSPACE_NOTIFICATIONS.set(1 if seen else 0)

    async def _listen(self, pubsub: Any, generation: int) -> None:
        """Remove the broker of every expired liveness key; probe every ``probe_interval_s``."""
        loop = asyncio.get_running_loop()
        probe: asyncio.Task[None] | None = None
        next_probe = 0.0
        try:
            while generation == self._generation():
                if loop.time() >= next_probe and (probe is None or probe.done()):
                    probe = asyncio.create_task(self._observe(), name="expiry-probe")
                    next_probe = loop.time() + self.probe_interval_s
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                if message is None or message.get("type") != "message":
                    continue
                data = message["data"]
                key = data.decode() if isinstance(data, bytes) else str(data)
                if self.probe.saw(key):
                    continue
                ident = self.store.keys.ident_of_live_key(key)
                if ident is None:
                    await self._other_key(key)
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
        finally:
            if probe is not None:
                probe.cancel()

    async def _other_key(self, key: str) -> None:
        if self.on_other_key is None or not key.startswith(self.store.keys.prefix):
            return
        try:
            await self.on_other_key(key)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # its own sweeper tries again
            log.warning("handling expired key %s failed: %s", key, e)

    async def run(self) -> None:
        delay = 0.1
        refused_delay = 0.0
        while True:
            client = self.topology.expiry_client() if self.topology is not None else self.redis
            generation = self._generation()
            pubsub = client.pubsub()
            wait = delay
            try:
                # try to switch notifications on; whether they arrive is observed below
                await ensure_keyspace_events(client, warn=not self._config_said)
                self._config_said = True
                await subscribe_confirmed(pubsub, self.channel)
                self.subscribed, self.refusal = True, None
                set_redis_permission("subscribe_expired", True)
                self.reconnects += 1
                delay, refused_delay = 0.1, 0.0
                if self.on_reconnect is not None:
                    r = self.on_reconnect()
                    if asyncio.iscoroutine(r):
                        await r
                await self._listen(pubsub, generation)
            except asyncio.CancelledError:
                raise
            except SubscriptionRefused as e:
                refused_delay = min(REFUSED_MAX_S, max(REFUSED_FIRST_S, refused_delay * 2))
                wait = refused_delay
                if self.refusal != e.refusal:
                    log.warning(
                        "expired-key events refused: %s; dead brokers are found by the "
                        "sweeper only (retrying up to every %.0fs)",
                        e.refusal.text(),
                        REFUSED_MAX_S,
                    )
                self.refusal = e.refusal
                self.notifications = False
                set_redis_permission("subscribe_expired", False)
            except Exception as e:
                REDIS_ERRORS.labels("cleaner").inc()
                log.warning("expiry subscription lost (%s); reconnecting in %.1fs", e, delay)
                delay = min(self.max_backoff_s, delay * 2)
            finally:
                self.subscribed = False
                KEYSPACE_NOTIFICATIONS.set(0)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)
            if generation != self._generation():
                log.info("expiry events now come from another Redis node: resubscribing")
                continue
            await asyncio.sleep(wait)


class Sweeper:
    """Every ``interval_ms``, removes every broker past its deadline in the index."""

    def __init__(self, store: RouteStore, *, interval_ms: int = 5000, batch: int = 256) -> None:
        self.store = store
        self.interval_ms = interval_ms
        self.batch = batch
        self.wake = asyncio.Event()

    async def sweep_once(self) -> int:
        SWEEPS.inc()
        await self.store.settle_all()  # chunked writes a pod stopped applying (route_store.py)
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
