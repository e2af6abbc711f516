"""Redis credentials and TLS as options, for every URL form (standalone, Sentinel, Cluster).

:func:`redis_client_options` turns a pod's settings into the keyword arguments that
:func:`namesrv_redis.store.connection.create_redis` hands to redis-py:

- ``redisUsername`` / ``redisPassword``: a Redis ACL user (``AUTH user password``), so the
  password need not appear in a URL at all (giving it in both places is refused).
- ``redisTls`` (default: on for ``rediss://``), ``redisTlsCaFile``, ``redisTlsCertFile``,
  ``redisTlsKeyFile``, ``redisTlsKeyPassword``, ``redisTlsCheckHostname`` (default true):
  server verification against the CA file and, when the server asks (``tls-auth-clients``),
  a client certificate. For Sentinel and Cluster URLs ``redisTls=true`` turns TLS on for the
  data nodes; a plain ``redis://`` URL with ``redisTls=true`` is refused (use ``rediss://``).
- ``redisSentinelUsername`` / ``redisSentinelPassword`` / ``redisSentinelTls``: the
  sentinels' own credentials and TLS (same CA and client certificate); without them the
  sentinels are reached as before (the URL's password, TLS as the data nodes).

:func:`minimal_acl` is the least-privilege Redis ACL rule of a pod's user (docs/security.md).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from namesrv_redis.store.keys import Keys

POD_COMMANDS = (
    # connection set-up, health checks, readiness
    "ping hello auth select client|setname",
    # scripts: every write, the route read (SCRIPT LOAD at start and after NOSCRIPT, EVALSHA)
    "evalsha script|load",
    # what the scripts call (Redis 7 checks commands run inside scripts against the ACL too)
    "get incr del exists pexpire pttl hget hmget hgetall hkeys hset hsetnx hdel hexists "
    "sadd srem smembers sismember smismember scard sunion zadd zrem zrange zrangebyscore "
    "zremrangebyscore zcard zscore hlen persist srandmember sscan unlink",
    # route events and expired-key notifications
    "publish subscribe unsubscribe",
    # the route-version and epoch poll (lost events, lost data: events.py), confirmed writes
    # (WAIT), replica count and eviction policy (INFO), table sizes for /metrics (ZCOUNT)
    "mget set wait info zcount",
    # checking notify-keyspace-events at start (add config|set to let the pod set it itself)
    "config|get",
    # namesrv-redis check
    "scan",
)


CLUSTER_COMMANDS = "cluster|slots command"
"""What redis-py's cluster client needs on top: the slot map and the command table."""


def minimal_acl(
    namespace: str, *, db: int = 0, config_set: bool = False, cluster: bool = False
) -> str:
    """The ACL rules (after ``ACL SETUSER <user> on >password``) a pod of ``namespace`` needs:
    these commands, the namespace's keys, its event channel and the expired-key channel.
    (redis-py also sends CLIENT SETINFO, a Redis 7.2 command; its refusal is ignored.)"""
    keys = Keys(namespace)
    commands = " ".join(f"+{c}" for group in POD_COMMANDS for c in group.split())
    if config_set:
        commands += " +config|set"
    if cluster:
        commands += "".join(f" +{c}" for c in CLUSTER_COMMANDS.split())
    return (
        f"resetkeys ~{keys.prefix}* resetchannels &{keys.events} &__keyevent@{db}__:expired "
        f"-@all {commands}"
    )


class RedisOptionError(ValueError):
    """Redis credential/TLS options that cannot work together (the message names them)."""


def _secret(v: Any) -> str | None:
    if v is None:
        return None
    return str(v.get_secret_value()) if hasattr(v, "get_secret_value") else str(v)


def _tls_kwargs(settings: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"ssl_check_hostname": bool(settings.redis_tls_check_hostname)}
    if settings.redis_tls_ca_file:
        out["ssl_ca_certs"] = settings.redis_tls_ca_file
    if settings.redis_tls_cert_file:
        out["ssl_certfile"] = settings.redis_tls_cert_file
    if settings.redis_tls_key_file:
        out["ssl_keyfile"] = settings.redis_tls_key_file
    return out


def redis_client_options(settings: Any, url: str) -> dict[str, Any]:
    """Keyword arguments for ``create_redis(url, **kw)`` from the Redis security options.
    Raises :class:`RedisOptionError` naming the options that cannot work together."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    sentinel = scheme in ("redis+sentinel", "sentinel")
    cluster = scheme == "redis+cluster" or "cluster=true" in parts.query.lower()
    kw: dict[str, Any] = {}
    url_cred = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
    if settings.redis_password is not None and ":" in url_cred:
        raise RedisOptionError("the Redis URL has a password and redisPassword is set: give one")
    if settings.redis_username and url_cred.split(":", 1)[0]:
        raise RedisOptionError("the Redis URL has a user name and redisUsername is set: give one")
    username = settings.redis_username
    if not username and (sentinel or cluster) and "@" in parts.netloc:
        # connection.py reads only the password of a Sentinel/Cluster URL: keep its user too
        cred = parts.netloc.rsplit("@", 1)[0]
        username = unquote(cred.split(":", 1)[0]) if ":" in cred else None
    if username:
        kw["username"] = username
    password = _secret(settings.redis_password)
    if password:
        kw["password"] = password
    tls = settings.redis_tls if settings.redis_tls is not None else scheme == "rediss"
    has_files = any(
        (settings.redis_tls_ca_file, settings.redis_tls_cert_file, settings.redis_tls_key_file)
    )
    if not tls and has_files:
        raise RedisOptionError(
            "redisTlsCaFile/redisTlsCertFile/redisTlsKeyFile need TLS: use a rediss:// URL "
            "or set redisTls=true"
        )
    if bool(settings.redis_tls_cert_file) != bool(settings.redis_tls_key_file):
        raise RedisOptionError("set both redisTlsCertFile and redisTlsKeyFile, or neither")
    if tls:
        if scheme in ("redis", "unix") and not cluster:
            raise RedisOptionError(f"redisTls=true needs a rediss:// URL, not {scheme}://")
        kw.update(_tls_kwargs(settings))
        if scheme != "rediss":
            kw["ssl"] = True
        key_password = _secret(settings.redis_tls_key_password)
        if key_password and not cluster:  # redis-py's cluster client cannot take it
            kw["ssl_password"] = key_password
    if sentinel:
        s_tls = settings.redis_sentinel_tls if settings.redis_sentinel_tls is not None else tls
        s_user = settings.redis_sentinel_username
        s_pass = _secret(settings.redis_sentinel_password)
        if s_user or s_pass or s_tls:
            skw: dict[str, Any] = {}
            if s_user:
                skw["username"] = s_user
            if s_pass:
                skw["password"] = s_pass
            if s_tls:
                skw.update(_tls_kwargs(settings), ssl=True)
            kw["sentinel_kwargs"] = skw
    return kw
