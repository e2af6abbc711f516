"""The Redis key schema of one name-server namespace — the only module that formats a key.

Every key of namespace ``ns`` starts with ``nsr:{ns}:``. The braces are a Redis Cluster hash
tag, so all keys of one namespace live in one slot and every Lua script (which receives the
prefix as ``KEYS[1]`` and derives the other names from it, exactly as below) runs unchanged on
standalone Redis, Sentinel and Cluster. Several namespaces (several independent RocketMQ
estates) can share one Redis.

==============================  =====  =========================================================
key (after the prefix)          type   contents
==============================  =====  =========================================================
``version``                     str    route version: INCR'd by every write a route answer sees
``clusters``                    set    cluster names                         (clusterAddrTable)
``cluster:<cluster>``           set    broker names of that cluster          (clusterAddrTable)
``brokers``                     hash   broker name -> BrokerData JSON        (brokerAddrTable)
                                       ``{"cluster","brokerName","brokerAddrs":{"<id>":addr},
                                       "zoneName"?, "enableActingMaster"?}``
``topics``                      set    every topic that has queue data
``topic:<topic>``               hash   broker name -> queue data ``"r,w,perm,sysflag"``
                                       (topicQueueTable; see :mod:`namesrv_redis.rocketmq.model`)
``broker-topics:<brokerName>``  set    reverse index: topics holding queue data of that broker
``live:<ident>``                hash   live info (brokerLiveTable), with a TTL = heartbeat
                                       timeout: ``name, id, dv`` (data version JSON), ``sv``
                                       (state version), ``ha``, ``last`` (ms), ``timeout`` (ms),
                                       ``conn`` (owning connection). The name carries cluster
                                       and address because an expired-key event carries only it.
``deadlines``                   zset   ``<ident>`` -> deadline (ms): the sweeper's index
``addr-names``                  hash   ``<ident>`` -> broker name (survives expiry)
``filters``                     hash   ``<ident>`` -> filter server list JSON
``tables``                      hash   broker name -> table token ``<id>:<k|d>:<body token>``:
                                       the registration body whose topic table that broker's
                                       queue data equals; any other queue-data write deletes
                                       it (lets a changed registration send only its diff)
``kvns``                        set    KV-config namespaces that exist (even when emptied)
``kv:<namespace>``              hash   KV config of that namespace
``config``                      hash   name-server options changed by UPDATE_NAMESRV_CONFIG
``pods``                        zset   remoting address of each live pod -> deadline (ms)
``epoch``                       str    random token set (SET NX) by the first pod that finds it
                                       missing: a changed or missing epoch tells every pod
                                       that Redis lost the namespace's data (docs/ha.md)
``acl``                         hash   ACL accessKey -> ``{"secretKey","permission"}`` JSON
                                       (``admin`` or ``broker``; written by acl_write.lua)
``events``                      chan   pub/sub channel of route-change events (JSON)
``probe:<name>``                str    a pod's probe key, a few hundred ms of TTL: its expiry
                                       event proves notifications arrive (capabilities.py)
==============================  =====  =========================================================

``<ident>`` is :func:`broker_ident`: ``<cluster>@<addr>`` with ``%`` and ``@`` escaped in both.
"""

from __future__ import annotations

from dataclasses import dataclass

from namesrv_redis.settings.namespace import validate_namespace

ORDER_TOPIC_CONFIG = "ORDER_TOPIC_CONFIG"
"""RocketMQ's KV namespace that holds order-topic configuration (NamesrvUtil)."""


def _escape_ident_part(s: str) -> str:
    return s.replace("%", "%25").replace("@", "%40")


def _unescape_ident_part(s: str) -> str:
    return s.replace("%40", "@").replace("%25", "%")


def broker_ident(cluster: str, addr: str) -> str:
    """The identity of one registered broker process (RocketMQ 5's BrokerAddrInfo):
    ``<cluster>@<addr>`` with ``%`` and ``@`` escaped as ``%25`` and ``%40`` in both parts, so
    any cluster name and address round-trip through :func:`split_ident` (``lua/_common.lua``'s
    ``ident_of`` builds the same text). Names without ``%`` or ``@`` are left as they are."""
    return f"{_escape_ident_part(cluster)}@{_escape_ident_part(addr)}"


def split_ident(ident: str) -> tuple[str, str]:
    """Inverse of :func:`broker_ident`: split at the only unescaped ``@``."""
    cluster, sep, addr = ident.partition("@")
    if not sep or "@" in addr:
        raise ValueError(f"not a broker identity: {ident!r}")
    return _unescape_ident_part(cluster), _unescape_ident_part(addr)


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names of one namespace."""

    namespace: str

    def __post_init__(self) -> None:
        validate_namespace(self.namespace)

    @property
    def prefix(self) -> str:
        return f"nsr:{{{self.namespace}}}:"

    @property
    def version(self) -> str:
        return self.prefix + "version"

    @property
    def clusters(self) -> str:
        return self.prefix + "clusters"

    def cluster(self, cluster: str) -> str:
        return f"{self.prefix}cluster:{cluster}"

    @property
    def brokers(self) -> str:
        return self.prefix + "brokers"

    @property
    def topics(self) -> str:
        return self.prefix + "topics"

    def topic(self, topic: str) -> str:
        return f"{self.prefix}topic:{topic}"

    def broker_topics(self, broker_name: str) -> str:
        return f"{self.prefix}broker-topics:{broker_name}"

    @property
    def live_prefix(self) -> str:
        return self.prefix + "live:"

    def live(self, cluster: str, addr: str) -> str:
        return self.live_prefix + broker_ident(cluster, addr)

    def ident_of_live_key(self, key: str) -> str | None:
        """The broker ident in a liveness key name, or None if the key is not one."""
        if key.startswith(self.live_prefix):
            return key[len(self.live_prefix) :]
        return None

    @property
    def deadlines(self) -> str:
        return self.prefix + "deadlines"

    @property
    def addr_names(self) -> str:
        return self.prefix + "addr-names"

    @property
    def filters(self) -> str:
        return self.prefix + "filters"

    @property
    def tables(self) -> str:
        return self.prefix + "tables"

    @property
    def kv_namespaces(self) -> str:
        return self.prefix + "kvns"

    def kv(self, namespace: str) -> str:
        return f"{self.prefix}kv:{namespace}"

    @property
    def config(self) -> str:
        return self.prefix + "config"

    @property
    def pods(self) -> str:
        return self.prefix + "pods"

    @property
    def events(self) -> str:
        return self.prefix + "events"

    @property
    def epoch(self) -> str:
        return self.prefix + "epoch"

    @property
    def acl(self) -> str:
        return self.prefix + "acl"

    @property
    def probe_prefix(self) -> str:
        return self.prefix + "probe:"

    def probe(self, name: str) -> str:
        """A probe key (``lua/probe_expiry.lua`` derives the same name)."""
        return self.probe_prefix + name
