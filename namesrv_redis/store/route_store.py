"""The route store: the async API every front end calls, over the Lua scripts in ``lua/``.

Every write is one script (atomic, idempotent, publishes a route event); every route read is
one round trip. No business rule lives in a front end: the remoting and HTTP tiers translate
their requests into these calls and encode what comes back.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

import orjson
from redis.exceptions import RedisError

from namesrv_redis.rocketmq.java_order import hashmap_order, long_hash, string_hash
from namesrv_redis.rocketmq.model import (
    FLAG_UNIT,
    FLAG_UNIT_SUB,
    PERM_WRITE,
    BrokerData,
    ClusterInfo,
    QueueConfig,
    QueueData,
    TopicRoute,
)
from namesrv_redis.store import deadlines
from namesrv_redis.store.deadlines import Deadlines
from namesrv_redis.store.keys import ORDER_TOPIC_CONFIG, Keys, split_ident, stage_bucket
from namesrv_redis.store.replication import Replication, batched, run_script
from namesrv_redis.store.script_pipe import pipe_for
from namesrv_redis.store.scripts import Scripts, preload, register_scripts
from namesrv_redis.telemetry.metrics import REMOVALS, REPAIRS

DEFAULT_HEARTBEAT_TIMEOUT_MS = 120_000
DEFAULT_COMMAND_BUDGET_MS = 50
TOPICS_PER_MS = 50
"""Topics one script may handle per millisecond of the stall budget: a registration script
costs 7-11 us a topic on a loaded 2-core host (docs/benchmarks.md, "Redis stall budget"); this
leaves half the budget spare."""
MAX_CHUNK = 10_000
DEFAULT_STAGE_TTL_MS = 60_000
"""How long a staged (not yet committed) part of a big registration lives: what a pod dying
between its chunks leaves behind expires, unseen by readers."""
PENDING_RETRIES = 5
log = logging.getLogger(__name__)


def chunk_for_budget(budget_ms: int) -> int:
    """The most topics one script may handle so that it blocks Redis at most ``budget_ms``."""
    return max(1, min(MAX_CHUNK, budget_ms * TOPICS_PER_MS))


class ChunkedWriteBusy(RedisError):
    """A broker name's chunked writes kept being replaced by others' while this one waited."""


SYNC_BROKER_MEMBER_GROUP_PREFIX = "rmq_sys_SYNC_BROKER_MEMBER_"
"""RocketMQ 5's TopicValidator prefix of topics whose routes never show an acting master."""


def now_ms() -> int:
    return int(time.time() * 1000)


def as_text(v: Any) -> str:
    """A Redis reply value as text (bytes decoded as UTF-8)."""
    return v.decode() if isinstance(v, bytes) else str(v)


class RegisterMode(StrEnum):
    FULL = "full"
    """Every topic of the body is sent."""
    LITE = "lite"
    """No topics: valid only while the stored data version equals ``data_version``."""
    DIFF = "diff"
    """Only the topics that differ from the table ``base_token`` names: valid only while the
    broker name's stored table token is ``base_token`` (or already ``table_token``)."""


@dataclass(slots=True)
class BrokerRegistration:
    """One REGISTER_BROKER request, decoded."""

    cluster: str
    broker_addr: str
    broker_name: str
    broker_id: int
    ha_server_addr: str = ""
    data_version: str = '{"counter":0,"timestamp":0}'
    """Canonical JSON, see :func:`namesrv_redis.rocketmq.model.canonical_data_version`."""
    state_version: int = 0
    topics: Sequence[QueueConfig] = ()
    filter_servers: list[str] | None = None
    heartbeat_timeout_ms: int = DEFAULT_HEARTBEAT_TIMEOUT_MS
    zone_name: str | None = None
    enable_acting_master: bool | None = None
    has_static_topic_mappings: bool = False
    conn_id: str = ""
    mode: RegisterMode = RegisterMode.FULL
    table_token: str = ""
    """Identifies this body's topic table (see ``lua/register_broker.lua``); '' = none."""
    base_token: str = ""
    """Diff mode: the token of the table ``topics`` is relative to (which it only adds to or
    changes: topics that left a table are deleted by full registrations only)."""
    return_kv_namespace: str = ""
    """A KV namespace whose table to read in the same round trip (ORDER_TOPIC_CONFIG)."""


class RegisterStatus(StrEnum):
    OK = "ok"
    NEED_TOPICS = "need_topics"
    REFUSED = "refused"
    STALE_STATE = "stale_state"
    PENDING = "pending"
    """A chunked write of the broker name is being applied (never returned by the store:
    it finishes that write and sends the registration again)."""


_STATUSES: dict[Any, RegisterStatus] = {
    **{s.value.encode(): s for s in RegisterStatus},
    **{s.value: s for s in RegisterStatus},
}
"""A script's status reply (bytes, or text on a decoding client) to its member, without the
enum's lookup."""

REFUSALS = (RegisterStatus.NEED_TOPICS, RegisterStatus.REFUSED, RegisterStatus.STALE_STATE)
"""Answers of a registration that wrote nothing."""


@dataclass(frozen=True, slots=True)
class RegisterResult:
    status: RegisterStatus
    master_addr: str | None
    ha_server_addr: str | None
    topics_written: int
    version: int
    kv_table: dict[str, str] | None = None
    """The table of ``return_kv_namespace`` (None: not asked, or no such namespace)."""


class RemovalReason(StrEnum):
    UNREGISTERED = "unregister"
    EXPIRED = "expired"
    CONNECTION_CLOSED = "conn"


@dataclass(frozen=True, slots=True)
class RemovalResult:
    removed: bool
    broker_name: str
    version: int


def record_removal(
    result: RemovalResult, reason: RemovalReason, cluster: str, addr: str, detail: str = ""
) -> bool:
    """Log and count a removal once: only the call that actually removed the broker does."""
    if result.removed:
        REMOVALS.labels(reason.value).inc()
        log.info(
            "broker removed: reason=%s cluster=%s addr=%s name=%s%s",
            reason.value,
            cluster,
            addr,
            result.broker_name,
            f" ({detail})" if detail else "",
        )
    return result.removed


class RouteStore:
    """Async access to one namespace's route tables."""

    def __init__(
        self,
        redis: Any,
        namespace: str = "default",
        *,
        delete_topic_with_broker_registration: bool = False,
        deadlines: Deadlines | None = None,
        replication: Replication | None = None,
        command_budget_ms: int = DEFAULT_COMMAND_BUDGET_MS,
        stage_ttl_ms: int = DEFAULT_STAGE_TTL_MS,
    ) -> None:
        self.redis = redis
        self.keys = Keys(namespace)
        self.delete_topic_with_broker_registration = delete_topic_with_broker_registration
        self.scripts: Scripts = register_scripts(redis)
        self.deadlines = deadlines or Deadlines()
        """Every public call runs under these (:mod:`namesrv_redis.store.deadlines`)."""
        self.replication = replication
        """Writes wait for replicas as this says (:mod:`namesrv_redis.store.replication`)."""
        self.command_budget_ms = command_budget_ms
        self.chunk = chunk_for_budget(command_budget_ms)
        """The most topics one script handles (``redisCommandBudgetMillis``): a bigger
        registration or removal is applied in chunks that readers see whole."""
        self.stage_ttl_ms = stage_ttl_ms
        self._k = [self.keys.prefix]
        self._pipe = pipe_for(redis)

    async def _write(self, script: Any, args: Sequence[Any], *, confirm: bool = True) -> Any:
        """Run one write script of this namespace, confirmed by replicas when there are any
        and ``confirm`` (liveness refreshes and clean-ups are not: losing one in a failover
        costs nothing, the next heartbeat or sweep does it again)."""
        replication = self.replication if confirm else None
        pipe = batched(self._pipe, replication, script)  # run_script's choice, one call less
        if pipe is not None:
            return await pipe.run(script, self._k, args)
        return await run_script(self.redis, replication, script, self._k, args)

    def unconfirmed(self) -> RouteStore:
        """This store, writing without replication confirmation (re-applied registrations:
        nobody is waiting for their answer, and a loss is detected and repaired again)."""
        clone = copy.copy(self)
        clone.replication = None
        return clone

    async def load_scripts(self) -> None:
        """Load every script now (fails fast on a broken script or an unreachable Redis)."""
        await preload(self.scripts, self.redis)

    # ------------------------------------------------------------------ writes

    async def register_broker(
        self, reg: BrokerRegistration, now: int | None = None
    ) -> RegisterResult:
        """One script call when the topics fit in a chunk; otherwise the table is staged in
        chunks, committed by one short script (readers see all of it from then on) and applied
        in chunks. Each call has its own write deadline."""
        topics = () if reg.mode is RegisterMode.LITE else reg.topics
        stage = await self._stage(topics) if len(topics) > self.chunk else None
        result: RegisterResult | None = None
        try:
            for _ in range(PENDING_RETRIES):
                result = await self._register(reg, now, topics, stage)
                if result.status is not RegisterStatus.PENDING:
                    break
                await self.settle(reg.broker_name)
            else:
                raise ChunkedWriteBusy(
                    f"broker {reg.broker_name!r} kept a chunked write pending: retry"
                )
            if stage is not None and result.status is RegisterStatus.OK:
                written = await self.settle(reg.broker_name)
                result = dataclasses.replace(result, topics_written=written)
            return result
        finally:
            # A refused commit left the stage unused. After an error the commit may still have
            # run (a deadline passed): the stage is then the pending record's, or it expires.
            if stage is not None and result is not None and result.status in REFUSALS:
                await self._discard_stage(*stage)

    async def _stage(self, topics: Sequence[QueueConfig]) -> tuple[str, int]:
        """Stage a big topic table in buckets of at most about a chunk (lua/stage_topics.lua);
        returns (generation, bucket count)."""
        generation = uuid.uuid4().hex
        buckets = -(-len(topics) // self.chunk)
        parts: list[list[QueueConfig]] = [[] for _ in range(buckets)]
        for t in topics:
            parts[stage_bucket(t.topic, buckets)].append(t)
        for i, part in enumerate(parts):
            for start in range(0, max(len(part), 1), self.chunk):
                await self._stage_part(generation, i, buckets, part[start : start + self.chunk])
        return generation, buckets

    @deadlines.write
    async def _stage_part(
        self, generation: str, bucket: int, buckets: int, part: Sequence[QueueConfig]
    ) -> None:
        args: list[Any] = [generation, bucket, buckets, self.stage_ttl_ms, len(part)]
        for t in part:
            args += (t.topic, t.read_queue_nums, t.write_queue_nums, t.perm, t.topic_sys_flag)
        await self._write(self.scripts.stage_topics, args, confirm=False)

    @deadlines.write
    async def _discard_stage(self, generation: str, buckets: int) -> None:
        await self.redis.unlink(*(self.keys.stage(generation, i) for i in range(buckets)))

    async def settle(self, broker_name: str, *, confirm: bool = True) -> int:
        """Apply a broker name's committed chunked write to its end (lua/apply_pending.lua),
        one bounded step per call; returns the topics written. Any pod may do it."""
        written = 0
        while True:
            done, step = await self._apply_step(broker_name, confirm)
            written += step
            if done:
                return written

    @deadlines.write
    async def _apply_step(self, broker_name: str, confirm: bool) -> tuple[bool, int]:
        done, written = await self._write(
            self.scripts.apply_pending, [broker_name, self.chunk], confirm=confirm
        )
        return bool(int(done)), int(written)

    async def settle_all(self) -> int:
        """Finish every chunked write left pending (its pod died between two steps); the
        sweeper calls this. Returns how many there were."""
        names = await self.pending_writes()
        for name in names:
            await self.settle(name, confirm=False)
        return len(names)

    @deadlines.read
    async def pending_writes(self) -> list[str]:
        """Broker names with a committed chunked write still being applied."""
        return sorted(as_text(n) for n in await self.redis.hkeys(self.keys.pending))

    @deadlines.write
    async def _register(
        self,
        reg: BrokerRegistration,
        now: int | None,
        topics: Sequence[QueueConfig],
        stage: tuple[str, int] | None,
    ) -> RegisterResult:
        args: list[Any] = [
            reg.cluster,
            reg.broker_addr,
            reg.broker_name,
            reg.broker_id,
            reg.ha_server_addr or "",
            now if now is not None else now_ms(),
            reg.heartbeat_timeout_ms,
            reg.data_version,
            reg.state_version,
            reg.conn_id,
            "-" if reg.filter_servers is None else orjson.dumps(reg.filter_servers).decode(),
            reg.zone_name or "",
            "" if reg.enable_acting_master is None else str(reg.enable_acting_master).lower(),
            "1" if self.delete_topic_with_broker_registration else "0",
            "1" if reg.has_static_topic_mappings else "0",
            reg.mode.value,
            reg.table_token,
            reg.base_token,
            reg.return_kv_namespace,
        ]
        args.append(len(topics))
        if stage is not None:
            args += ("@stage", *stage)
        else:
            for t in topics:
                args += (t.topic, t.read_queue_nums, t.write_queue_nums, t.perm, t.topic_sys_flag)
        args.append(self.chunk)
        status, master, ha, written, version, kv = await self._write(
            self.scripts.register_broker, args
        )
        return RegisterResult(
            _STATUSES.get(status) or RegisterStatus(as_text(status)),
            as_text(master) or None if master else None,
            as_text(ha) or None if ha else None,
            int(written),
            int(version),
            {as_text(kv[i]): as_text(kv[i + 1]) for i in range(0, len(kv), 2)}
            if isinstance(kv, list)
            else None,
        )

    async def remove_broker(
        self,
        reason: RemovalReason,
        cluster: str,
        broker_addr: str,
        broker_name: str = "",
        *,
        conn_id: str = "",
        now: int | None = None,
    ) -> RemovalResult:
        """Unregister, expire (only if its liveness key is gone and its deadline passed) or drop
        on connection close (only if the connection still owns it) one broker process. A group
        with more topics than a chunk disappears from routes at once and is dropped in chunks."""
        result, pending = await self._remove(
            reason, cluster, broker_addr, broker_name, conn_id=conn_id, now=now
        )
        if pending:
            await self.settle(result.broker_name, confirm=reason is RemovalReason.UNREGISTERED)
        return result

    @deadlines.write
    async def _remove(
        self,
        reason: RemovalReason,
        cluster: str,
        broker_addr: str,
        broker_name: str,
        *,
        conn_id: str,
        now: int | None,
    ) -> tuple[RemovalResult, bool]:
        removed, name, version, pending = await self._write(
            self.scripts.remove_broker,
            [
                reason.value,
                cluster,
                broker_addr,
                broker_name,
                conn_id,
                now if now is not None else now_ms(),
                self.chunk,
            ],
            confirm=reason is RemovalReason.UNREGISTERED,
        )
        return RemovalResult(bool(int(removed)), as_text(name), int(version)), bool(int(pending))

    async def unregister_broker(
        self, cluster: str, broker_addr: str, broker_name: str
    ) -> RemovalResult:
        return await self.remove_broker(
            RemovalReason.UNREGISTERED, cluster, broker_addr, broker_name
        )

    async def heartbeat(self, cluster: str, broker_addr: str, now: int | None = None) -> bool:
        """Refresh a registered broker's liveness; False if it is not registered."""
        return bool(await self.refresh_liveness(cluster, broker_addr, now=now))

    @deadlines.write
    async def query_data_version(
        self,
        cluster: str,
        broker_addr: str,
        data_version: str,
        now: int | None = None,
        *,
        timeout_ms: int = DEFAULT_HEARTBEAT_TIMEOUT_MS,
        conn_id: str = "",
    ) -> tuple[bool, str | None]:
        """(changed, stored data version JSON or None); refreshes liveness (RocketMQ 5),
        recreating an evicted liveness key as :meth:`refresh_liveness` does."""
        changed, stored, refreshed = await self._write(
            self.scripts.query_data_version,
            [
                cluster,
                broker_addr,
                data_version,
                now if now is not None else now_ms(),
                timeout_ms,
                conn_id,
            ],
            confirm=False,
        )
        _note_refresh(Refresh(int(refreshed)), cluster, broker_addr)
        return bool(int(changed)), (as_text(stored) or None)

    async def wipe_write_perm(self, broker_name: str) -> int:
        return await self._write_perm(broker_name, "wipe")

    async def add_write_perm(self, broker_name: str) -> int:
        return await self._write_perm(broker_name, "add")

    async def _write_perm(self, broker_name: str, mode: str) -> int:
        """The perms of a broker with more topics than a chunk change for readers at once
        and are rewritten in chunks."""
        count, pending = await self._write_perm_script(broker_name, mode)
        if pending:
            await self.settle(broker_name)
        return count

    @deadlines.write
    async def _write_perm_script(self, broker_name: str, mode: str) -> tuple[int, bool]:
        count, _, pending = await self._write(
            self.scripts.write_perm, [broker_name, mode, self.chunk]
        )
        return int(count), bool(int(pending))

    @deadlines.write
    async def delete_topic(self, topic: str, cluster: str | None = None) -> int:
        removed, _ = await self._write(self.scripts.delete_topic, [topic, cluster or ""])
        return int(removed)

    @deadlines.write
    async def register_topic(self, topic: str, queue_datas: Sequence[QueueData]) -> bool:
        args: list[Any] = [topic, len(queue_datas)]
        for q in queue_datas:
            args += (q.broker_name, q.read_queue_nums, q.write_queue_nums, q.perm, q.topic_sys_flag)
        ok, _ = await self._write(self.scripts.register_topic, args)
        return bool(int(ok))

    @deadlines.write
    async def put_kv(self, namespace: str, key: str, value: str) -> None:
        await self._write(self.scripts.kv_put, [namespace, key, value, ORDER_TOPIC_CONFIG])

    @deadlines.write
    async def delete_kv(self, namespace: str, key: str) -> None:
        await self._write(self.scripts.kv_delete, [namespace, key, ORDER_TOPIC_CONFIG])

    @deadlines.write
    async def update_config(self, options: dict[str, str]) -> None:
        """Store name-server options (RocketMQ names) shared by every pod."""
        args: list[str] = []
        for k, v in options.items():
            args += (k, v)
        await self._write(self.scripts.config_update, args)

    # ------------------------------------------------------------------ reads

    @deadlines.read
    async def get_route_raw(
        self, topic: str, *, with_order_conf: bool = False
    ) -> TopicRoute | None:
        """A topic's route in one round trip, or None (RocketMQ: TOPIC_NOT_EXIST).

        Like RocketMQ, a topic whose queue data names no registered broker has no route.
        """
        version, qds, brokers, filters, order = await self.scripts.route(
            keys=self._k, args=[topic, ORDER_TOPIC_CONFIG if with_order_conf else ""]
        )
        if not qds or not brokers:
            return None
        queue_datas = [
            QueueData.from_store(as_text(qds[i]), as_text(qds[i + 1]))
            for i in range(0, len(qds), 2)
        ]
        queue_datas.sort(key=lambda q: q.broker_name)
        broker_datas = sorted(
            (BrokerData.from_store(b) for b in brokers), key=lambda b: b.broker_name
        )
        filter_table = {
            as_text(filters[i]): orjson.loads(filters[i + 1]) for i in range(0, len(filters), 2)
        }
        return TopicRoute(
            queue_datas=queue_datas,
            broker_datas=broker_datas,
            filter_server_table=filter_table,
            order_topic_conf=as_text(order) or None,
            version=int(version),
        )

    async def get_route(
        self, topic: str, *, with_order_conf: bool = False, support_acting_master: bool = False
    ) -> TopicRoute | None:
        """The route as RocketMQ answers it. With ``support_acting_master`` (RocketMQ 5), an
        acting-master group with no master whose queue data of the topic is read-only shows its
        smallest-id broker as id 0 (never for the broker member group sync topics)."""
        route = await self.get_route_raw(topic, with_order_conf=with_order_conf)
        if (
            route is not None
            and support_acting_master
            and not topic.startswith(SYNC_BROKER_MEMBER_GROUP_PREFIX)
        ):
            read_only = {q.broker_name for q in route.queue_datas if not q.perm & PERM_WRITE}
            for bd in route.broker_datas:
                if (
                    bd.enable_acting_master
                    and bd.broker_addrs
                    and 0 not in bd.broker_addrs
                    and bd.broker_name in read_only
                ):
                    smallest = min(bd.broker_addrs)
                    bd.broker_addrs = dict(bd.broker_addrs)
                    bd.broker_addrs[0] = bd.broker_addrs.pop(smallest)
        return route

    @deadlines.read
    async def get_cluster_info(self) -> ClusterInfo:
        version, brokers, clusters = await self.scripts.cluster_info(keys=self._k, args=[])
        table = {
            as_text(brokers[i]): BrokerData.from_store(brokers[i + 1])
            for i in range(0, len(brokers), 2)
        }
        cluster_table = {
            as_text(clusters[i]): sorted(as_text(b) for b in clusters[i + 1])
            for i in range(0, len(clusters), 2)
        }
        return ClusterInfo(table, cluster_table, int(version))

    @deadlines.read
    async def route_version(self) -> int:
        v = await self.redis.get(self.keys.version)
        return int(v) if v else 0

    @deadlines.read
    async def all_topics(self) -> list[str]:
        return sorted(as_text(t) for t in await self.redis.smembers(self.keys.topics))

    @deadlines.read
    async def topics_of_cluster(self, cluster: str) -> list[str]:
        """Every topic with queue data from a broker of the cluster (GET_TOPICS_BY_CLUSTER)."""
        names = [as_text(b) for b in await self.redis.smembers(self.keys.cluster(cluster))]
        if not names:
            return []
        topics = await self.redis.sunion([self.keys.broker_topics(n) for n in names])
        return sorted(as_text(t) for t in topics)

    async def system_topics(self) -> tuple[list[str], str | None]:
        """Cluster and broker names, plus one broker address (GET_SYSTEM_TOPIC_LIST_FROM_NS),
        in the order the Java NameServer's tables give them (RouteInfoManager#
        getSystemTopicList): the names as its TopicList set iterates them, and the first
        address of the first broker of ``brokerAddrTable`` (a HashMap of capacity 128) that has
        one, its first id being the first of its ``brokerAddrs`` (a HashMap<Long, String>)."""
        info = await self.get_cluster_info()
        inserted: dict[str, None] = {}
        for cluster in hashmap_order(sorted(info.cluster_addr_table), string_hash, 32):
            inserted[cluster] = None
            for name in hashmap_order(sorted(info.cluster_addr_table[cluster]), string_hash):
                inserted[name] = None
        topics = hashmap_order(inserted, string_hash)
        addr = None
        for name in hashmap_order(sorted(info.broker_addr_table), string_hash, 128):
            addrs = info.broker_addr_table[name].broker_addrs
            if addrs:
                addr = addrs[hashmap_order(sorted(addrs), long_hash)[0]]
                break
        return topics, addr

    @deadlines.read
    async def _topic_flags(self) -> dict[str, int]:
        """The topicSysFlag of each topic, taken (as RocketMQ does) from one of its queue
        datas: here the one of the smallest broker name, so the answer is deterministic."""
        topics = await self.all_topics()
        flags: dict[str, int] = {}
        chunk = 512
        for start in range(0, len(topics), chunk):
            part = topics[start : start + chunk]
            async with self.redis.pipeline(transaction=False) as pipe:
                for t in part:
                    pipe.hgetall(self.keys.topic(t))
                rows = await pipe.execute()
            for t, row in zip(part, rows, strict=True):
                if row:
                    first = min(row, key=as_text)
                    flags[t] = QueueData.from_store(
                        as_text(first), as_text(row[first])
                    ).topic_sys_flag
        return flags

    async def unit_topics(self) -> list[str]:
        return [t for t, f in (await self._topic_flags()).items() if f & FLAG_UNIT]

    async def has_unit_sub_topics(self) -> list[str]:
        return [t for t, f in (await self._topic_flags()).items() if f & FLAG_UNIT_SUB]

    async def has_unit_sub_ununit_topics(self) -> list[str]:
        return [
            t
            for t, f in (await self._topic_flags()).items()
            if not f & FLAG_UNIT and f & FLAG_UNIT_SUB
        ]

    @deadlines.read
    async def broker_member_group(self, broker_name: str) -> BrokerData | None:
        raw = await self.redis.hget(self.keys.brokers, broker_name)
        return BrokerData.from_store(raw) if raw else None

    @deadlines.read
    async def get_kv(self, namespace: str, key: str) -> str | None:
        v = await self.redis.hget(self.keys.kv(namespace), key)
        return as_text(v) if v is not None else None

    @deadlines.read
    async def list_kv(self, namespace: str) -> dict[str, str] | None:
        """A KV namespace's table, or None when the namespace was never written."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sismember(self.keys.kv_namespaces, namespace)
            pipe.hgetall(self.keys.kv(namespace))
            exists, table = await pipe.execute()
        if not exists:
            return None
        return {as_text(k): as_text(v) for k, v in table.items()}

    @deadlines.read
    async def get_config(self) -> dict[str, str]:
        return {
            as_text(k): as_text(v) for k, v in (await self.redis.hgetall(self.keys.config)).items()
        }

    @deadlines.read
    async def live_info(self, cluster: str, broker_addr: str) -> dict[str, str] | None:
        """A broker process's live info plus ``pttl`` (ms left), or None when not alive."""
        key = self.keys.live(cluster, broker_addr)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(key)
            pipe.pttl(key)
            info, pttl = await pipe.execute()
        if not info:
            return None
        out = {as_text(k): as_text(v) for k, v in info.items()}
        out["pttl"] = str(pttl)
        return out

    @deadlines.read
    async def expired_candidates(
        self, now: int | None = None, limit: int = 256
    ) -> list[tuple[str, str]]:
        """(cluster, addr) of brokers whose deadline passed: the sweeper's work list."""
        idents = await self.redis.zrangebyscore(
            self.keys.deadlines, "-inf", now if now is not None else now_ms(), start=0, num=limit
        )
        out: list[tuple[str, str]] = []
        for i in idents:
            try:
                out.append(split_ident(as_text(i)))
            except ValueError:
                log.warning("deadline index holds a malformed broker identity %r", as_text(i))
        return out

    @deadlines.read
    async def broker_topics(self, broker_name: str) -> list[str]:
        return sorted(
            as_text(t) for t in await self.redis.smembers(self.keys.broker_topics(broker_name))
        )

    # ------------------------------------------------------------------ repair (reconciliation)

    @deadlines.write
    async def refresh_liveness(
        self,
        cluster: str,
        broker_addr: str,
        *,
        timeout_ms: int = DEFAULT_HEARTBEAT_TIMEOUT_MS,
        conn_id: str = "",
        now: int | None = None,
    ) -> Refresh:
        """BROKER_HEARTBEAT: push a registered broker's deadline forward. A liveness key that
        is gone before its deadline while the broker is still in the tables (evicted, deleted)
        is recreated with ``timeout_ms`` and ``conn_id`` (logged at WARNING)."""
        r = await self._write(
            self.scripts.heartbeat,
            [cluster, broker_addr, now if now is not None else now_ms(), timeout_ms, conn_id],
            confirm=False,
        )
        result = _REFRESHES.get(r)
        if result is None:
            result = Refresh(int(r))
        _note_refresh(result, cluster, broker_addr)
        return result

    @deadlines.write
    async def lower_deadline(
        self, cluster: str, broker_addr: str, deadline_ms: int, now: int | None = None
    ) -> bool:
        """Move a registered broker's deadline back to ``deadline_ms`` if that is earlier (a
        re-applied registration must not extend the life of a broker that fell silent)."""
        at = now if now is not None else now_ms()
        r = await self._write(
            self.scripts.liveness_deadline,
            [cluster, broker_addr, at, max(deadline_ms, at + 1)],
            confirm=False,
        )
        return bool(r)

    @deadlines.write
    async def repair_broker(
        self, target: RepairTarget, topics: Sequence[QueueConfig], now: int | None = None
    ) -> RepairResult:
        """Verify one broker process's records and one chunk of its queue data against what a
        pod accepted from it, and repair what is missing (``lua/repair_broker.lua``)."""
        args: list[Any] = [
            target.cluster,
            target.broker_addr,
            target.broker_name,
            target.broker_id,
            target.data_version,
            target.state_version,
            target.ha_server_addr,
            target.body_token,
            now if now is not None else now_ms(),
            target.heartbeat_timeout_ms,
            target.conn_id,
            target.zone_name or "",
            "" if target.enable_acting_master is None else str(target.enable_acting_master).lower(),
            len(topics),
        ]
        for t in topics:
            args += (t.topic, t.read_queue_nums, t.write_queue_nums, t.perm, t.topic_sys_flag)
        reply = await self._write(self.scripts.repair_broker, args, confirm=False)
        repaired = {part: int(n) for part, n in zip(REPAIR_PARTS, reply[2:], strict=True) if int(n)}
        return RepairResult(as_text(reply[0]), int(reply[1]), repaired)

    @deadlines.write
    async def repair_drift(self, operations: Sequence[tuple[str, str, str]]) -> tuple[int, int]:
        """Fix drift nobody vouches for (``lua/repair_drift.lua``; each operation re-checks
        its condition): (operations that changed something, route version)."""
        args: list[Any] = [len(operations)]
        for op in operations:
            args += op
        changes, version = await self._write(self.scripts.repair_drift, args)
        return int(changes), int(version)


class Refresh(IntEnum):
    """What a liveness refresh found (``refresh_liveness`` in ``lua/_common.lua``)."""

    UNKNOWN = 0
    """Not registered (never, or removed): nothing refreshed."""
    REFRESHED = 1
    RECREATED = 2
    """Its liveness key was gone (evicted or deleted) before its deadline while the broker is
    still in the tables: recreated."""


_REFRESHES: dict[Any, Refresh] = {int(r): r for r in Refresh}
"""A refresh script's integer reply to its member, without the enum's lookup."""


def _note_refresh(result: Refresh, cluster: str, addr: str) -> None:
    if result is Refresh.RECREATED:
        REPAIRS.labels("live").inc()
        log.warning(
            "liveness key of broker %s (cluster %s) was gone before its deadline (evicted by "
            "maxmemory-policy or deleted): recreated by its refresh; Redis is losing keys "
            "(see docs/ha.md, Repair)",
            addr,
            cluster,
        )


@dataclass(frozen=True, slots=True)
class RepairTarget:
    """What a pod accepted from one broker process, to verify Redis against
    (``lua/repair_broker.lua``)."""

    cluster: str
    broker_addr: str
    broker_name: str
    broker_id: int
    data_version: str
    state_version: int
    ha_server_addr: str
    body_token: str
    heartbeat_timeout_ms: int
    conn_id: str
    zone_name: str | None = None
    enable_acting_master: bool | None = None


REPAIR_PARTS = (
    "live",
    "deadline",
    "addr_name",
    "broker",
    "cluster",
    "queue_data",
    "topic_set",
    "reverse_index",
    "version",
)


@dataclass(frozen=True, slots=True)
class RepairResult:
    status: str
    """``ok`` (verified, repaired where needed), ``gone`` (not registered: nothing written) or
    ``other`` (its liveness entry belongs to another registration: nothing written)."""
    version: int
    """The route version after the repair, 0 when nothing a route shows changed."""
    repaired: dict[str, int]
    """Part -> how many were repaired (only parts with a repair)."""


def queue_configs(items: Iterable[tuple[str, int, int, int, int]]) -> list[QueueConfig]:
    """Build QueueConfigs from (topic, read, write, perm, sysflag) tuples (tests, tools)."""
    return [QueueConfig(*i) for i in items]
