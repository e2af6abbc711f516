"""Route answers for the front ends, through a per-pod cache of encoded bodies.

A route query is the name server's hot path. The reader keeps, per topic, the encoded answer
in both JSON flavours (fastjson and standard), filled on a miss with one Redis round trip
(:meth:`RouteStore.get_route`). Entries are dropped by route events (the topics and broker
names a write touched), and all of them on a (re)connect of the event subscription or when
:class:`~namesrv_redis.store.events.RouteEvents` finds an event lost (its version poll, every half
maximum age): so staleness stays bounded by the maximum age (default 1 s) even when an event
is lost, while an answer that did not change is never read again — a busy pod makes no Redis
reads at all in steady state. Concurrent misses of one topic share a single Redis read. An
unknown topic is cached too (as "no route"), so floods of queries for missing topics do not
reach Redis either.

Memory: an answer names brokers, never its topic, so the many topics that live on the same
brokers with the same queue numbers have byte-identical answers; the reader keeps one entry
(both bodies) per distinct answer, shared by all those topics. A cached topic then costs
its name and a dict slot, whatever its answer's size: the cache is keyed by the name's UTF-8
bytes, which are 16 bytes smaller than the ``str`` (a 16-character topic: a 64-byte block
instead of 80), less the 8 bytes more a dict slot of non-``str`` keys takes: 0.8 MB per
100,000 topics, for about 60 ns of encoding per query. Broker
events do not look topics up: they mark the shared broker set of the affected entries stale,
so no per-broker index is kept.

When Redis is unreachable, the last known answer is served (stale but available), as
DESIGN.md asks. Zone-filtered answers (RocketMQ 5's zone mode) are read from Redis each time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgspec

from namesrv_redis.rocketmq import fastjson
from namesrv_redis.rocketmq.model import TopicRoute
from namesrv_redis.store.route_store import RouteStore
from namesrv_redis.telemetry.metrics import CACHE

log = logging.getLogger(__name__)

_HIT = CACHE.labels("hit")
_MISS = CACHE.labels("miss")
_STALE = CACHE.labels("stale")

DEFAULT_MAX_ENTRIES = 1_000_000


class _BrokerSet:
    """The broker names that cached answers name; shared by every such answer. An event about
    one of these brokers marks it stale, and with it every entry that points to it."""

    __slots__ = ("names", "valid")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.valid = True


class _Entry(msgspec.Struct, gc=False):
    """One topic's cached answer (no GC header: 48 bytes)."""

    standard: bytes | None
    """The answer in standard JSON; None = the topic has no route."""
    fastjson: bytes | None
    brokers: _BrokerSet | None
    version: int
    """The route version the answer was read at (shared: no later than any of its topics'
    reads; 0 for "no route", whose read reports no version)."""

    def fresh(self) -> bool:
        return self.brokers is None or self.brokers.valid

    def body(self, standard: bool) -> bytes | None:
        return self.standard if standard else self.fastjson


_NO_ROUTE = _Entry(None, None, None, 0)


def _key(topic: str) -> bytes:
    """The cache key of a topic: its UTF-8 bytes (lone surrogates kept, never an error)."""
    try:
        return topic.encode()
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a JSON "\ud800" escape
        return topic.encode("utf-8", "surrogatepass")


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
        max_entries: int = DEFAULT_MAX_ENTRIES,
        enabled: bool = True,
    ) -> None:
        self.store = store
        self.order_message_enable = order_message_enable
        self.support_acting_master = support_acting_master
        self.max_entries = max_entries
        self.enabled = enabled
        self._entries: dict[bytes, _Entry] = {}
        """By :func:`_key` of the topic."""
        self._shared: dict[bytes, _Entry] = {}
        """One entry per distinct answer (by its standard-JSON body), shared by its topics."""
        self._broker_sets: dict[tuple[str, ...], _BrokerSet] = {}
        self._sets_by_broker: dict[str, list[_BrokerSet]] = {}
        self._inflight: dict[str, asyncio.Future[TopicRoute | None]] = {}
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def distinct_answers(self) -> int:
        return len(self._shared)

    async def route_body(
        self, topic: str, *, standard: bool, zone: str | None = None
    ) -> bytes | None:
        """The encoded answer for GET_ROUTEINFO_BY_TOPIC, or None when the topic has none."""
        if zone is not None:
            route = await self._load(topic, cache=False)
            return encode_route(filter_by_zone(route, zone), standard) if route else None
        return (await self._entry(topic))[0].body(standard)

    async def route_answer(
        self, topic: str, *, standard: bool, latest: Callable[[], int]
    ) -> tuple[bytes | None, int]:
        """The answer and the route version it is the answer at (the HTTP tier's
        ``X-Namesrv-Index``), read together. ``latest`` is the version the pod's route events
        have reached. A Redis read answers at the version it returned (for "no route", which
        reports none, at ``latest`` before the read: never later than the read). A cached
        answer is current up to ``latest``, since every later event that concerned it would
        have dropped it, unless it was read at a later version still (its event on its way).
        So the version is never later than the answer (a watcher that passes it back misses no
        change) and never earlier than the read (a watcher is not woken for nothing)."""
        before = latest()
        entry, read_at = await self._entry(topic)
        if read_at is None:
            return entry.body(standard), max(latest(), entry.version)
        return entry.body(standard), read_at or before

    def cached_answer(self, topic: str, *, standard: bool) -> tuple[bool, bytes | None, int]:
        """(hit, body, the version it was read at) from the cache alone: the HTTP tier's hot
        path; the answer is current up to the later of that version and the events' (see
        :meth:`route_answer`)."""
        entry = self._entries.get(_key(topic))
        if entry is None or not entry.fresh():
            return False, None, 0
        _HIT.inc()
        return True, entry.standard if standard else entry.fastjson, entry.version

    def cached_body(self, topic: str, *, standard: bool) -> tuple[bool, bytes | None]:
        """(hit, body) from the cache alone, without awaiting: the remoting hot path."""
        entry = self._entries.get(_key(topic))
        if entry is None or not entry.fresh():
            return False, None
        _HIT.inc()
        return True, entry.standard if standard else entry.fastjson

    def peek(self, topic: str, standard: bool) -> bytes | None:
        """The cached route body, or None unless the cache holds a fresh route for the topic
        (a cached "no route" too): the remoting hot path, which counts its hits in one go
        (:meth:`count_hits`) and takes the awaiting path, which counts itself, on None."""
        entry = self._entries.get(_key(topic))
        if entry is None or (entry.brokers is not None and not entry.brokers.valid):
            return None
        return entry.standard if standard else entry.fastjson

    @staticmethod
    def count_hits(n: int) -> None:
        """``n`` answers were served by :meth:`peek`."""
        _HIT.inc(n)

    async def _entry(self, topic: str) -> tuple[_Entry, int | None]:
        """The topic's entry, and when a Redis read made it now, the version that read
        returned (0 for "no route"); None when it comes from the cache."""
        key = _key(topic)
        entry = self._entries.get(key)
        if entry is not None and entry.fresh():
            _HIT.inc()
            return entry, None
        _MISS.inc()
        try:
            route = await self._load(topic)
        except Exception:
            if entry is not None:
                _STALE.inc()
                log.warning("route store unreachable: serving a stale route of %r", topic)
                return entry, None
            raise
        read_at = route.version if route is not None else 0
        cached = self._entries.get(key)
        if cached is not None and cached.fresh():
            return cached, read_at  # stored by this read, or by a later one
        return self._make_entry(route), read_at  # not cached (an event raced the read)

    async def _load(self, topic: str, *, cache: bool = True) -> TopicRoute | None:
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
            if cache and self.enabled and generation == self._generation:
                self._store(topic, route)
            return route
        finally:
            del self._inflight[topic]

    def _broker_set(self, names: tuple[str, ...]) -> _BrokerSet:
        found = self._broker_sets.get(names)
        if found is None:
            found = self._broker_sets[names] = _BrokerSet(names)
            for name in names:
                self._sets_by_broker.setdefault(name, []).append(found)
        return found

    def _make_entry(self, route: TopicRoute | None) -> _Entry:
        """The entry for an answer, shared with every cached topic that has the same one."""
        if route is None:
            return _NO_ROUTE
        standard = encode_route(route, True)
        shared = self._shared.get(standard)
        if shared is not None and shared.fresh() and shared.version <= route.version:
            return shared  # (read later: it may already be stale for this topic)
        if len(self._shared) >= self.max_entries:
            self._shared.clear()  # only sharing is lost; cached topics keep their entries
        names = tuple(sorted({b.broker_name for b in route.broker_datas}))
        entry = _Entry(standard, encode_route(route, False), self._broker_set(names), route.version)
        self._shared[standard] = entry
        return entry

    def _store(self, topic: str, route: TopicRoute | None) -> None:
        entries = self._entries
        key = _key(topic)
        if key in entries:
            del entries[key]  # re-inserted last: eviction goes oldest-filled first
        elif len(entries) >= self.max_entries:
            del entries[next(iter(entries))]
        entries[key] = self._make_entry(route)

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
            self._entries.pop(_key(t), None)
        for b in brokers:
            for stale in self._sets_by_broker.pop(b, ()):
                stale.valid = False
                self._broker_sets.pop(stale.names, None)
                for other in stale.names:
                    sets = self._sets_by_broker.get(other)
                    if sets is not None and stale in sets:
                        sets.remove(stale)
                        if not sets:
                            del self._sets_by_broker[other]

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._shared.clear()
        for sets in self._sets_by_broker.values():
            for s in sets:
                s.valid = False
        self._broker_sets.clear()
        self._sets_by_broker.clear()
