"""An in-memory reference model of RocketMQ's name-server rules, to check the Redis store against.

Written from the Java source — ``namesrv/routeinfo/RouteInfoManager.java`` of the 5.x develop
branch and of tag rocketmq-all-4.9.8, plus ``kvconfig/KVConfigManager.java`` and the request
processors — and deliberately *not* from ``lua/``: it is an independent oracle. It follows
RocketMQ 5 where the two versions differ (both are noted), and plain Python dicts replace
Java's HashMaps.

Where namesrv-redis deliberately differs from Java, the model follows our documented choice
(docs/protocol.md "Deliberate differences", the issue "Route store in Redis"); every such
place is marked ``OURS:`` below. In short:

(a) all-or-nothing writes: a refused or stale registration writes nothing at all (Java has
    already added the cluster entry, created the broker data and removed other ids of the
    address; on a stale state version it also drops the address's live info);
(b) live info is keyed by (cluster, address), as in 5.x (4.9: address only);
(c) unregistering removes every id whose address is the broker's (5.x ``removeIf``; 4.9
    removed by broker id);
(d) REGISTER_TOPIC_IN_NAMESRV refuses the whole request if any broker is unknown (Java may
    have written the queue datas before the unknown one);
(e) route queueDatas / brokerDatas are ordered by broker name (Java: hash order);
(f) the "first queue data" whose topicSysFlag decides the unit-topic lists is the one of the
    smallest broker name (Java: the first in hash order);
(g) a first registration of a broker id listing exactly one topic is refused (5.x);
(h) prime-slave (acting master) rules apply only to a broker that sent enableActingMaster
    (a 5.x broker), as in 5.x;
(i) a broker process (cluster, address) that re-registers under another broker name leaves
    its old group at once (Java: only when its connection closes or it expires), and is then
    a first registration of its new data;
(j) removing a broker process (unregister, expiry, closed connection) uses the broker name
    it registered under, whatever name the request carries, and an emptied group leaves
    every cluster that lists it (5.x unregister: only the request's cluster; 4.9
    onChannelDestroy: every cluster) — an address must never be left where nothing would
    expire it;
(k) deleteTopicWithBrokerRegistration drops the broker's unreported topics only when its
    topics are (re)written — first registration or changed data version (5.x: on every
    registration, which with split registrations deletes the other batches' topics);
(l) a removal that takes no address out of the group changes nothing (5.x re-wipes the
    write perm of a masterless acting-master group on every unregister naming it);
(m) zoneName and enableActingMaster of a group are set by each registration that sends them
    and kept by one that does not (5.x overwrites both on every registration: a 4.x broker
    in the group resets enableActingMaster to false and the zone to null).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

PERM_WRITE = 2
PERM_READ = 4
FLAG_UNIT = 0x1
FLAG_UNIT_SUB = 0x2
MASTER_ID = 0
ORDER_TOPIC_CONFIG = "ORDER_TOPIC_CONFIG"
SYNC_BROKER_MEMBER_GROUP_PREFIX = "rmq_sys_SYNC_BROKER_MEMBER_"

TopicTuple = tuple[str, int, int, int, int]
"""(topic, readQueueNums, writeQueueNums, perm, topicSysFlag): a TopicConfig, as registered."""


@dataclass(frozen=True, slots=True)
class Queue:
    """QueueData of one broker name in one topic."""

    read: int
    write: int
    perm: int
    flag: int = 0


@dataclass(slots=True)
class Group:
    """BrokerData: a broker name's cluster and the address of each broker id."""

    cluster: str
    addrs: dict[int, str] = field(default_factory=dict)
    zone: str | None = None
    acting: bool | None = None


@dataclass(frozen=True, slots=True)
class Live:
    """BrokerLiveInfo of one broker process (cluster, address)."""

    dv: str
    sv: int
    ha: str
    conn: str


@dataclass(frozen=True, slots=True)
class Registration:
    """One REGISTER_BROKER request (header and body), as the model needs it."""

    cluster: str
    addr: str
    name: str
    broker_id: int
    dv: str = '{"counter":0,"timestamp":0}'
    sv: int = 0
    topics: tuple[TopicTuple, ...] = ()
    ha: str = ""
    filters: tuple[str, ...] | None = None
    zone: str | None = None
    acting: bool | None = None
    static_mappings: bool = False
    conn: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """RegisterBrokerResult: status ('ok', 'refused', 'stale_state') and what a slave learns."""

    status: str
    master_addr: str | None = None
    ha_addr: str | None = None


@dataclass
class RouteModel:
    """topicQueueTable, brokerAddrTable, clusterAddrTable, brokerLiveTable, filterServerTable
    and KVConfigManager's configTable, with the operations the store offers."""

    clusters: dict[str, set[str]] = field(default_factory=dict)
    brokers: dict[str, Group] = field(default_factory=dict)
    topics: dict[str, dict[str, Queue]] = field(default_factory=dict)
    live: dict[tuple[str, str], Live] = field(default_factory=dict)
    filters: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # OURS (j): the broker name each live process registered under (Java finds it by
    # scanning brokerAddrTable for a group of the process's cluster holding the address).
    names: dict[tuple[str, str], str] = field(default_factory=dict)
    kv: dict[str, dict[str, str]] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)

    # ================================================================== registration

    def register(
        self, r: Registration, *, delete_topic_with_broker_registration: bool = False
    ) -> Outcome:
        """RouteInfoManager#registerBroker (5.x; the 4.9 rules are the 5.x ones without state
        versions, prime slaves and the per-topic change test)."""
        key = (r.cluster, r.addr)
        group = self.brokers.get(r.name)
        new_group = group is None
        # "Switch slave to master": the same address under another id goes (4.9 and 5.x).
        addrs = {
            i: a
            for i, a in (group.addrs if group else {}).items()
            if not (a == r.addr and i != r.broker_id)
        }
        old_addr = addrs.get(r.broker_id)
        # 5.x: another address holding this id with a newer state version wins.
        if old_addr is not None and old_addr != r.addr:
            old_live = self.live.get((r.cluster, old_addr))
            if old_live is not None and old_live.sv > r.sv:
                return Outcome("stale_state")  # OURS (a): nothing written at all
        # 5.x: an id not yet registered may not start with a one-topic registration.
        if old_addr is None and len(r.topics) == 1:
            return Outcome("refused")  # OURS (a), (g)

        prev_name = self.names.get(key)
        renamed = prev_name is not None and prev_name != r.name
        prev_live = self.live.get(key)
        if renamed:
            assert prev_name is not None
            self._remove_process(r.cluster, r.addr, prev_name)  # OURS (i)

        self.clusters.setdefault(r.cluster, set()).add(r.name)
        if group is None:
            group = self.brokers[r.name] = Group(r.cluster)
        addrs[r.broker_id] = r.addr
        group.addrs = addrs
        if r.acting is not None:  # OURS (m)
            group.acting = r.acting
        if r.zone:  # OURS (m)
            group.zone = r.zone
        register_first = new_group or not old_addr

        # isBrokerTopicConfigChanged: the stored DataVersion of this process differs
        # (or there is none). OURS (i): after a rename it describes another group's topics.
        dv_changed = renamed or prev_live is None or prev_live.dv != r.dv
        is_master = r.broker_id == MASTER_ID
        # 5.x: the smallest id of a group without master, for a 5.x broker (h).
        is_prime_slave = r.acting is not None and not is_master and r.broker_id == min(addrs)
        if is_master or is_prime_slave:
            rewrite_all = register_first or dv_changed
            if (
                delete_topic_with_broker_registration
                and not r.static_mappings
                and rewrite_all  # OURS (k)
            ):
                reported = {t[0] for t in r.topics}
                for t in sorted(self._topics_of_broker(r.name) - reported):
                    self._drop_queue(t, r.name)
            for topic, read, write, perm, flag in r.topics:
                # 5.x isTopicConfigChanged: all topics when the data version changed, else
                # only those that hold no queue data of this broker yet (4.9: none).
                if rewrite_all or r.name not in self.topics.get(topic, {}):
                    if is_prime_slave and group.acting:
                        perm &= ~PERM_WRITE  # the acting master is read-only
                    self.topics.setdefault(topic, {})[r.name] = Queue(read, write, perm, flag)

        self.live[key] = Live(r.dv, r.sv, r.ha, r.conn)
        self.names[key] = r.name
        if r.filters is not None:
            if r.filters:
                self.filters[key] = list(r.filters)
            else:
                self.filters.pop(key, None)

        if not is_master:
            master = group.addrs.get(MASTER_ID)
            if master is not None:
                master_live = self.live.get((r.cluster, master))
                if master_live is not None:
                    return Outcome("ok", master, master_live.ha or None)
        return Outcome("ok")

    # ================================================================== liveness

    def heartbeat(self, cluster: str, addr: str) -> bool:
        """BROKER_HEARTBEAT (5.x): refreshes a known process; False for an unknown one."""
        return (cluster, addr) in self.live

    def query_data_version(self, cluster: str, addr: str, dv: str) -> tuple[bool, str | None]:
        """QUERY_DATA_VERSION: (changed, the stored DataVersion). 5.x refreshes liveness either
        way (4.9 only when unchanged); an unknown process is 'changed'."""
        live = self.live.get((cluster, addr))
        if live is None:
            return True, None
        return live.dv != dv, live.dv

    def unregister(self, cluster: str, addr: str, name: str) -> bool:
        """UNREGISTER_BROKER (5.x unRegisterBroker). True when something was taken away."""
        return self._remove_process(cluster, addr, name)

    def expire(self, cluster: str, addr: str, *, alive: bool) -> bool:
        """scanNotActiveBroker / onChannelDestroy(BrokerAddrInfo) of one process whose
        heartbeat timeout passed. OURS: refused while the liveness key still lives
        (``alive``), so a stale expiry event cannot remove a re-registered broker."""
        if alive:
            return False
        return self._remove_process(cluster, addr, "")

    def connection_closed(self, cluster: str, addr: str, conn: str) -> bool:
        """onChannelDestroy(Channel): only the connection the process registered through."""
        live = self.live.get((cluster, addr))
        if live is None or live.conn != conn:
            return False
        return self._remove_process(cluster, addr, "")

    def _remove_process(self, cluster: str, addr: str, name_hint: str) -> bool:
        key = (cluster, addr)
        removed = self.live.pop(key, None) is not None
        name = self.names.pop(key, None) or name_hint  # OURS (j)
        if not name:
            return removed
        if self.filters.pop(key, None) is not None:
            removed = True
        group = self.brokers.get(name)
        if group is None:
            return removed
        kept = {i: a for i, a in group.addrs.items() if a != addr}  # (c) removeIf
        if len(kept) == len(group.addrs):
            return removed  # OURS (l)
        group.addrs = kept
        if not kept:
            del self.brokers[name]
            for c in list(self.clusters):  # OURS (j): every cluster listing it
                self.clusters[c].discard(name)
                if not self.clusters[c]:
                    del self.clusters[c]
            for t in sorted(self._topics_of_broker(name)):
                self._drop_queue(t, name)
        elif group.acting and min(kept) > MASTER_ID:
            # 5.x cleanTopicByUnRegisterRequests: the master of an acting-master group left.
            self._set_write_perm(name, wipe=True)
        return True

    # ================================================================== topics

    def wipe_write_perm(self, name: str) -> int:
        """WIPE_WRITE_PERM_OF_BROKER: clear the write bit; the number of topics of the broker."""
        return self._set_write_perm(name, wipe=True)

    def add_write_perm(self, name: str) -> int:
        """ADD_WRITE_PERM_OF_BROKER: perm becomes read|write; the number of topics."""
        return self._set_write_perm(name, wipe=False)

    def _set_write_perm(self, name: str, *, wipe: bool) -> int:
        count = 0
        for queues in self.topics.values():
            q = queues.get(name)
            if q is None:
                continue
            perm = q.perm & ~PERM_WRITE if wipe else PERM_READ | PERM_WRITE
            queues[name] = Queue(q.read, q.write, perm, q.flag)
            count += 1
        return count

    def delete_topic(self, topic: str, cluster: str | None = None) -> int:
        """DELETE_TOPIC_IN_NAMESRV: every queue data of the topic, or (5.x) those of the
        brokers of one cluster. Returns how many broker queue datas went."""
        queues = self.topics.get(topic)
        if queues is None:
            return 0
        if cluster is None:
            del self.topics[topic]
            return len(queues)
        count = 0
        for name in self.clusters.get(cluster, set()):
            if queues.pop(name, None) is not None:
                count += 1
        if not queues:
            del self.topics[topic]
        return count

    def register_topic(self, topic: str, queue_datas: Sequence[tuple[str, Queue]]) -> bool:
        """REGISTER_TOPIC_IN_NAMESRV (5.x registerTopic)."""
        if not queue_datas:
            return False
        if any(name not in self.brokers for name, _ in queue_datas):
            return False  # OURS (d): nothing written
        for name, q in queue_datas:
            self.topics.setdefault(topic, {})[name] = q
        return True

    def _topics_of_broker(self, name: str) -> set[str]:
        return {t for t, queues in self.topics.items() if name in queues}

    def _drop_queue(self, topic: str, name: str) -> None:
        queues = self.topics.get(topic)
        if queues is not None:
            queues.pop(name, None)
            if not queues:
                del self.topics[topic]

    # ================================================================== KV config, options

    def put_kv(self, namespace: str, key: str, value: str) -> None:
        self.kv.setdefault(namespace, {})[key] = value

    def delete_kv(self, namespace: str, key: str) -> None:
        # the emptied table stays: GET_KVLIST_BY_NAMESPACE then answers {}
        self.kv.get(namespace, {}).pop(key, None)

    def get_kv(self, namespace: str, key: str) -> str | None:
        return self.kv.get(namespace, {}).get(key)

    def list_kv(self, namespace: str) -> dict[str, str] | None:
        table = self.kv.get(namespace)
        return dict(table) if table is not None else None

    def update_config(self, options: dict[str, str]) -> None:
        self.config.update(options)

    # ================================================================== reads

    def route(
        self,
        topic: str,
        *,
        with_order_conf: bool = False,
        support_acting_master: bool = False,
    ) -> dict[str, Any] | None:
        """pickupTopicRouteData (+ orderTopicConf when orderMessageEnable), in the wire shape
        of TopicRouteData; None where Java answers TOPIC_NOT_EXIST."""
        queues = self.topics.get(topic)
        if not queues:
            return None
        names = sorted(n for n in queues if n in self.brokers)  # OURS (e)
        if not names:
            return None  # no broker data found
        broker_datas = []
        filter_table: dict[str, list[str]] = {}
        for n in names:
            g = self.brokers[n]
            addrs = dict(g.addrs)
            if self.filters:
                for a in addrs.values():
                    # 5.x puts null lists too; fastjson leaves null map values out (4.9
                    # skipped them), so only present lists appear on the wire.
                    fs = self.filters.get((g.cluster, a))
                    if fs is not None:
                        filter_table[a] = list(fs)
            if (
                support_acting_master
                and not topic.startswith(SYNC_BROKER_MEMBER_GROUP_PREFIX)
                and addrs
                and MASTER_ID not in addrs
                and g.acting
                and not queues[n].perm & PERM_WRITE
            ):
                addrs[MASTER_ID] = addrs.pop(min(addrs))
            broker_datas.append(_broker_wire(n, g, addrs))
        route: dict[str, Any] = {"brokerDatas": broker_datas, "filterServerTable": filter_table}
        if with_order_conf:
            conf = self.get_kv(ORDER_TOPIC_CONFIG, topic)
            if conf is not None:
                route["orderTopicConf"] = conf
        route["queueDatas"] = [
            {
                "brokerName": n,
                "perm": q.perm,
                "readQueueNums": q.read,
                "topicSysFlag": q.flag,
                "writeQueueNums": q.write,
            }
            for n, q in sorted(queues.items())
        ]
        return route

    def cluster_info(self) -> dict[str, Any]:
        """GET_BROKER_CLUSTER_INFO's ClusterInfo, maps in sorted order."""
        return {
            "brokerAddrTable": {
                n: _broker_wire(n, g, g.addrs) for n, g in sorted(self.brokers.items())
            },
            "clusterAddrTable": {c: sorted(m) for c, m in sorted(self.clusters.items())},
        }

    def all_topics(self) -> list[str]:
        return sorted(self.topics)

    def topics_of_cluster(self, cluster: str) -> list[str]:
        """getTopicsByCluster: topics with a queue data of a broker name of the cluster."""
        names = self.clusters.get(cluster, set())
        return sorted(t for t, queues in self.topics.items() if names & queues.keys())

    def system_topics(self) -> list[str]:
        """getSystemTopicList's topic list: each cluster name, then its broker names."""
        out: list[str] = []
        for c, members in sorted(self.clusters.items()):
            out.append(c)
            out.extend(sorted(members))
        return out

    def _first_flag(self, topic: str) -> int:
        queues = self.topics[topic]
        return queues[min(queues)].flag  # OURS (f)

    def unit_topics(self) -> list[str]:
        return sorted(t for t in self.topics if self._first_flag(t) & FLAG_UNIT)

    def has_unit_sub_topics(self) -> list[str]:
        return sorted(t for t in self.topics if self._first_flag(t) & FLAG_UNIT_SUB)

    def has_unit_sub_ununit_topics(self) -> list[str]:
        return sorted(
            t
            for t in self.topics
            if not self._first_flag(t) & FLAG_UNIT and self._first_flag(t) & FLAG_UNIT_SUB
        )

    def member_group(self, name: str) -> dict[int, str] | None:
        g = self.brokers.get(name)
        return dict(g.addrs) if g is not None else None

    def master_of(self, name: str) -> str | None:
        g = self.brokers.get(name)
        return g.addrs.get(MASTER_ID) if g is not None else None

    def processes(self) -> list[tuple[str, str]]:
        """Every live (cluster, address), sorted."""
        return sorted(self.live)


def _broker_wire(name: str, g: Group, addrs: dict[int, str]) -> dict[str, Any]:
    d: dict[str, Any] = {
        "brokerAddrs": dict(sorted(addrs.items())),
        "brokerName": name,
        "cluster": g.cluster,
    }
    if g.acting is not None:
        d["enableActingMaster"] = g.acting
    if g.zone is not None:
        d["zoneName"] = g.zone
    return d
