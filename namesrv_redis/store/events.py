"""Route events of one namespace: one pub/sub subscription per pod, fanned out in-process.

Every write script publishes ``{"v": version, "kind": …, "topics": […], "brokers": […]}``
(or ``"all": true``) on the namespace's channel. The pod's route cache listens here; HTTP
watches (blocking queries, Server-Sent Events) subscribe here. On every (re)connect a
synthetic "all" event is delivered, because events published meanwhile are lost.

Pub/sub can also lose a message without the connection dropping (a full output buffer, a
half-open socket). Every version bump publishes exactly one event, so a gap is visible: the
route version is polled every ``poll_interval_s``, and when the events received have still
not reached the version read at the previous poll, the missing ones are declared lost and a
synthetic "all" event is delivered. A change whose event is lost is therefore seen by every
listener within two poll intervals (the route cache's maximum staleness), and an event
merely in flight at one poll never causes a spurious flush.

The same poll reads the namespace's **epoch** (one ``MGET``): a random token that the first
pod to find it missing sets with ``SET NX``. Redis restarted empty or flushed has no epoch (or
soon another pod's new one); a failover that dropped writes shows as a route version lower
than one already seen. Either way the namespace's data was lost: listeners get a "reset"
event (the route cache empties) and the ``on_data_loss`` callbacks run (the pod re-applies
its connected brokers' registrations, docs/ha.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from namesrv_redis.store.keys import Keys
from namesrv_redis.telemetry.metrics import DATA_LOSS, REDIS_ERRORS

log = logging.getLogger(__name__)

QUEUE_SIZE = 1024
DATA_LOSS_CALLBACK_TIMEOUT_S = 10.0
"""How long the poll waits for the pod's re-application before emptying the caches anyway."""
DEFAULT_POLL_INTERVAL_S = 0.5


@dataclass(frozen=True, slots=True)
class RouteEvent:
    version: int
    kind: str
    topics: frozenset[str] | None
    """None means everything may have changed."""
    brokers: frozenset[str] = frozenset()

    def concerns(self, topics: set[str] | None) -> bool:
        return topics is None or self.topics is None or bool(self.topics & topics)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "kind": self.kind,
            "topics": sorted(self.topics) if self.topics is not None else None,
            "brokers": sorted(self.brokers),
        }


def parse_event(data: bytes | str) -> RouteEvent:
    d = orjson.loads(data)
    topics = None if d.get("all") else frozenset(d.get("topics") or ())
    return RouteEvent(
        int(d.get("v", 0)), str(d.get("kind", "")), topics, frozenset(d.get("brokers") or ())
    )


class RouteEvents:
    """The pod's subscription to its namespace's route events."""

    def __init__(
        self,
        redis: Any,
        keys: Keys,
        *,
        store: Any = None,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.store = store
        self.poll_interval_s = poll_interval_s
        self.latest_version = 0
        self.connected = False
        self.epoch: str | None = None
        """The namespace's epoch as this pod knows it (None until first read)."""
        self.on_data_loss: list[Callable[[str], Any]] = []
        """Called with a reason when Redis lost the namespace's data."""
        self._listeners: list[Callable[[RouteEvent], None]] = []
        self._queues: set[asyncio.Queue[RouteEvent]] = set()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._poll_task: asyncio.Task[None] | None = None

    def add_listener(self, callback: Callable[[RouteEvent], None]) -> None:
        self._listeners.append(callback)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="route-events")
        self._poll_task = asyncio.create_task(self._poll_version(), name="route-version-poll")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, self._poll_task) if t is not None]
        for t in tasks:
            t.cancel()
        if tasks:  # bounded: shutdown never hangs on a half-closed connection
            await asyncio.wait(tasks, timeout=2.0)

    def _deliver(self, event: RouteEvent) -> None:
        if event.version > self.latest_version:
            self.latest_version = event.version
        for cb in self._listeners:
            try:
                cb(event)
            except Exception:
                log.exception("route event listener failed")
        for q in list(self._queues):
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:  # a slow subscriber: tell it everything may have changed
                while not q.empty():
                    q.get_nowait()
                q.put_nowait(RouteEvent(event.version, "overflow", None))
        self._changed.set()
        self._changed = asyncio.Event()

    async def _run(self) -> None:
        delay = 0.1
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.keys.events)
                self.connected = True
                delay = 0.1
                version = await self.redis.get(self.keys.version)
                self._deliver(RouteEvent(int(version or 0), "reconnect", None))
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        self._deliver(parse_event(message["data"]))
                    except (ValueError, KeyError, TypeError):
                        log.warning("ignoring malformed route event %r", message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as e:
                REDIS_ERRORS.labels("events").inc()
                if self.connected:
                    log.warning("route event subscription lost (%s); reconnecting", e)
            finally:
                self.connected = False
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)

    async def ensure_epoch(self) -> str:
        """The namespace's epoch, set now (SET NX) if it has none."""
        token = secrets.token_hex(8)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.epoch, token, nx=True)
            pipe.get(self.keys.epoch)
            _, current = await pipe.execute()
        return current.decode() if isinstance(current, bytes) else str(current or token)

    async def _poll_version(self) -> None:
        """Detect lost events and lost data (see the module doc): one MGET per interval."""
        expected: int | None = None  # the version read at the previous poll
        with contextlib.suppress(Exception):
            self.epoch = await self.ensure_epoch()
        while True:
            await asyncio.sleep(self.poll_interval_s)
            # What the events had reached *before* the read was sent: Redis ran those writes
            # before this read, so a lower answer is a loss. Events that arrive while the read
            # is in flight (another connection) may be newer than its answer: no loss.
            seen = self.latest_version
            try:
                raw_version, raw_epoch = await self.redis.mget(self.keys.version, self.keys.epoch)
                v = int(raw_version or 0)
                epoch = raw_epoch.decode() if isinstance(raw_epoch, bytes) else raw_epoch
                if epoch is None or epoch != self.epoch:
                    epoch = await self.ensure_epoch()
            except asyncio.CancelledError:
                raise
            except Exception:
                expected = None  # Redis unreachable: nothing to compare (stale answers stay)
                continue
            lost = ""
            if self.epoch is not None and epoch != self.epoch:
                lost = "the namespace's epoch changed (Redis restarted empty or was flushed)"
            elif v < seen:
                lost = f"the route version went back from {seen} to {v}"
            self.epoch = epoch
            if lost:
                # Re-apply what the pod knows first, then empty the caches: meanwhile cached
                # answers (right until the loss) keep being served instead of a blackout.
                await self._data_lost(lost)
                self.latest_version = 0
                self._deliver(RouteEvent(v, "reset", None))
            elif expected is not None and self.latest_version < expected:
                log.warning(
                    "route events up to version %d never arrived: assuming all changed", expected
                )
                self._deliver(RouteEvent(v, "lost", None))
            expected = v

    async def _data_lost(self, reason: str) -> None:
        DATA_LOSS.inc()
        log.warning("Redis lost the data of namespace %s: %s", self.keys.namespace, reason)
        for cb in self.on_data_loss:
            try:
                r = cb(reason)
                if asyncio.iscoroutine(r):
                    await asyncio.wait_for(r, DATA_LOSS_CALLBACK_TIMEOUT_S)
            except Exception:
                log.exception("data-loss callback failed")

    async def wait_for_version(self, after: int, timeout: float) -> int:
        """Return as soon as the route version passes ``after``, else at the deadline."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.latest_version <= after:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return self.latest_version

    async def subscribe(self, topics: set[str] | None = None) -> AsyncIterator[RouteEvent]:
        q: asyncio.Queue[RouteEvent] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(q)
        try:
            while True:
                event = await q.get()
                if event.concerns(topics):
                    yield event
        finally:
            self._queues.discard(q)
