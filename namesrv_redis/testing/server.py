"""``NameServer``: one real name-server pod inside a test process (docs/testing.md).

It is the pod ``namesrv-redis serve`` runs — :class:`~namesrv_redis.process.pod.Pod` with its route
store, Lua scripts, remoting server, processor and liveness loops — on a background thread
with its own event loop, listening on a free loopback port. By default its Redis is a
private fakeredis (``memory://``); ``"embedded"`` starts a private real ``redis-server``, and
a ``redis://`` URL uses that server under a namespace of its own.

The helpers set up state without a broker (they call the same route-store scripts the
request handlers call) and read it back for assertions. Every method is synchronous and
safe to call from sync tests and from async tests alike (the server never needs the
caller's event loop). After a helper's write, the pod's route cache is dropped, so the very
next client request sees the change.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

from namesrv_redis.domain.rebuild import AcceptedRegistrations
from namesrv_redis.domain.registrations import RememberedRegistrations
from namesrv_redis.process.pod import Pod
from namesrv_redis.rocketmq.model import PERM_READ, PERM_WRITE, QueueConfig, canonical_data_version
from namesrv_redis.settings.config import FIELDS_BY_ROCKETMQ_NAME, Settings
from namesrv_redis.store.keys import broker_ident
from namesrv_redis.store.liveness import remove_expired
from namesrv_redis.store.memory import is_memory_url, new_fake_redis
from namesrv_redis.store.route_store import (
    DEFAULT_HEARTBEAT_TIMEOUT_MS,
    BrokerRegistration,
    RegisterResult,
    RegisterStatus,
    RouteStore,
)
from namesrv_redis.testing.loop_thread import LoopThread
from namesrv_redis.testing.seen import SeenRequests

log = logging.getLogger(__name__)
T = TypeVar("T")

MEMORY = "memory://"
EMBEDDED = "embedded"
DEFAULT_SCAN_INTERVAL_MS = 100
"""The sweeper's period: a broker past its heartbeat timeout is gone within this."""
START_TIMEOUT_S = 30.0
_instances = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Topic:
    """One topic as a broker reports it (RocketMQ's TopicConfig, the part routes show)."""

    read_queues: int = 8
    write_queues: int | None = None
    """None: as many as ``read_queues``."""
    perm: int = PERM_READ | PERM_WRITE
    sys_flag: int = 0

    def queue_config(self, name: str) -> QueueConfig:
        write = self.read_queues if self.write_queues is None else self.write_queues
        return QueueConfig(name, self.read_queues, write, self.perm, self.sys_flag)


@dataclass(frozen=True, slots=True)
class Registration:
    """One registered broker process, as the route tables and its liveness entry show it."""

    cluster: str
    broker_name: str
    broker_id: int
    addr: str
    alive: bool
    """Its liveness entry exists (False: in the tables, but its heartbeat timed out)."""
    ttl_ms: int | None
    """Milliseconds until its heartbeat times out (None when not alive)."""
    data_version: str | None
    ha_addr: str | None


def _topic_configs(topics: Mapping[str, int | Topic] | Iterable[str]) -> list[QueueConfig]:
    if isinstance(topics, str):
        raise TypeError("topics: a mapping of name -> queues or Topic, or a list of names")
    items: Iterable[tuple[str, int | Topic]] = (
        topics.items() if isinstance(topics, Mapping) else ((name, Topic()) for name in topics)
    )
    out = []
    for name, spec in items:
        topic = Topic(spec) if isinstance(spec, int) else spec
        if not isinstance(topic, Topic):
            raise TypeError(f"topic {name!r}: expected a queue count or a Topic, got {spec!r}")
        out.append(topic.queue_config(name))
    return out


def _settings(values: dict[str, Any], options: Mapping[str, Any]) -> Settings:
    """Settings from defaults and these values only (a test process's NAMESRV_* environment
    is not read: only :func:`~namesrv_redis.settings.config.load_settings` reads it). Every option
    counts as set, so a ``tls.config.file`` never overrides the fixture's TLS options."""
    merged = {
        name: field.get_default(call_default_factory=True)
        for name, field in Settings.model_fields.items()
    }
    for key, value in options.items():
        name = key if key in Settings.model_fields else FIELDS_BY_ROCKETMQ_NAME.get(key)
        if name is None:
            raise ValueError(f"unknown name-server option {key!r}")
        merged[name] = value
    merged.update(values)
    return Settings.model_validate(merged)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class NameServer:
    """A real RocketMQ name server on a free loopback port, for tests."""

    def __init__(
        self,
        *,
        redis: str = MEMORY,
        namespace: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        http: bool = False,
        scan_interval_ms: int = DEFAULT_SCAN_INTERVAL_MS,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        """
        ``redis``: ``"memory://"`` (fakeredis in this process, the default), ``"embedded"``
        (a private ``redis-server``, with expiry events) or a Redis URL (a server you run;
        the name server then uses a namespace of its own and deletes it on stop).
        ``http``: also serve the HTTP/JSON tier (on a free port: :attr:`http_url`).
        ``options``: name-server options by RocketMQ or Python name
        (``{"orderMessageEnable": True}``).
        """
        n = next(_instances)
        self.redis = redis
        self.shared_redis = not is_memory_url(redis) and redis != EMBEDDED
        own = f"test-{os.getpid()}-{n}" if self.shared_redis else "default"
        self.namespace = namespace or own
        self.host = host
        self.http = http
        self.settings = _settings(
            {
                "redis_url": redis if self.shared_redis else None,
                "namespace": self.namespace,
                "listen_host": host,
                "listen_port": port,
                "http_host": host,
                "http_port": 0,
                "scan_not_active_broker_interval": scan_interval_ms,
                "log_level": "WARNING",
                # "embedded": a throwaway redis-server of its own, never the durable default
                # (several test servers at once would contend for one data directory)
                "persistence": "none",
            },
            options or {},
        )
        self._name = f"rocketmq-namesrv-{n}"
        self._loop: LoopThread | None = None
        self._pod: Pod | None = None
        self._seen = SeenRequests()
        self._data_versions = itertools.count(1)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        if self._loop is not None:
            return self
        loop = self._loop = LoopThread(self._name)
        loop.start()
        try:
            loop.run(self._start(), START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        return self

    async def _start(self) -> None:
        client = new_fake_redis() if is_memory_url(self.redis) else None
        pod = self._pod = Pod(self.settings, redis=client, http=self.http)
        await pod.start()
        assert pod.remoting is not None and pod.events is not None
        self._seen.clear()
        pod.remoting.metrics = self._seen
        # Route events subscribed before anyone can write (no change goes unnoticed), and the
        # first pod advertisement done (a stop right away then cancels no Redis call).
        assert pod.advertiser is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and not (
            pod.events.connected
            and await pod.redis.zscore(pod.advertiser.keys.pods, pod.advertiser.address)
        ):
            await asyncio.sleep(0.001)

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            if self._pod is not None:
                if self.shared_redis:
                    loop.run(self._delete_namespace(keep_version=False), 10.0)
                loop.run(self._pod.stop(grace_s=0.5), 10.0)
        finally:
            self._pod = None
            loop.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the name server is not running: call start() first")
        return self._loop.run(coro, timeout)

    @property
    def pod(self) -> Pod:
        if self._pod is None:
            raise RuntimeError("the name server is not running: call start() first")
        return self._pod

    @property
    def _store(self) -> RouteStore:
        store = self.pod.store
        assert store is not None
        return store

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        remoting = self.pod.remoting
        assert remoting is not None
        return remoting.bound_port

    @property
    def address(self) -> str:
        """``host:port``: what a client's ``namesrvAddr`` is set to."""
        return f"{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        """``http://host:port`` of the HTTP/JSON tier (``NameServer(http=True)`` only)."""
        if not self.http:
            raise RuntimeError("this name server has no HTTP tier: NameServer(http=True)")
        return f"http://{self.host}:{self.pod.http_port}"

    # ------------------------------------------------------------------ reset

    def reset(self) -> None:
        """Empty every table (brokers, topics, KV, shared options), forget the requests seen.

        Far cheaper than a restart: the server, its port and its connections stay.
        """
        self._run(self._reset())

    async def _reset(self) -> None:
        pod = self.pod
        await self._delete_namespace(keep_version=True)
        pod.settings = self.settings
        if pod.processor is not None:
            pod.processor.settings = self.settings
            pod.processor.registrations = RememberedRegistrations()
            pod.processor.accepted = AcceptedRegistrations()
        self._settled()
        self._seen.clear()
        if pod.advertiser is not None:
            await pod.advertiser.advertise_once()

    async def _delete_namespace(self, *, keep_version: bool) -> None:
        """Delete the namespace's keys (a private Redis: all of them, at once). The route
        version and the epoch are kept by a reset, so the version never goes back and the pod
        does not take the reset for Redis losing its data (which would make it re-apply the
        registrations it saw, docs/ha.md)."""
        redis, keys = self.pod.redis, self._store.keys
        if not self.shared_redis:
            version, epoch = await redis.mget(keys.version, keys.epoch)
            await redis.flushall()
            if keep_version:
                for key, value in ((keys.version, version), (keys.epoch, epoch)):
                    if value is not None:
                        await redis.set(key, value)
            return
        keep = {keys.version.encode(), keys.epoch.encode()} if keep_version else set()
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=_glob_escape(keys.prefix) + "*", count=1000):
            if key not in keep:
                batch.append(key)
            if len(batch) >= 1000:
                await redis.delete(*batch)
                batch = []
        if batch:
            await redis.delete(*batch)

    def _settled(self) -> None:
        """After a helper's write: drop the pod's cached route answers at once (the route
        event would do it a moment later; a test's next request must not be that moment)."""
        if self.pod.routes is not None:
            self.pod.routes.clear()

    # ------------------------------------------------------------------ set-up helpers

    def register_broker(
        self,
        cluster: str,
        name: str,
        addr: str,
        topics: Mapping[str, int | Topic] | Iterable[str] = (),
        *,
        broker_id: int = 0,
        ha_addr: str = "",
        heartbeat_timeout_ms: int = DEFAULT_HEARTBEAT_TIMEOUT_MS,
        zone: str | None = None,
        filter_servers: list[str] | None = None,
    ) -> RegisterResult:
        """Register a broker process as its REGISTER_BROKER would, without a broker.

        ``topics``: ``{"TopicA": 4}`` (queues), ``{"TopicA": Topic(4, perm=4)}``, or a list
        of names (8 queues each). It stays alive for ``heartbeat_timeout_ms`` (RocketMQ's
        120 s by default) unless :meth:`heartbeat` refreshes it.
        """
        reg = BrokerRegistration(
            cluster=cluster,
            broker_addr=addr,
            broker_name=name,
            broker_id=broker_id,
            ha_server_addr=ha_addr,
            topics=_topic_configs(topics),
            filter_servers=filter_servers,
            heartbeat_timeout_ms=heartbeat_timeout_ms,
            zone_name=zone,
        )
        result = self._run(self._write(self._register(reg)))
        if result.status is not RegisterStatus.OK:
            raise ValueError(f"registration of {name} ({addr}) refused: {result.status.value}")
        return result

    async def _register(self, reg: BrokerRegistration) -> RegisterResult:
        reg.data_version = self._next_data_version()
        result = await self._store.register_broker(reg)
        if result.status is RegisterStatus.REFUSED and len(reg.topics) == 1:
            # RocketMQ 5 refuses a broker id's first registration with exactly one topic (a
            # real broker's first one always carries its system topics too): register it
            # without topics first, as a broker that then creates the topic would be.
            topics, reg.topics = reg.topics, ()
            await self._store.register_broker(reg)
            reg.topics, reg.data_version = topics, self._next_data_version()
            result = await self._store.register_broker(reg)
        return result

    def _next_data_version(self) -> str:
        return canonical_data_version(
            {"counter": next(self._data_versions), "timestamp": int(time.time() * 1000)}
        )

    def unregister_broker(self, cluster: str, name: str, addr: str) -> bool:
        """Remove a broker process as UNREGISTER_BROKER does; False if it was not there."""
        result = self._run(self._write(self._store.unregister_broker(cluster, addr, name)))
        return result.removed

    def expire_broker(self, cluster: str, addr: str) -> bool:
        """Let a broker process's heartbeat time out now; False if it was not registered.

        Its liveness key goes (as when its TTL runs out), then the expiry cleaner's removal
        runs: the same remove-broker script, in its "expired" mode, that a heartbeat timeout
        triggers.
        """
        return self._run(self._write(self._expire(cluster, addr)))

    async def _expire(self, cluster: str, addr: str) -> bool:
        keys = self._store.keys
        deadline = await self.pod.redis.zscore(keys.deadlines, broker_ident(cluster, addr))
        await self.pod.redis.delete(keys.live(cluster, addr))
        # as at its deadline: a liveness key gone before it is an eviction, not an expiry
        now = int(deadline) if deadline is not None else None
        return await remove_expired(self._store, cluster, addr, "expire_broker", now=now)

    def heartbeat(self, cluster: str, addr: str) -> bool:
        """Refresh a broker process's liveness (BROKER_HEARTBEAT); False if unknown."""
        return self._run(self._write(self._store.heartbeat(cluster, addr)))

    def put_kv(self, namespace: str, key: str, value: str) -> None:
        """PUT_KV_CONFIG (``ORDER_TOPIC_CONFIG`` entries make order-topic routes)."""
        self._run(self._write(self._store.put_kv(namespace, key, value)))

    def delete_kv(self, namespace: str, key: str) -> None:
        self._run(self._write(self._store.delete_kv(namespace, key)))

    def delete_topic(self, topic: str, cluster: str | None = None) -> int:
        """DELETE_TOPIC_IN_NAMESRV (of one cluster's brokers, or all); queue datas removed."""
        return self._run(self._write(self._store.delete_topic(topic, cluster)))

    def sweep(self) -> int:
        """Run the liveness sweeper once now; returns how many broker processes it removed."""
        liveness = self.pod.liveness
        assert liveness is not None
        return self._run(self._write(liveness.sweeper.sweep_once()))

    async def _write(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return await coro
        finally:
            self._settled()

    # ------------------------------------------------------------------ read-back helpers

    def topics(self) -> list[str]:
        """Every topic with queue data."""
        return self._run(self._store.all_topics())

    def route(self, topic: str) -> dict[str, Any] | None:
        """A topic's route as GET_ROUTEINFO_BY_TOPIC answers it (wire JSON), or None
        (the client sees TOPIC_NOT_EXIST)."""
        return self._run(self._route(topic))

    async def _route(self, topic: str) -> dict[str, Any] | None:
        current = self.pod.processor.settings if self.pod.processor else self.settings
        route = await self._store.get_route(
            topic,
            with_order_conf=current.order_message_enable,
            support_acting_master=current.support_acting_master,
        )
        return route.to_wire() if route is not None else None

    def routes(self) -> dict[str, dict[str, Any]]:
        """Every topic that has a route, with its route (wire JSON)."""
        return self._run(self._routes())

    async def _routes(self) -> dict[str, dict[str, Any]]:
        out = {}
        for topic in await self._store.all_topics():
            route = await self._route(topic)
            if route is not None:
                out[topic] = route
        return out

    def cluster_info(self) -> dict[str, Any]:
        """GET_BROKER_CLUSTER_INFO's answer (wire JSON)."""
        return self._run(self._cluster_info())

    async def _cluster_info(self) -> dict[str, Any]:
        return (await self._store.get_cluster_info()).to_wire()

    def registrations(self) -> list[Registration]:
        """Every registered broker process, with its liveness."""
        return self._run(self._registrations())

    async def _registrations(self) -> list[Registration]:
        info = await self._store.get_cluster_info()
        out = []
        for name in sorted(info.broker_addr_table):
            bd = info.broker_addr_table[name]
            for broker_id in sorted(bd.broker_addrs):
                addr = bd.broker_addrs[broker_id]
                live = await self._store.live_info(bd.cluster, addr)
                pttl = int(live["pttl"]) if live else -2
                out.append(
                    Registration(
                        cluster=bd.cluster,
                        broker_name=name,
                        broker_id=broker_id,
                        addr=addr,
                        alive=live is not None,
                        ttl_ms=pttl if pttl >= 0 else None,
                        data_version=live.get("dv") if live else None,
                        ha_addr=(live.get("ha") or None) if live else None,
                    )
                )
        return out

    def kv(self, namespace: str) -> dict[str, str] | None:
        """A KV-config namespace's table, or None if it was never written."""
        return self._run(self._store.list_kv(namespace))

    @property
    def requests(self) -> Counter[int]:
        """Remoting requests answered since start or the last reset, per request code
        (compare with ``RequestCode.GET_ROUTEINFO_BY_TOPIC`` and friends)."""
        seen = self._seen
        return self._loop_call(lambda: Counter(seen.requests))

    @property
    def responses(self) -> Counter[int]:
        """Remoting responses sent since start or the last reset, per response code
        (``17`` is TOPIC_NOT_EXIST)."""
        seen = self._seen
        return self._loop_call(lambda: Counter(seen.responses))

    def _loop_call(self, fn: Callable[[], T]) -> T:
        if self._loop is None:
            raise RuntimeError("the name server is not running: call start() first")
        return self._loop.call(fn)

    def __repr__(self) -> str:
        where = self.address if self._pod is not None else "stopped"
        return f"<NameServer {where} redis={self.redis!r} namespace={self.namespace!r}>"
