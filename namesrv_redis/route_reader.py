"""Route answers for the front ends, through a per-pod cache of encoded bodies.

A route query is the name server's hot path. The reader keeps, per topic, the encoded answer
in each JSON flavour asked for (fastjson or standard), filled on a miss with one Redis round
trip (:meth:`RouteStore.get_route`). Entries are dropped by route events (the topics and
broker names a write touched), all of them on a (re)connect of the event subscription, and
every entry has a short maximum age, so staleness stays bounded even if an event is lost.
Concurrent misses of one topic share a single Redis read. An unknown topic is cached too
(as "no route"), so floods of queries for missing topics do not reach Redis either.

When Redis is unreachable, the last known answer is served (stale but available), as
DESIGN.md asks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from namesrv_redis import fastjson
from namesrv_redis.metrics import CACHE
from namesrv_redis.model import TopicRoute
from namesrv_redis.store import RouteStore

log = logging.getLogger(__name__)

_HIT = CACHE.labels("hit")
_MISS = CACHE.labels("miss")
_STALE = CACHE.labels("stale")

DEFAULT_MAX_AGE_S = 1.0
DEFAULT_MAX_ENTRIES = 200_000


@dataclass(slots=True)
class _Entry:
    route: TopicRoute | None
    expires: float
    bodies: dict[bool, bytes] = field(default_factory=dict)
    """Encoded answer by flavour: True = standard JSON, False = fastjson."""

    def body(self, standard: bool) -> bytes | None:
        if self.route is None:
            return None
        b = self.bodies.get(standard)
        if b is None:
            b = encode_route(self.route, standard)
            self.bodies[standard] = b
        return b


def encode_route(route: TopicRoute, standard: bool) -> bytes:
    """A route answer's body, as the Java NameServer encodes it for that client."""
    wire = route.to_wire()
    return fastjson.dumps_standard(wire) if standard else fastjson.dumps_fastjson(wire)


def filter_by_zone(route: TopicRoute, zone: str) -> TopicRoute:
    """RocketMQ 5's zone mode (ZoneRouteRPCHook): keep only the brokers of one zone."""
    brokers = [b for b in route.broker_datas if b.zone_name == zone]
    names = {b.broker_name for b in brokers}
    addrs = {a for b in brokers for a in b.broker_addrs.values()}
    return TopicRoute(
        queue_datas=[q for q in route.queue_datas if q.broker_name in names],
        broker_datas=brokers,
        filter_server_table={a: f for a, f in route.filter_server_table.items() if a in addrs},
        order_topic_conf=route.order_topic_conf,
        version=route.version,
    )


class RouteReader:
    """Cached route answers of one pod."""

    def __init__(
        self,
        store: RouteStore,
        *,
        order_message_enable: Callable[[], bool] = lambda: False,
        support_acting_master: Callable[[], bool] = lambda: False,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        enabled: bool = True,
    ) -> None:
        self.store = store
        self.order_message_enable = order_message_enable
        self.support_acting_master = support_acting_master
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self.enabled = enabled
        self._entries: dict[str, _Entry] = {}
        self._by_broker: dict[str, set[str]] = {}
        self._inflight: dict[str, asyncio.Future[TopicRoute | None]] = {}
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def route(self, topic: str) -> TopicRoute | None:
        """The topic's route (decoded), through the cache."""
        return (await self._entry(topic)).route

    async def route_body(
        self, topic: str, *, standard: bool, zone: str | None = None
    ) -> bytes | None:
        """The encoded answer for GET_ROUTEINFO_BY_TOPIC, or None when the topic has none."""
        entry = await self._entry(topic)
        if zone is not None and entry.route is not None:
            return encode_route(filter_by_zone(entry.route, zone), standard)
        return entry.body(standard)

    def cached_body(self, topic: str, *, standard: bool) -> tuple[bool, bytes | None]:
        """(hit, body) from the cache alone, without awaiting: the remoting hot path."""
        entry = self._entries.get(topic)
        if entry is None or entry.expires <= time.monotonic():
            return False, None
        _HIT.inc()
        return True, entry.body(standard)

    async def _entry(self, topic: str) -> _Entry:
        entry = self._entries.get(topic)
        if entry is not None and entry.expires > time.monotonic():
            _HIT.inc()
            return entry
        _MISS.inc()
        try:
            route = await self._load(topic)
        except Exception:
            if entry is not None:
                _STALE.inc()
                log.warning("route store unreachable: serving a stale route of %r", topic)
                return entry
            raise
        cached = self._entries.get(topic)
        if cached is not None and cached.route is route:
            return cached
        return _Entry(route, 0.0)

    async def _load(self, topic: str) -> TopicRoute | None:
        """One Redis read per topic however many callers miss at once."""
        pending = self._inflight.get(topic)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[TopicRoute | None] = asyncio.get_running_loop().create_future()
        self._inflight[topic] = fut
        generation = self._generation
        try:
            route = await self.store.get_route(
                topic,
                with_order_conf=self.order_message_enable(),
                support_acting_master=self.support_acting_master(),
            )
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: waiters re-raise it, nobody else needs to
            raise
        else:
            fut.set_result(route)
            # An event that arrived during the read may describe a write the read missed.
            if self.enabled and generation == self._generation:
                self._store(topic, route)
            return route
        finally:
            del self._inflight[topic]

    def _store(self, topic: str, route: TopicRoute | None) -> None:
        if topic not in self._entries and len(self._entries) >= self.max_entries:
            oldest = next(iter(self._entries))
            self._drop(oldest)
        self._drop(topic)
        self._entries[topic] = _Entry(route, time.monotonic() + self.max_age_s)
        if route is not None:
            for b in route.broker_datas:
                self._by_broker.setdefault(b.broker_name, set()).add(topic)

    def _drop(self, topic: str) -> None:
        entry = self._entries.pop(topic, None)
        if entry is not None and entry.route is not None:
            for b in entry.route.broker_datas:
                topics = self._by_broker.get(b.broker_name)
                if topics is not None:
                    topics.discard(topic)
                    if not topics:
                        del self._by_broker[b.broker_name]

    # ------------------------------------------------------------------ invalidation

    def invalidate(
        self, topics: frozenset[str] | None, brokers: frozenset[str] = frozenset()
    ) -> None:
        """Drop what a route event says changed; ``topics=None`` drops everything."""
        self._generation += 1
        if topics is None:
            self.clear()
            return
        for t in topics:
            self._drop(t)
        for b in brokers:
            for t in list(self._by_broker.get(b, ())):
                self._drop(t)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._by_broker.clear()
