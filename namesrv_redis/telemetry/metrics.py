"""Prometheus metrics of one pod — every counter and gauge the name server exports.

Front ends and background loops import the metric they move from here; ``/metrics`` on the
HTTP tier renders :data:`REGISTRY`. Gauges of the route tables (brokers, clusters, topics) are
read from Redis when ``/metrics`` is scraped (see :func:`set_table_sizes`).
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from namesrv_redis import __version__
from namesrv_redis.rocketmq.codes import RequestCode, ResponseCode

REGISTRY = CollectorRegistry(auto_describe=True)

BUILD_INFO = Gauge(
    "namesrv_redis_build_info",
    "Always 1; the version label is the namesrv-redis package this pod runs.",
    ["version"],
    registry=REGISTRY,
)
BUILD_INFO.labels(version=__version__).set(1)

# Every label value comes from a bounded set: a client choosing request codes or HTTP methods
# must not be able to create one time series per value (each costs memory forever, and every
# scrape renders them all).
OTHER = "other"
_REQUEST_CODES = frozenset(int(c) for c in RequestCode)
_RESPONSE_CODES = frozenset(int(c) for c in ResponseCode)
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def request_code_label(code: int) -> str:
    """A remoting request code's label: the code when RocketMQ defines it, else "other"."""
    return str(code) if code in _REQUEST_CODES else OTHER


def response_code_label(code: int) -> str:
    return str(code) if code in _RESPONSE_CODES else OTHER


def http_route_label(method: str, route_template: str) -> str:
    """``<method> <route template>`` (converters left out: ``{topic:path}`` is ``{topic}``);
    unknown methods (any token is one) count as "other"."""
    template = _CONVERTER.sub(r"{\1}", route_template)
    return f"{method if method in _HTTP_METHODS else OTHER} {template}"


_CONVERTER = re.compile(r"\{(\w+):\w+\}")


REQUESTS = Counter(
    "namesrv_requests_total",
    "Requests answered, by front end (remoting, http) and request code or route.",
    ["frontend", "code"],
    registry=REGISTRY,
)
REQUEST_LATENCY = Histogram(
    "namesrv_request_seconds",
    "Time to answer a request, by front end and request code or route.",
    ["frontend", "code"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5),
    registry=REGISTRY,
)
RESPONSES = Counter(
    "namesrv_responses_total",
    "Remoting responses by response code (0 success, 17 topic not exist, ...).",
    ["frontend", "response_code"],
    registry=REGISTRY,
)
REGISTRATIONS = Counter(
    "namesrv_broker_registrations_total",
    "REGISTER_BROKER requests by outcome (ok, need_topics, refused, stale_state, error).",
    ["outcome"],
    registry=REGISTRY,
)
REMOVALS = Counter(
    "namesrv_broker_removals_total",
    "Broker processes removed from the route tables by this pod, by reason "
    "(unregister, expired, conn).",
    ["reason"],
    registry=REGISTRY,
)
EXPIRY_EVENTS = Counter(
    "namesrv_expiry_events_total",
    "Expired-key notifications received for liveness keys.",
    registry=REGISTRY,
)
SWEEPS = Counter(
    "namesrv_sweeps_total",
    "Sweeps of the deadline index run by this pod.",
    registry=REGISTRY,
)
CACHE = Counter(
    "namesrv_route_cache_total",
    "Route cache lookups by result (hit, miss, stale).",
    ["result"],
    registry=REGISTRY,
)
REDIS_ERRORS = Counter(
    "namesrv_redis_errors_total",
    "Redis calls that failed, by operation.",
    ["operation"],
    registry=REGISTRY,
)
CONNECTIONS = Gauge(
    "namesrv_remoting_connections",
    "Open remoting connections.",
    registry=REGISTRY,
)
BROKERS = Gauge(
    "namesrv_brokers",
    "Registered broker addresses (all pods; read from Redis at scrape time).",
    registry=REGISTRY,
)
CLUSTERS = Gauge(
    "namesrv_clusters",
    "Clusters (all pods; read from Redis at scrape time).",
    registry=REGISTRY,
)
TOPICS = Gauge(
    "namesrv_topics",
    "Topics with queue data (all pods; read from Redis at scrape time).",
    registry=REGISTRY,
)


def set_table_sizes(brokers: int, clusters: int, topics: int) -> None:
    BROKERS.set(brokers)
    CLUSTERS.set(clusters)
    TOPICS.set(topics)


# ------------------------------------------------------------------ Redis HA (docs/ha.md)

KEYSPACE_NOTIFICATIONS = Gauge(
    "namesrv_keyspace_notifications",
    "1 when the Redis node that holds this namespace emits expired-key events to this pod's "
    "cleaner, 0 when dead brokers are found by the sweeper alone.",
    registry=REGISTRY,
)
REPLICATION_UNCONFIRMED = Counter(
    "namesrv_replication_unconfirmed_total",
    "Writes answered SYSTEM_ERROR because no replica confirmed them in time (WAIT).",
    registry=REGISTRY,
)
REDIS_FAILOVERS = Counter(
    "namesrv_redis_failovers_total",
    "Master switches seen (Sentinel +switch-master, Cluster slot owner changes).",
    registry=REGISTRY,
)
DATA_LOSS = Counter(
    "namesrv_redis_data_loss_total",
    "Times this pod found the namespace's data lost in Redis (epoch changed or route "
    "version went back) and re-applied its connected brokers' registrations.",
    registry=REGISTRY,
)
REBUILT_REGISTRATIONS = Counter(
    "namesrv_rebuilt_registrations_total",
    "Registrations re-applied after a data loss, by outcome (ok, failed).",
    ["outcome"],
    registry=REGISTRY,
)
REPAIRS = Counter(
    "namesrv_repairs_total",
    "Parts of the route tables found missing or divergent in Redis and repaired from a "
    "connected broker's last registration (reconciliation) or re-created by a liveness "
    "refresh, by part (live, deadline, addr_name, broker, cluster, queue_data, topic_set, "
    "reverse_index, version).",
    ["part"],
    registry=REGISTRY,
)
TLS_CONNECTIONS = Counter(
    "namesrv_remoting_accepted_total",
    "Remoting connections accepted with TLS on, by outcome (tls, plain, refused_plain, "
    "handshake_failed).",
    ["outcome"],
    registry=REGISTRY,
)
ACL_REFUSALS = Counter(
    "namesrv_acl_refusals_total",
    "Requests refused by ACL with NO_PERMISSION, by request code and reason (unsigned, "
    "unknown_key, bad_signature, forbidden, address, unavailable).",
    ["code", "reason"],
    registry=REGISTRY,
)
REDIS_PERSISTENCE = Gauge(
    "namesrv_redis_persistence",
    "Persistence of the Redis behind this pod: 1 on the mode in force (none, rdb, aof-everysec, "
    "aof-always, aof-no, unknown) and where it was read from (config, info, none).",
    ["mode", "source"],
    registry=REGISTRY,
)
REDIS_KV_DURABLE = Gauge(
    "namesrv_redis_kv_durable",
    "1 when KV config survives a restart of the Redis behind this pod, 0 when it would be "
    "lost, -1 when that cannot be told (CONFIG refused).",
    registry=REGISTRY,
)
EMBEDDED_REDIS_RESTARTS = Counter(
    "namesrv_embedded_redis_restarts_total",
    "Times this pod restarted its embedded Redis after it died.",
    registry=REGISTRY,
)


def set_persistence(mode: str, source: str, kv_durable: bool | None) -> None:
    REDIS_PERSISTENCE.clear()
    REDIS_PERSISTENCE.labels(mode=mode, source=source).set(1)
    REDIS_KV_DURABLE.set(-1 if kv_durable is None else int(kv_durable))


# ------------------------------------------------------------ what Redis allows (docs/redis.md)

REDIS_MAXMEMORY_POLICY = Gauge(
    "namesrv_redis_maxmemory_policy",
    "Eviction policy of the Redis node that holds this namespace: 1 on the policy found "
    "(noeviction, allkeys-lru, volatile-ttl, …, unknown) and where it was read from (config, "
    "info, none). allkeys-* with a memory limit makes the pod unready.",
    ["policy", "source"],
    registry=REGISTRY,
)
REDIS_MAXMEMORY_BYTES = Gauge(
    "namesrv_redis_maxmemory_bytes",
    "maxmemory of the Redis node that holds this namespace (0: no limit; -1: unknown).",
    registry=REGISTRY,
)
REDIS_PERMISSION = Gauge(
    "namesrv_redis_permission",
    "1 when the pod's Redis user may run the command (script, evalsha, mget, set, wait, "
    "info, config, subscribe, subscribe_expired), 0 when Redis refused it (ACL or renamed).",
    ["permission"],
    registry=REGISTRY,
)
_POLICIES = frozenset(
    {
        "noeviction",
        "allkeys-lru",
        "allkeys-lfu",
        "allkeys-random",
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
        "unknown",
    }
)


def set_maxmemory_policy(policy: str, source: str, maxmemory: int | None) -> None:
    REDIS_MAXMEMORY_POLICY.clear()
    REDIS_MAXMEMORY_POLICY.labels(policy if policy in _POLICIES else OTHER, source).set(1)
    REDIS_MAXMEMORY_BYTES.set(-1 if maxmemory is None else maxmemory)


def set_redis_permission(permission: str, allowed: bool) -> None:
    REDIS_PERMISSION.labels(permission).set(1 if allowed else 0)
