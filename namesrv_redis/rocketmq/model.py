"""The route tables' records, as RocketMQ names them, and their JSON wire shapes.

Wire shapes follow fastjson's bean encoding: keys in alphabetical order, absent (null) fields
left out. Broker ids are ``int`` keys so :mod:`namesrv_redis.rocketmq.fastjson` can write them
the way fastjson does (unquoted) or as standard JSON strings.

In Redis (see :mod:`namesrv_redis.store.keys`) a topic's queue data is the compact text
``"readQueueNums,writeQueueNums,perm,topicSysFlag"`` and a BrokerData is its standard JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

PERM_INHERIT = 1
PERM_WRITE = 2
PERM_READ = 4

# TopicSysFlag
FLAG_UNIT = 0x1
FLAG_UNIT_SUB = 0x2

MASTER_ID = 0


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """What a broker reports for one topic (the part of TopicConfig the name server keeps)."""

    topic: str
    read_queue_nums: int
    write_queue_nums: int
    perm: int
    topic_sys_flag: int = 0


@dataclass(frozen=True, slots=True)
class QueueData:
    """One broker's queues of one topic (RocketMQ's QueueData)."""

    broker_name: str
    read_queue_nums: int
    write_queue_nums: int
    perm: int
    topic_sys_flag: int = 0

    def store_value(self) -> str:
        return f"{self.read_queue_nums},{self.write_queue_nums},{self.perm},{self.topic_sys_flag}"

    @classmethod
    def from_store(cls, broker_name: str, value: str) -> QueueData:
        r, w, perm, flag = (int(x) for x in value.split(","))
        return cls(broker_name, r, w, perm, flag)

    def to_wire(self) -> dict[str, Any]:
        return {
            "brokerName": self.broker_name,
            "perm": self.perm,
            "readQueueNums": self.read_queue_nums,
            "topicSysFlag": self.topic_sys_flag,
            "writeQueueNums": self.write_queue_nums,
        }

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> QueueData:
        return cls(
            str(d["brokerName"]),
            int(d.get("readQueueNums", 0)),
            int(d.get("writeQueueNums", 0)),
            int(d.get("perm", PERM_READ | PERM_WRITE)),
            int(d.get("topicSysFlag", d.get("topicSynFlag", 0))),
        )


@dataclass(slots=True)
class BrokerData:
    """A broker group: its cluster and the address of each broker id (RocketMQ's BrokerData)."""

    cluster: str
    broker_name: str
    broker_addrs: dict[int, str] = field(default_factory=dict)
    zone_name: str | None = None
    enable_acting_master: bool | None = None

    def to_wire(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "brokerAddrs": {k: self.broker_addrs[k] for k in sorted(self.broker_addrs)},
            "brokerName": self.broker_name,
            "cluster": self.cluster,
        }
        if self.enable_acting_master is not None:
            d["enableActingMaster"] = self.enable_acting_master
        if self.zone_name is not None:
            d["zoneName"] = self.zone_name
        return d

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> BrokerData:
        acting = d.get("enableActingMaster")
        return cls(
            cluster=str(d.get("cluster", "")),
            broker_name=str(d["brokerName"]),
            broker_addrs={int(k): str(v) for k, v in (d.get("brokerAddrs") or {}).items()},
            zone_name=d.get("zoneName"),
            enable_acting_master=bool(acting) if acting is not None else None,
        )

    @classmethod
    def from_store(cls, raw: bytes | str) -> BrokerData:
        return cls.from_wire(orjson.loads(raw))


@dataclass(slots=True)
class TopicRoute:
    """The answer to GET_ROUTEINFO_BY_TOPIC (RocketMQ's TopicRouteData)."""

    queue_datas: list[QueueData]
    broker_datas: list[BrokerData]
    filter_server_table: dict[str, list[str]] = field(default_factory=dict)
    order_topic_conf: str | None = None
    version: int = 0

    def to_wire(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "brokerDatas": [b.to_wire() for b in self.broker_datas],
            "filterServerTable": self.filter_server_table,
        }
        if self.order_topic_conf is not None:
            d["orderTopicConf"] = self.order_topic_conf
        d["queueDatas"] = [q.to_wire() for q in self.queue_datas]
        return d


@dataclass(slots=True)
class ClusterInfo:
    """The answer to GET_BROKER_CLUSTER_INFO (RocketMQ's ClusterInfo)."""

    broker_addr_table: dict[str, BrokerData]
    cluster_addr_table: dict[str, list[str]]
    version: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {
            "brokerAddrTable": {
                name: self.broker_addr_table[name].to_wire()
                for name in sorted(self.broker_addr_table)
            },
            "clusterAddrTable": {
                c: sorted(self.cluster_addr_table[c]) for c in sorted(self.cluster_addr_table)
            },
        }


def canonical_data_version(dv: dict[str, Any] | None) -> str:
    """A DataVersion as compact JSON with sorted keys: stored, compared and returned as is.

    RocketMQ compares data versions field by field (timestamp, counter and, in 5.x,
    stateVersion); comparing this canonical text is the same test.
    """
    if not dv:
        dv = {"counter": 0, "timestamp": 0}
    fields = {
        k: _data_version_field(k, dv[k]) for k in DATA_VERSION_FIELDS if dv.get(k) is not None
    }
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS).decode()


DATA_VERSION_FIELDS = ("counter", "stateVersion", "timestamp")
"""Java's DataVersion: three longs; other keys are ignored, as Java's decoding ignores them."""


class BadDataVersion(ValueError):
    """A DataVersion field that Java could not decode into a long."""


def _data_version_field(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise BadDataVersion(f"DataVersion.{name} is not a number: {v!r}")
    try:
        n = int(v)
    except ValueError:
        raise BadDataVersion(f"DataVersion.{name} is not a number: {v!r}") from None
    if not -(2**63) <= n <= 2**63 - 1:
        raise BadDataVersion(f"DataVersion.{name} {n} is outside Java's long range")
    return n


def state_version(dv: dict[str, Any] | None) -> int:
    if not dv or dv.get("stateVersion") is None:
        return 0
    return _data_version_field("stateVersion", dv["stateVersion"])
