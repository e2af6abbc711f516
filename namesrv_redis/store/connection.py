"""Redis connections from one URL: standalone, TLS, unix socket, Sentinel and Cluster.

- ``redis://[:password@]host:port/db``, ``rediss://…``, ``unix:///path/redis.sock?db=0``
- ``redis+sentinel://[:password@]host:port[,host:port…]/service_name[/db]``
- ``redis+cluster://[:password@]host:port[,host:port…]`` (or any URL with ``?cluster=true``)
- ``memory://``: a private in-process fakeredis (``namesrv_redis.store.memory``; tests only)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from namesrv_redis.settings.redis_url import mask_url

log = logging.getLogger(__name__)

CLIENT_NAME = "namesrv-redis"
MAX_CONNECTIONS = 64


SOCKET_TIMEOUT_S = 3.0
"""A backstop only: every store call has a shorter deadline (:mod:`.deadlines`)."""


def _common(kw: dict[str, Any]) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "socket_connect_timeout": 1.0,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "health_check_interval": 15,
        # Retries reconnect after a dropped connection (a failover); the call's deadline
        # bounds them.
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "client_name": CLIENT_NAME,
    }
    opts.update(kw)
    return opts


class Deployment(StrEnum):
    STANDALONE = "standalone"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What a Redis URL names."""

    deployment: Deployment
    hosts: list[tuple[str, int]] = field(default_factory=list)
    """Sentinels (Sentinel) or startup nodes (Cluster); empty for standalone."""
    password: str | None = None
    service: str = ""
    """Sentinel: the monitored master's name."""
    db: int = 0


def _hosts(netloc: str) -> tuple[str | None, list[tuple[str, int]]]:
    password = None
    if "@" in netloc:
        cred, netloc = netloc.rsplit("@", 1)
        password = unquote(cred.split(":", 1)[1] if ":" in cred else cred) or None
    hosts = []
    for part in netloc.split(","):
        host, _, port = part.rpartition(":")
        hosts.append((host.strip("[]") or "127.0.0.1", int(port or 6379)))
    return password, hosts


def parse_target(url: str) -> RedisTarget:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return RedisTarget(Deployment.STANDALONE)
    if scheme in ("redis+sentinel", "sentinel"):
        password, hosts = _hosts(parts.netloc)
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ValueError("a Sentinel URL names its service: redis+sentinel://h:p/service")
        db = int(path[1]) if len(path) > 1 else 0
        return RedisTarget(Deployment.SENTINEL, hosts, password, path[0], db)
    if scheme == "redis+cluster" or query.get("cluster", ["false"])[0].lower() == "true":
        password, hosts = _hosts(parts.netloc)
        return RedisTarget(Deployment.CLUSTER, hosts, password)
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"unsupported Redis URL scheme {scheme!r}")
    return RedisTarget(Deployment.STANDALONE)


PIN_AFTER_SWITCH_S = 15.0


def _address_of(client: Any) -> str:
    """``host:port`` of a plain client (for messages; its repr is a page long)."""
    kw = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    return f"{kw.get('host', '?')}:{kw.get('port', '?')}"


class EpochSentinel(Sentinel):
    """Master discovery that asks every sentinel and believes the highest ``config-epoch``.

    redis-py takes the first sentinel's answer. Right after a failover, a sentinel that has
    not yet heard of it still names the old master — which stays writable for seconds and
    then throws away what it took. A failover bumps the configuration epoch, so the master
    named with the highest epoch is the current one (Sentinel resolves conflicts the same way).
    """

    known: tuple[int, str, int] | None = None
    """The newest (config-epoch, ip, port) any answer named: an answer older than it (a
    sentinel that has not heard of a failover yet, while the one that ran it is slow to
    answer) never moves the pod back to the old master."""

    async def current(self, service_name: str) -> tuple[Any, str, int]:
        """(the sentinel with the newest view, master ip, master port)."""
        best: tuple[int, Any, str, int] | None = None
        errors: list[str] = []
        for sentinel in self.sentinels:
            try:
                masters: Any = await sentinel.sentinel_masters()
            except (RedisConnectionError, RedisTimeoutError) as e:
                why = str(e).strip("' ") or repr(e)
                errors.append(f"sentinel {_address_of(sentinel)}: {why}")
                continue
            state = masters.get(service_name)
            if state and self.check_master_state(state, service_name):  # type: ignore[no-untyped-call]
                epoch = int(state.get("config-epoch", 0))
                if best is None or epoch > best[0]:
                    best = (epoch, sentinel, state["ip"], int(state["port"]))
        if best is None:
            detail = f": {', '.join(errors)}" if errors else ""
            raise MasterNotFoundError(f"No master found for {service_name!r}{detail}")
        if self.known is not None and self.known[0] > best[0]:
            return best[1], self.known[1], self.known[2]
        self.known = (best[0], best[2], best[3])
        return best[1], best[2], best[3]

    pinned: tuple[str, int] | None = None
    pinned_until = 0.0

    def pin(self, master: tuple[str, int], seconds: float = PIN_AFTER_SWITCH_S) -> None:
        """Connect to ``master`` for a while, whatever the sentinels answer: a sentinel
        publishes ``+switch-master`` just *before* it changes the address it reports, and the
        others learn of the failover later still."""
        self.pinned, self.pinned_until = master, time.monotonic() + seconds

    def is_pinned(self) -> bool:
        return self.pinned is not None and time.monotonic() < self.pinned_until

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        if self.pinned is not None and self.is_pinned():
            return self.pinned
        _, ip, port = await self.current(service_name)
        return ip, port


def sentinel_options(target: RedisTarget, options: dict[str, Any]) -> dict[str, Any]:
    """How to reach the sentinels themselves: the URL's password, overridden by the
    sentinels' own credentials and TLS (``options["sentinel_kwargs"]``, from
    :func:`namesrv_redis.store.redis_tls.redis_client_options`)."""
    kw: dict[str, Any] = {"password": target.password} if target.password else {}
    kw.update(options.get("sentinel_kwargs") or {})
    return kw


def create_sentinel(target: RedisTarget, options: dict[str, Any] | None = None) -> EpochSentinel:
    """A client of the sentinels themselves (master discovery, ``+switch-master``)."""
    return EpochSentinel(  # type: ignore[no-untyped-call]
        target.hosts,
        sentinel_kwargs={
            "socket_connect_timeout": 1.0,
            "socket_timeout": SOCKET_TIMEOUT_S,
            **sentinel_options(target, options or {}),
        },
        socket_connect_timeout=1.0,
    )


class MasterOnlyPool(SentinelConnectionPool):
    """A Sentinel pool that never hands out a connection to a node that is no longer the
    master it follows.

    A master switch disconnects every connection, but one that is in the middle of a command
    at that moment (a write waiting for ``WAIT``) can finish on the old master and go back to
    the pool still connected to it; the next write would then land on the demoted master and
    be lost when it resyncs. Before a connection is handed out, its address is compared with
    the master this pool follows (:meth:`follow`, set by the topology on ``+switch-master``,
    and every discovery); a connection to any other node is closed and reconnects through
    discovery.
    """

    def follow(self, master: tuple[str, int]) -> None:
        self.master_address = master

    async def ensure_connection(self, connection: Any) -> None:
        master = self.master_address
        if (
            self.is_master
            and master is not None
            and getattr(connection, "is_connected", False)
            and (connection.host, int(connection.port)) != (master[0], int(master[1]))
        ):
            await connection.disconnect()
        await super().ensure_connection(connection)


def create_redis(url: str, *, decode_responses: bool = False, **kw: Any) -> Any:
    """A redis-py asyncio client (``Redis`` or ``RedisCluster``) for the URL. ``kw`` may carry
    credentials and TLS options (an option's password wins over the URL's) and, for Sentinel,
    ``sentinel_kwargs`` for the sentinels themselves."""
    if urlsplit(url).scheme.lower() == "memory":
        from namesrv_redis.store.memory import memory_redis

        return memory_redis(url, decode_responses=decode_responses)
    target = parse_target(url)
    if target.deployment is Deployment.SENTINEL:
        sentinel = create_sentinel(target, kw)
        kw.pop("sentinel_kwargs", None)
        password = kw.pop("password", target.password)
        return sentinel.master_for(
            target.service,
            redis_class=Redis,
            connection_pool_class=MasterOnlyPool,
            db=target.db,
            password=password,
            decode_responses=decode_responses,
            **_common(kw),
        )
    if target.deployment is Deployment.CLUSTER:
        password = kw.pop("password", target.password)
        opts = _common(kw)
        opts.pop("health_check_interval", None)
        opts.pop("retry_on_error", None)
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in target.hosts],
            password=password,
            decode_responses=decode_responses,
            **opts,
        )
    # Under a burst, requests wait for a free connection instead of failing (within the
    # call's deadline).
    opts = _common(kw)
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=decode_responses,
        max_connections=opts.pop("max_connections", MAX_CONNECTIONS),
        timeout=opts.pop("pool_timeout", 10.0),
        **opts,
    )
    return Redis(connection_pool=pool)


def node_client(target: RedisTarget, options: dict[str, Any], host: str, port: int) -> Redis:
    """A plain client of one Cluster node (its keyspace events, its CONFIG, confirmed writes)
    with the cluster client's credentials and TLS options."""
    kw = {k: v for k, v in options.items() if k != "sentinel_kwargs"}
    kw.setdefault("password", target.password)
    return Redis(host=host, port=port, **_common(kw))


def describe_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs)."""
    return mask_url(url)


async def ensure_keyspace_events(
    client: Any, *, warn: bool = True, on_switched: Callable[[], None] | None = None
) -> bool:
    """Try to switch expired-key events on (flags E and x); True when CONFIG says they are on,
    False when it cannot tell (CONFIG refused or renamed away, as on managed Redis).

    This is not the verdict: whether events reach the cleaner is observed with a probe key
    (:class:`namesrv_redis.store.capabilities.ExpiryProbe`), since a server whose operator
    preset ``notify-keyspace-events Ex`` emits them without letting the pod read the setting.
    ``on_switched`` is called when this call switched them on (the verdict is then stale).
    """
    try:
        current = await client.config_get("notify-keyspace-events")
        flags = ""
        for v in current.values():
            flags = v.decode() if isinstance(v, bytes) else str(v)
        have = set(flags)
        if "E" in have and ("x" in have or "A" in have):
            return True
        wanted = "".join(sorted(have | {"E", "x"}))
        await client.config_set("notify-keyspace-events", wanted)
        log.warning(
            "notify-keyspace-events was %r on the Redis node of this namespace; set it to %r "
            "(a restarted or newly promoted node starts with its own setting)",
            flags,
            wanted,
        )
        if on_switched is not None:
            on_switched()
        return True
    except ResponseError as e:
        if not warn:
            return False
        log.warning(
            "cannot check or set notify-keyspace-events (CONFIG refused: %s); a probe key "
            "tells whether expired-key events arrive. Set notify-keyspace-events to include "
            "'Ex' on the Redis server (docs/redis.md)",
            e,
        )
        return False
