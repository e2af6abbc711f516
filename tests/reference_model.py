"""A small in-memory reference model of RocketMQ's RouteInfoManager rules, written from the
Java source (namesrv/routeinfo/RouteInfoManager.java, 4.9.8 and 5.x), to check the Redis
store against. Where namesrv-redis deliberately differs, the model follows our documented
choice (docs/protocol.md, "Deliberate differences"):

- all-or-nothing writes: a refused registration changes nothing at all;
- live info is keyed by (cluster, address), as in RocketMQ 5;
- unregistering removes every id whose address is the broker's (5.x ``removeIf``);
- a 5.x-style first registration of a broker id that lists exactly one topic is refused;
- a broker process re-registering under a new broker name leaves its old group at once;
- removing a broker process uses the name it registered under (an address must never be left
  in a group where nothing would expire it);
- routes list queue and broker data by broker name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PERM_WRITE = 2
QueueTuple = tuple[int, int, int, int]  # read, write, perm, sysflag


@dataclass
class Group:
    cluster: str
    addrs: dict[int, str] = field(default_factory=dict)


@dataclass
class RouteModel:
    clusters: dict[str, set[str]] = field(default_factory=dict)
    brokers: dict[str, Group] = field(default_factory=dict)
    topics: dict[str, dict[str, QueueTuple]] = field(default_factory=dict)
    live: dict[tuple[str, str], str] = field(default_factory=dict)  # -> data version
    names: dict[tuple[str, str], str] = field(default_factory=dict)  # -> broker name

    # ------------------------------------------------------------------ writes

    def register(
        self,
        cluster: str,
        addr: str,
        name: str,
        broker_id: int,
        dv: str,
        topics: list[tuple[str, int, int, int, int]],
    ) -> str:
        group = self.brokers.get(name)
        first = group is None
        addrs = dict(group.addrs) if group else {}
        addrs = {i: a for i, a in addrs.items() if not (a == addr and i != broker_id)}
        old = addrs.get(broker_id)
        if old is None and len(topics) == 1:
            return "refused"
        prev = self.names.get((cluster, addr))
        if prev is not None and prev != name:
            self.remove(cluster, addr, prev)
            group = self.brokers.get(name)
        group = group or Group(cluster)
        group.addrs = {i: a for i, a in group.addrs.items() if not (a == addr and i != broker_id)}
        group.addrs[broker_id] = addr
        self.brokers[name] = group
        first = first or old is None
        self.clusters.setdefault(cluster, set()).add(name)
        changed = self.live.get((cluster, addr)) != dv
        if broker_id == 0:
            # RocketMQ 5's isTopicConfigChanged: every topic when the data version changed (or
            # on a first registration), else only topics holding no queue data of this broker
            for t, r, w, perm, flag in topics:
                if changed or first or name not in self.topics.get(t, {}):
                    self.topics.setdefault(t, {})[name] = (r, w, perm, flag)
        self.live[(cluster, addr)] = dv
        self.names[(cluster, addr)] = name
        return "ok"

    def remove(self, cluster: str, addr: str, name: str = "") -> bool:
        """unregisterBroker / onChannelDestroy of one broker process."""
        removed = self.live.pop((cluster, addr), None) is not None
        stored = self.names.pop((cluster, addr), None)
        name = stored or name
        group = self.brokers.get(name)
        if group is None:
            return removed
        kept = {i: a for i, a in group.addrs.items() if a != addr}
        if kept == group.addrs:
            return removed
        group.addrs = kept
        if not kept:
            del self.brokers[name]
            for c in list(self.clusters):
                members = self.clusters.get(c, set())
                members.discard(name)
                if not members:
                    self.clusters.pop(c, None)
            for t in list(self.topics):
                self.topics[t].pop(name, None)
                if not self.topics[t]:
                    del self.topics[t]
        return True

    def write_perm(self, name: str, enabled: bool) -> int:
        count = 0
        for queues in self.topics.values():
            if name in queues:
                r, w, perm, flag = queues[name]
                perm = 6 if enabled else perm & ~PERM_WRITE
                queues[name] = (r, w, perm, flag)
                count += 1
        return count

    def delete_topic(self, topic: str, cluster: str | None = None) -> None:
        if cluster is None:
            self.topics.pop(topic, None)
            return
        queues = self.topics.get(topic, {})
        for name in self.clusters.get(cluster, set()):
            queues.pop(name, None)
        if not queues:
            self.topics.pop(topic, None)

    # ------------------------------------------------------------------ reads

    def route(self, topic: str) -> dict[str, object] | None:
        queues = self.topics.get(topic)
        if not queues:
            return None
        brokers = [
            {
                "brokerAddrs": dict(sorted(self.brokers[n].addrs.items())),
                "brokerName": n,
                "cluster": self.brokers[n].cluster,
            }
            for n in sorted(queues)
            if n in self.brokers
        ]
        if not brokers:
            return None
        return {
            "brokerDatas": brokers,
            "filterServerTable": {},
            "queueDatas": [
                {
                    "brokerName": n,
                    "perm": q[2],
                    "readQueueNums": q[0],
                    "topicSysFlag": q[3],
                    "writeQueueNums": q[1],
                }
                for n, q in sorted(queues.items())
            ],
        }

    def cluster_info(self) -> dict[str, object]:
        return {
            "brokerAddrTable": {
                n: {
                    "brokerAddrs": dict(sorted(g.addrs.items())),
                    "brokerName": n,
                    "cluster": g.cluster,
                }
                for n, g in sorted(self.brokers.items())
            },
            "clusterAddrTable": {c: sorted(m) for c, m in sorted(self.clusters.items())},
        }
