"""What this pod remembers of each broker's last stored registration, so that the next one
costs what changed rather than what the broker has.

A broker re-registers every 30 s. When the body is byte for byte the one this pod last
stored (same token), the pod refreshes liveness without parsing it (``lite`` mode). When it
differs, the pod parses it and sends Redis only the topics whose queue numbers, perm or sysflag
differ from the remembered table, plus the topics that left it (``diff`` mode); the script
applies that only if the broker name's stored table is still the remembered one (see
``lua/register_broker.lua``), and the pod falls back to sending everything otherwise.

Memory is bounded by the number of remembered topic entries (least recently registered
broker forgotten first); forgetting only costs a full registration.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from namesrv_redis.model import QueueConfig, canonical_data_version, state_version
from namesrv_redis.remoting.register_body import QueueNums, RegisterTable, TopicTable
from namesrv_redis.store import (
    BrokerRegistration,
    RegisterMode,
    RegisterResult,
    RegisterStatus,
    RouteStore,
)

DEFAULT_MAX_TOPIC_ENTRIES = 1_000_000
"""About 150 MB at most: a remembered entry costs ~150 bytes (the topic string, a dict slot,
48 bytes of QueueNums)."""


@dataclass(frozen=True, slots=True)
class Remembered:
    token: str
    """:func:`~namesrv_redis.remoting.register_body.body_token` of the body."""
    data_version: str
    state_version: int
    topics: TopicTable


class RememberedRegistrations:
    """Broker process identity -> :class:`Remembered`, least recently registered evicted."""

    def __init__(self, max_topic_entries: int = DEFAULT_MAX_TOPIC_ENTRIES) -> None:
        self.max_topic_entries = max_topic_entries
        self._by_identity: OrderedDict[Hashable, Remembered] = OrderedDict()
        self._entries = 0

    def __len__(self) -> int:
        return len(self._by_identity)

    @property
    def topic_entries(self) -> int:
        return self._entries

    def get(self, identity: Hashable) -> Remembered | None:
        found = self._by_identity.get(identity)
        if found is not None:
            self._by_identity.move_to_end(identity)
        return found

    def put(self, identity: Hashable, remembered: Remembered) -> None:
        self.forget(identity)
        if len(remembered.topics) > self.max_topic_entries:
            return
        self._by_identity[identity] = remembered
        self._entries += len(remembered.topics)
        while self._entries > self.max_topic_entries:
            _, oldest = self._by_identity.popitem(last=False)
            self._entries -= len(oldest.topics)

    def forget(self, identity: Hashable) -> None:
        old = self._by_identity.pop(identity, None)
        if old is not None:
            self._entries -= len(old.topics)


def queue_config(topic: str, nums: QueueNums) -> QueueConfig:
    return QueueConfig(
        topic, nums.read_queue_nums, nums.write_queue_nums, nums.perm, nums.topic_sys_flag
    )


def queue_configs_of(table: TopicTable) -> list[QueueConfig]:
    return [queue_config(t, nums) for t, nums in table.items()]


def diff_tables(old: TopicTable, new: TopicTable) -> tuple[list[QueueConfig], list[str]]:
    """(topics of ``new`` that are absent from or different in ``old``, topics of ``old``
    that ``new`` no longer lists)."""
    get = old.get
    changed = [queue_config(t, nums) for t, nums in new.items() if get(t) != nums]
    removed = [t for t in old if t not in new] if len(old) > len(new) - len(changed) else []
    return changed, removed


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
    dv = canonical_data_version(table.data_version)
    sv = state_version(table.data_version)
    common: dict[str, Any] = {
        "data_version": dv,
        "state_version": sv,
        "filter_servers": table.filter_server_list,
        "has_static_topic_mappings": table.has_static_topic_mappings,
        "table_token": token,
    }
    # Only what changed since the remembered table; nothing at all when there is none (which
    # still succeeds when another pod already stored this very body).
    changed, removed = diff_tables(seen.topics, table.topics) if seen else ([], [])
    result = await store.register_broker(
        registration(
            mode=RegisterMode.DIFF,
            base_token=seen.token if seen else "",
            topics=changed,
            removed_topics=removed,
            **common,
        )
    )
    if result.status is RegisterStatus.NEED_TOPICS:
        result = await store.register_broker(
            registration(topics=queue_configs_of(table.topics), **common)
        )
    if result.status is RegisterStatus.OK:
        topics = (
            patched(seen.topics, table.topics, changed, removed)
            if seen
            else shared_nums(table.topics)
        )
        memory.put(identity, Remembered(token, dv, sv, topics))
    return result


def shared_nums(table: TopicTable) -> TopicTable:
    """The table with one QueueNums object per distinct value (most topics share a few)."""
    shared: dict[QueueNums, QueueNums] = {}
    return {t: shared.setdefault(n, n) for t, n in table.items()}


def patched(
    old: TopicTable, new: TopicTable, changed: list[QueueConfig], removed: list[str]
) -> TopicTable:
    """``new`` built from a copy of ``old`` and the diff between them: the unchanged topics
    keep the old (shared) QueueNums objects, so remembering ``new`` costs no more than ``old``."""
    table = dict(old)
    for q in changed:
        table[q.topic] = new[q.topic]
    for t in removed:
        del table[t]
    return table
