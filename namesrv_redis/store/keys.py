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
``pending``                     hash   broker name -> JSON record of a committed chunked write
                                       still being applied (``lua/_common.lua``, "chunked
                                       writes"); route answers show its outcome
``stage:<gen>:<i>``             hash   topic -> queue data: bucket ``i`` of a big registration
                                       staged under generation ``gen`` (:func:`stage_bucket`),
                                       with a TTL until committed and applied
``kvns``                        set    KV-config namespaces that exist (even when emptied)
``kvns-emptied``                set    KV namespaces whose last key was deleted (``check`` tells
                                       them from a table lost to eviction or ``DEL``)
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
``ctrl:groups``                 set    broker names (groups) known to the controller
``ctrl:group:<brokerName>``     hash   controller state of one group (docs/controller.md):
                                       ``cluster``, ``next`` (next broker id), ``master``
                                       (id or empty), ``mepoch``, ``sset`` (JSON id array),
                                       ``sepoch``, ``addr:<id>``, ``code:<id>``
``ctrl-live:<id>:<brokerName>`` hash   controller liveness of one broker id, TTL = its
                                       heartbeatTimeoutMills: ``addr, cluster, epoch, max,
                                       confirm, prio``, ``c:<connection id>`` per carrier
``ctrl-deadlines``              zset   ``<id>:<brokerName>`` -> deadline (ms): the sweeper's
                                       index (the TTL decides; this says when to look)
==============================  =====  =========================================================

``<ident>`` is :func:`broker_ident`: ``<cluster>@<addr>`` with ``%`` and ``@`` escaped in both.
"""

from __future__ import annotations

from dataclasses import dataclass

from namesrv_redis.settings.namespace import validate_namespace

ORDER_TOPIC_CONFIG = "ORDER_TOPIC_CONFIG"
"""RocketMQ's KV namespace that holds order-topic configuration (NamesrvUtil)."""


STAGE_HASH_MODULUS = 2_147_483_647


def stage_bucket(topic: str, buckets: int) -> int:
    """Which of ``buckets`` stage hashes holds ``topic``: its UTF-8 bytes read as a big-endian
    number, modulo 2^31 - 1, modulo ``buckets`` (``lua/_common.lua``'s ``stage_bucket``)."""
    return int.from_bytes(topic.encode(), "big") % STAGE_HASH_MODULUS % buckets


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
    def pending(self) -> str:
        return self.prefix + "pending"

    def stage(self, generation: str, bucket: int) -> str:
        return f"{self.prefix}stage:{generation}:{bucket}"

    @property
    def kv_namespaces(self) -> str:
        return self.prefix + "kvns"

    @property
    def kv_namespaces_emptied(self) -> str:
        return self.prefix + "kvns-emptied"

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

    # ------------------------------------------------------------ controller (docs/controller.md)

    @property
    def controller_groups(self) -> str:
        return self.prefix + "ctrl:groups"

    def controller_group(self, broker_name: str) -> str:
        return f"{self.prefix}ctrl:group:{broker_name}"

    @property
    def controller_live_prefix(self) -> str:
        return self.prefix + "ctrl-live:"

    def controller_live(self, broker_name: str, broker_id: int) -> str:
        return f"{self.controller_live_prefix}{controller_member(broker_name, broker_id)}"

    def controller_member_of_live_key(self, key: str) -> tuple[str, int] | None:
        """(broker name, broker id) of a controller liveness key name, else None."""
        if not key.startswith(self.controller_live_prefix):
            return None
        return split_controller_member(key[len(self.controller_live_prefix) :])

    @property
    def controller_deadlines(self) -> str:
        return self.prefix + "ctrl-deadlines"


def controller_member(broker_name: str, broker_id: int) -> str:
    """``<id>:<brokerName>``: a broker id of a group (ids are digits, so the first ``:``
    splits it whatever the name holds; ``lua/_common.lua``'s ``ctrl_member`` builds the same)."""
    return f"{broker_id}:{broker_name}"


def split_controller_member(member: str) -> tuple[str, int] | None:
    ident, sep, name = member.partition(":")
    if not sep or not ident.isdigit():
        return None
    return name, int(ident)
