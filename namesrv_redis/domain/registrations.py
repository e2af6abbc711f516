"""What this pod remembers of each broker's last stored registration, so that the next one
costs what changed rather than what the broker has.

A broker re-registers every 30 s. When the body is byte for byte the one this pod last
stored (same token), the pod refreshes liveness without parsing it (``lite`` mode). When it
differs, the pod parses it and sends Redis only the topics whose queue numbers, perm or sysflag
differ from the remembered table (``diff`` mode); the script applies that only if the broker
name's stored table is still the remembered one (see ``lua/register_broker.lua``), and the pod
falls back to sending everything otherwise — also when topics left the table and the name
server deletes what a broker no longer reports (``deleteTopicWithBrokerRegistration``).

The remembered table is two arrays of 64-bit hashes — of each topic name and of each
(topic, QueueNums) entry — so it costs 16 bytes a topic rather than a dict of names; a
changed topic is one whose entry hash the old table lacks. (Two different entries sharing a
64-bit hash within one broker's table — odds near 1e-11 for 10,000 topics — would leave that
topic's change unsent until its next change.) Memory is bounded by the number of remembered
topics, least recently registered broker forgotten first; forgetting only costs a full
registration. The memory is shared by the event loop and the worker thread that stores big
registrations (see ``offload.py``), hence its lock.
"""

from __future__ import annotations

import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass
from itertools import islice
from typing import Any

from namesrv_redis.rocketmq.errors import BadRequest
from namesrv_redis.rocketmq.headers import RegisterBrokerHeader
from namesrv_redis.rocketmq.model import (
    BadDataVersion,
    QueueConfig,
    canonical_data_version,
    state_version,
)
from namesrv_redis.rocketmq.register_body import QueueNums, RegisterTable, TopicTable
from namesrv_redis.store.route_store import (
    BrokerRegistration,
    RegisterMode,
    RegisterResult,
    RegisterStatus,
    RouteStore,
)

DEFAULT_MAX_TOPIC_ENTRIES = 4_000_000
"""64 MB at most (16 bytes a remembered topic)."""


@dataclass(frozen=True, slots=True)
class Remembered:
    token: str
    """:func:`~namesrv_redis.rocketmq.register_body.body_token` of the body."""
    data_version: str
    state_version: int
    names: array[int] | None
    """hash(topic) of every topic of the body; kept only where topics that leave the table
    must be counted (``deleteTopicWithBrokerRegistration``), else None."""
    entries: array[int]
    """hash((topic, QueueNums)) of every topic of the body."""


STEP = 8192
"""Hashing and set operations over a big table go this many topics at a time: each step is
one short stretch of C code, so a registration running on the worker thread (offload.py)
never holds the interpreter lock for long against the event loop."""


FEW_CHANGES = 8
"""Up to this many changed topics are looked up by position rather than by a pass over the
whole table."""


def _hashes(items: Collection[Hashable]) -> array[int]:
    if len(items) <= STEP:  # one stretch of C code anyway
        return array("q", map(hash, items))
    out: array[int] = array("q")
    it = iter(items)
    while chunk := list(islice(it, STEP)):
        out.extend(map(hash, chunk))
    return out


def _set_of(values: array[int]) -> set[int]:
    if len(values) <= STEP:
        return set(values)
    out: set[int] = set()
    for i in range(0, len(values), STEP):
        out.update(values[i : i + STEP])
    return out


def _without(values: set[int], removed: array[int]) -> None:
    if len(removed) <= STEP:
        values.difference_update(removed)
        return
    for i in range(0, len(removed), STEP):
        values.difference_update(removed[i : i + STEP])


def entry_hashes(table: TopicTable) -> array[int]:
    return _hashes(table.items())


def remember(
    token: str,
    data_version: str,
    state_version: int,
    table: TopicTable,
    entries: array[int] | None = None,
    *,
    with_names: bool = True,
) -> Remembered:
    return Remembered(
        token,
        data_version,
        state_version,
        _hashes(table) if with_names else None,
        entries if entries is not None else entry_hashes(table),
    )


class RememberedRegistrations:
    """Broker process identity -> :class:`Remembered`, least recently registered evicted."""

    def __init__(self, max_topic_entries: int = DEFAULT_MAX_TOPIC_ENTRIES) -> None:
        self.max_topic_entries = max_topic_entries
        self._by_identity: OrderedDict[Hashable, Remembered] = OrderedDict()
        self._entries = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._by_identity)

    @property
    def topic_entries(self) -> int:
        return self._entries

    def get(self, identity: Hashable) -> Remembered | None:
        with self._lock:
            found = self._by_identity.get(identity)
            if found is not None:
                self._by_identity.move_to_end(identity)
            return found

    def peek(self, identity: Hashable) -> Remembered | None:
        """Like :meth:`get`, without counting as a registration (the eviction order stays)."""
        with self._lock:
            return self._by_identity.get(identity)

    def put(self, identity: Hashable, remembered: Remembered) -> None:
        with self._lock:
            self._forget(identity)
            if len(remembered.entries) > self.max_topic_entries:
                return
            self._by_identity[identity] = remembered
            self._entries += len(remembered.entries)
            while self._entries > self.max_topic_entries:
                _, oldest = self._by_identity.popitem(last=False)
                self._entries -= len(oldest.entries)

    def forget(self, identity: Hashable) -> None:
        with self._lock:
            self._forget(identity)

    def _forget(self, identity: Hashable) -> None:
        old = self._by_identity.pop(identity, None)
        if old is not None:
            self._entries -= len(old.entries)


def registration_identity(h: RegisterBrokerHeader) -> tuple[str, str, str, int, bool]:
    """What a pod remembers a broker process's stored registration under."""
    return (h.cluster_name, h.broker_addr, h.broker_name, h.broker_id, h.compressed)


def queue_config(topic: str, nums: QueueNums) -> QueueConfig:
    return QueueConfig(
        topic, nums.read_queue_nums, nums.write_queue_nums, nums.perm, nums.topic_sys_flag
    )


def queue_configs_of(table: TopicTable) -> list[QueueConfig]:
    return [queue_config(t, nums) for t, nums in table.items()]


@dataclass(frozen=True, slots=True)
class TableDiff:
    changed: list[QueueConfig]
    """Topics of the new table that are new or differ."""
    removed: int
    """How many topics of the old table the new one no longer lists (0 when the old table's
    names were not kept: nothing needs the count then)."""


def diff_tables(old: Remembered, new: TopicTable, entries: array[int]) -> TableDiff:
    """``entries`` = :func:`entry_hashes` of ``new``. Set operations in C; a Python loop over
    the topics only when some did change."""
    fresh = _set_of(entries)
    _without(fresh, old.entries)
    if not fresh:
        return TableDiff([], len(old.entries) - len(new) if old.names is not None else 0)
    changed: list[tuple[str, QueueNums]]
    if len(fresh) <= FEW_CHANGES:  # the usual change: a topic or two, found by C scans
        items = list(new.items())
        changed = [items[i] for i in sorted(entries.index(h) for h in fresh)]
    else:
        changed = [item for item, h in zip(new.items(), entries, strict=True) if h in fresh]
    configs = [queue_config(t, n) for t, n in changed]
    if old.names is None:
        return TableDiff(configs, 0)
    names = old.names if len(changed) <= FEW_CHANGES else _set_of(old.names)
    modified = sum(1 for t, _ in changed if hash(t) in names)
    unchanged = len(new) - len(changed)
    return TableDiff(configs, len(old.entries) - unchanged - modified)


async def store_registration(
    store: RouteStore,
    memory: RememberedRegistrations,
    identity: Hashable,
    token: str,
    parse: Callable[[], RegisterTable],
    registration: Callable[..., BrokerRegistration],
) -> RegisterResult:
    """Store one REGISTER_BROKER as cheaply as Redis allows: ``lite`` when the body is the one
    last stored for ``identity`` (``parse`` is then never called), else ``diff`` against the
    remembered table, else ``full``. ``registration(**fields)`` builds the request from the
    header and the given fields. Remembers the table when the broker is registered."""
    seen = memory.get(identity)
    result: RegisterResult | None = None
    if seen is not None and seen.token == token:
        result = await store.register_broker(
            registration(
                data_version=seen.data_version,
                state_version=seen.state_version,
                mode=RegisterMode.LITE,
                table_token=token,
            )
        )
        if result.status is not RegisterStatus.NEED_TOPICS:
            return result
    table = parse()
    try:
        dv = canonical_data_version(table.data_version)
        sv = state_version(table.data_version)
    except BadDataVersion as e:
        raise BadRequest(f"Failed to decode RegisterBrokerBody: {e}") from None
    common: dict[str, Any] = {
        "data_version": dv,
        "state_version": sv,
        "filter_servers": table.filter_server_list,
        "has_static_topic_mappings": table.has_static_topic_mappings,
        "table_token": token,
    }
    # Only what changed since the remembered table; nothing at all when there is none (which
    # still succeeds when another pod already stored this very body).
    entries = entry_hashes(table.topics)
    diff = diff_tables(seen, table.topics, entries) if seen else TableDiff([], 0)
    result = None
    if not (diff.removed and store.delete_topic_with_broker_registration):
        result = await store.register_broker(
            registration(
                mode=RegisterMode.DIFF,
                base_token=seen.token if seen else "",
                topics=diff.changed,
                **common,
            )
        )
    if result is None or result.status is RegisterStatus.NEED_TOPICS:
        result = await store.register_broker(
            registration(topics=queue_configs_of(table.topics), **common)
        )
    if result.status is RegisterStatus.OK:
        with_names = store.delete_topic_with_broker_registration
        memory.put(identity, remember(token, dv, sv, table.topics, entries, with_names=with_names))
    return result
