"""Redis connections from one URL: standalone, TLS, unix socket, Sentinel and Cluster.

- ``redis://[:password@]host:port/db``, ``rediss://…``, ``unix:///path/redis.sock?db=0``
- ``redis+sentinel://[:password@]host:port[,host:port…]/service_name[/db]``
- ``redis+cluster://[:password@]host:port[,host:port…]`` (or any URL with ``?cluster=true``)
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

CLIENT_NAME = "namesrv-redis"
MAX_CONNECTIONS = 64


def _common(kw: dict[str, Any]) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "socket_connect_timeout": 3.0,
        "socket_timeout": 10.0,
        "health_check_interval": 15,
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), 3),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "client_name": CLIENT_NAME,
    }
    opts.update(kw)
    return opts


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


def create_redis(url: str, *, decode_responses: bool = False, **kw: Any) -> Any:
    """A redis-py asyncio client (``Redis`` or ``RedisCluster``) for the URL."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    scheme = parts.scheme.lower()
    if scheme in ("redis+sentinel", "sentinel"):
        password, hosts = _hosts(parts.netloc)
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ValueError("a Sentinel URL names its service: redis+sentinel://h:p/service")
        db = int(path[1]) if len(path) > 1 else 0
        # the sentinels' own credentials/TLS from redis_tls.py win over the URL's password
        sentinel_kw = {"password": password} if password else {}
        sentinel_kw.update(kw.pop("sentinel_kwargs", None) or {})
        password = kw.pop("password", password)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            hosts,
            sentinel_kwargs=sentinel_kw or None,
            socket_connect_timeout=3.0,
        )
        return sentinel.master_for(
            path[0],
            redis_class=Redis,
            db=db,
            password=password,
            decode_responses=decode_responses,
            **_common(kw),
        )
    if scheme == "redis+cluster" or query.get("cluster", ["false"])[0].lower() == "true":
        password, hosts = _hosts(parts.netloc)
        password = kw.pop("password", password)  # an option (redis_tls.py) wins over the URL
        opts = _common(kw)
        opts.pop("health_check_interval", None)
        opts.pop("retry_on_error", None)
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in hosts],
            password=password,
            decode_responses=decode_responses,
            **opts,
        )
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"unsupported Redis URL scheme {scheme!r}")
    # Under a burst, requests wait for a free connection instead of failing.
    opts = _common(kw)
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=decode_responses,
        max_connections=opts.pop("max_connections", MAX_CONNECTIONS),
        timeout=opts.pop("pool_timeout", 10.0),
        **opts,
    )
    return Redis(connection_pool=pool)


def describe_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs)."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", re.sub(r"(//)([^:@/]+)@", r"\1***@", url))


async def ensure_keyspace_events(client: Any) -> bool:
    """Make sure expired-key events are on (flags E and x); True when they are.

    Managed Redis often forbids CONFIG: then a loud warning says that dead brokers will be
    removed by the sweeper alone (within one sweep interval of their deadline).
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
        return True
    except ResponseError as e:
        log.warning(
            "cannot enable keyspace notifications (CONFIG refused: %s); dead brokers will be "
            "removed by the sweeper only, up to one scanNotActiveBrokerInterval late. "
            "Set notify-keyspace-events to include 'Ex' on the Redis server.",
            e,
        )
        return False
