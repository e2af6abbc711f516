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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from namesrv_redis.metrics import REDIS_ERRORS
from namesrv_redis.store.keys import Keys

log = logging.getLogger(__name__)

QUEUE_SIZE = 1024
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

    async def _poll_version(self) -> None:
        """Detect lost events (see the module doc): one GET of the route version per interval."""
        expected: int | None = None  # the version read at the previous poll
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                v = int(await self.redis.get(self.keys.version) or 0)
            except asyncio.CancelledError:
                raise
            except Exception:
                expected = None  # Redis unreachable: nothing to compare (stale answers stay)
                continue
            if v < self.latest_version:  # the namespace was reset (FLUSHALL, a new Redis)
                self.latest_version = 0
                self._deliver(RouteEvent(v, "reset", None))
            elif expected is not None and self.latest_version < expected:
                log.warning(
                    "route events up to version %d never arrived: assuming all changed", expected
                )
                self._deliver(RouteEvent(v, "lost", None))
            expected = v

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
