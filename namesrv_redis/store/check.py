"""The consistency checker behind ``namesrv-redis check``: scans one namespace and reports every
broken invariant of the route tables (see :mod:`namesrv_redis.store.keys` for the schema).

It only reads. A healthy namespace yields no problem; the scripts in ``lua/`` are written so
that no sequence of writes, retries or races can produce one — but Redis can lose keys by
itself (a ``maxmemory`` eviction policy, an operator's ``DEL``): lost KV tables and a lost
epoch or route version are reported too. The pods repair what a connected broker vouches
for (:mod:`namesrv_redis.domain.reconcile`); :func:`repair_namespace` (``check --repair``)
fixes what nobody vouches for: queue data of brokers that are not registered, reverse-index
and topics-set drift.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from namesrv_redis.rocketmq.model import BrokerData, QueueData
from namesrv_redis.store.keys import Keys, split_ident
from namesrv_redis.store.route_store import RouteStore, as_text


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str
    detail: str
    subject: tuple[str, ...] = ()
    """The names involved (topic, broker name, …), for :func:`repair_namespace`."""

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


async def _scan_suffixes(redis: Any, prefix: str) -> set[str]:
    """Names after ``prefix`` of every key that starts with it (SCAN, not KEYS)."""
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
    return {as_text(k)[len(prefix) :] async for k in redis.scan_iter(match=pattern, count=1000)}


async def check_namespace(redis: Any, namespace: str) -> list[Problem]:
    """Every broken invariant of one namespace (empty when consistent)."""
    keys = Keys(namespace)
    problems: list[Problem] = []

    def report(kind: str, detail: str, *subject: str) -> None:
        problems.append(Problem(kind, detail, subject))

    # --- broker and cluster tables
    brokers: dict[str, BrokerData] = {}
    for name, raw in (await redis.hgetall(keys.brokers)).items():
        try:
            brokers[as_text(name)] = BrokerData.from_store(raw)
        except (ValueError, KeyError, TypeError) as e:
            report("bad_broker_data", f"{as_text(name)}: {e}")
    clusters = {as_text(c) for c in await redis.smembers(keys.clusters)}
    cluster_sets = {
        c: {as_text(b) for b in await redis.smembers(keys.cluster(c))} for c in clusters
    }
    for c in sorted(await _scan_suffixes(redis, keys.prefix + "cluster:") - clusters):
        report("unlisted_cluster", f"cluster set {c!r} exists but is not in the clusters set")
    for c, names in sorted(cluster_sets.items()):
        if not names:
            report("empty_cluster", f"cluster {c!r} has no broker")
        for b in sorted(names - brokers.keys()):
            report("cluster_unknown_broker", f"cluster {c!r} lists unknown broker {b!r}")
    for name, bd in sorted(brokers.items()):
        if bd.broker_name != name:
            report("bad_broker_data", f"{name!r} holds data of {bd.broker_name!r}")
        if not bd.broker_addrs:
            report("broker_without_address", f"broker {name!r} has no address")
        if name not in cluster_sets.get(bd.cluster, set()):
            report("broker_not_in_cluster", f"broker {name!r} missing from cluster {bd.cluster!r}")

    # --- liveness bookkeeping
    addr_names = {as_text(k): as_text(v) for k, v in (await redis.hgetall(keys.addr_names)).items()}
    deadlines = {as_text(m) for m in await redis.zrange(keys.deadlines, 0, -1)}
    live = await _scan_suffixes(redis, keys.live_prefix)
    for ident in sorted(live - deadlines):
        report("live_without_deadline", f"live broker {ident!r} is not in the deadline index")
    for ident in sorted(deadlines - addr_names.keys()):
        report("deadline_without_broker", f"deadline of {ident!r} names no broker")
    # every address in a group is some registered process (cluster@addr) of that group, so
    # liveness can remove it (a group's cluster may differ from a process's on misconfigured
    # estates: the same broker name in two clusters)
    tracked: dict[tuple[str, str], list[str]] = {}
    for ident, name in addr_names.items():
        try:
            addr = split_ident(ident)[1]
        except ValueError:
            report("bad_identity", f"{ident!r} is not an escaped cluster@address")
            continue
        tracked.setdefault((name, addr), []).append(ident)
    for name, bd in sorted(brokers.items()):
        for bid, addr in sorted(bd.broker_addrs.items()):
            idents = tracked.get((name, addr))
            if not idents:
                report(
                    "untracked_address",
                    f"broker {name!r} id {bid} at {addr} has no liveness record",
                )
            elif not any(i in deadlines for i in idents):
                report("address_without_deadline", f"{idents[0]!r} can never expire")
    for ident in sorted({as_text(f) for f in await redis.hkeys(keys.filters)} - addr_names.keys()):
        report("orphan_filter_servers", f"filter servers of unknown broker {ident!r}")
    for name in sorted({as_text(b) for b in await redis.hkeys(keys.tables)} - brokers.keys()):
        report("orphan_table_token", f"table token of unknown broker {name!r}")

    # --- topic tables and the reverse index
    topics = {as_text(t) for t in await redis.smembers(keys.topics)}
    topic_keys = await _scan_suffixes(redis, keys.prefix + "topic:")
    for t in sorted(topics - topic_keys):
        report("listed_topic_without_queue_data", f"topic {t!r}", t)
    for t in sorted(topic_keys - topics):
        report("unlisted_topic", f"topic {t!r} has queue data but is not in the topics set", t)
    reverse: dict[str, set[str]] = {}
    for t in sorted(topic_keys):
        for b, value in (await redis.hgetall(keys.topic(t))).items():
            name = as_text(b)
            reverse.setdefault(name, set()).add(t)
            try:
                QueueData.from_store(name, as_text(value))
            except ValueError:
                report("bad_queue_data", f"topic {t!r} broker {name!r}: {as_text(value)!r}")
            if name not in brokers:
                report(
                    "queue_data_unknown_broker", f"topic {t!r} has queue data of {name!r}", t, name
                )
    index_names = await _scan_suffixes(redis, keys.prefix + "broker-topics:")
    for name in sorted(index_names | reverse.keys()):
        indexed = {as_text(t) for t in await redis.smembers(keys.broker_topics(name))}
        actual = reverse.get(name, set())
        for t in sorted(indexed - actual):
            report("reverse_index_without_queue_data", f"broker {name!r} topic {t!r}", name, t)
        for t in sorted(actual - indexed):
            report("queue_data_missing_from_reverse_index", f"broker {name!r} topic {t!r}", name, t)

    await _check_controller(redis, keys, report)

    # --- what only persistence protects: KV tables, the epoch and the route version
    kv_listed = {as_text(n) for n in await redis.smembers(keys.kv_namespaces)}
    kv_emptied = {as_text(n) for n in await redis.smembers(keys.kv_namespaces_emptied)}
    kv_tables = await _scan_suffixes(redis, keys.prefix + "kv:")
    for ns in sorted(kv_listed - kv_tables - kv_emptied):
        report(
            "lost_kv_namespace",
            f"KV namespace {ns!r} is listed but its table is gone (evicted or deleted; "
            "restore it from a backup or put its keys again)",
            ns,
        )
    epoch, version = await redis.mget(keys.epoch, keys.version)
    if epoch is None and await redis.zcard(keys.pods):
        report("lost_epoch", "pods serve this namespace but its epoch key is gone")
    if version is None and (brokers or topics):
        report("lost_route_version", "the namespace has routes but no route version")
    return problems


REPAIRS: dict[str, str] = {
    "queue_data_unknown_broker": "orphan",
    "queue_data_missing_from_reverse_index": "index_add",
    "reverse_index_without_queue_data": "index_drop",
    "unlisted_topic": "list",
    "listed_topic_without_queue_data": "unlist",
}
"""Problem kind -> the ``lua/repair_drift.lua`` operation that fixes it. Everything else is
either repaired by the pods from their brokers' registrations (docs/ha.md, Repair) or needs
an operator (KV tables, which only persistence protects)."""


@dataclass(frozen=True, slots=True)
class RepairReport:
    applied: list[Problem]
    """Problems whose repair changed something."""
    skipped: list[Problem]
    """Problems repaired meanwhile by someone else (the condition no longer held)."""
    left: list[Problem]
    """Problems ``--repair`` does not fix."""


async def repair_namespace(store: RouteStore, problems: list[Problem]) -> RepairReport:
    """Fix the drift among ``problems`` that no connected broker vouches for, through
    ``lua/repair_drift.lua`` (each operation re-checks its condition: safe while pods run).
    Idempotent: a second run finds nothing to fix."""
    fixable = [p for p in problems if p.kind in REPAIRS]
    left = [p for p in problems if p.kind not in REPAIRS]
    applied: list[Problem] = []
    skipped: list[Problem] = []
    # an orphan's queue data is also missing from its (unregistered) broker's reverse index:
    # dropping the queue data settles both
    orphans = {
        (p.subject[1], p.subject[0]) for p in fixable if p.kind == "queue_data_unknown_broker"
    }
    for p in fixable:  # one short script call each: an operator's tool, not a hot path
        if p.kind == "queue_data_missing_from_reverse_index" and p.subject in orphans:
            applied.append(p)
            continue
        a, b = (*p.subject, "")[:2]
        changes, _ = await store.repair_drift([(REPAIRS[p.kind], a, b)])
        (applied if changes else skipped).append(p)
    return RepairReport(applied, skipped, left)


async def check_and_repair(
    redis: Any, namespace: str, *, repair: bool, out: Callable[[str], None] = print
) -> list[Problem]:
    """``namesrv-redis check [--repair]``: print every problem (with ``repair``, first fix what
    :func:`repair_namespace` fixes, printing each change) and return what is left."""
    problems = await check_namespace(redis, namespace)
    if repair and any(p.kind in REPAIRS for p in problems):
        store = RouteStore(redis, namespace)
        await store.load_scripts()
        report = await repair_namespace(store, problems)
        for p in report.applied:
            out(f"repaired: {p}")
        for p in report.skipped:
            out(f"already fixed meanwhile: {p}")
        problems = await check_namespace(redis, namespace)
    for p in problems:
        out(str(p))
    return problems


async def _check_controller(redis: Any, keys: Keys, report: Any) -> None:
    """Controller mode (docs/controller.md): epochs, master in its set, ids registered."""
    groups = {as_text(g) for g in await redis.smembers(keys.controller_groups)}
    hashes = await _scan_suffixes(redis, keys.prefix + "ctrl:group:")
    for g in sorted(hashes - groups):
        report("controller_unlisted_group", f"controller group {g!r} is not in ctrl:groups")
    for g in sorted(groups):
        h = {
            as_text(k): as_text(v)
            for k, v in (await redis.hgetall(keys.controller_group(g))).items()
        }
        if not h:
            report("controller_group_missing", f"controller group {g!r} has no state")
            continue
        try:
            ids = {int(k[5:]) for k in h if k.startswith("addr:")}
            sset = {int(i) for i in json.loads(h["sset"])}
            mepoch, sepoch, nxt = int(h["mepoch"]), int(h["sepoch"]), int(h["next"])
            master = int(h["master"]) if h.get("master") else None
        except (KeyError, ValueError, TypeError) as e:
            report("controller_bad_group", f"{g!r}: {e}")
            continue
        if mepoch < 0 or sepoch < mepoch:
            report("controller_bad_epochs", f"{g!r}: masterEpoch {mepoch}, setEpoch {sepoch}")
        if master is not None and master not in sset:
            report("controller_master_not_in_set", f"{g!r}: master {master} not in {sorted(sset)}")
        if master is not None and mepoch == 0:
            report("controller_bad_epochs", f"{g!r}: master {master} with masterEpoch 0")
        for i in sorted(sset - ids):
            report("controller_unregistered_member", f"{g!r}: set member {i} has no id")
        if ids and nxt <= max(ids):
            report("controller_bad_next_id", f"{g!r}: next id {nxt} <= {max(ids)}")
