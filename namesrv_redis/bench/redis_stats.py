"""What ``bench capacity`` reads from Redis itself: CPU time, per-command cost
(``INFO commandstats``), memory (``INFO memory``) and the memory of one namespace's keys
(``MEMORY USAGE``), split into what the topics take and what the brokers take."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from namesrv_redis.store.keys import Keys


@dataclass(frozen=True)
class RedisSnapshot:
    cpu_s: float
    used_memory: int
    commands: dict[str, tuple[int, int]] = field(default_factory=dict)
    """command -> (calls, microseconds)."""

    @classmethod
    def take(cls, client: Any) -> RedisSnapshot:
        cpu = client.info("cpu")
        memory = client.info("memory")
        stats = client.info("commandstats")
        commands = {
            name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
            for name, v in stats.items()
            if isinstance(v, dict)
        }
        return cls(
            cpu_s=float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
            used_memory=int(memory["used_memory"]),
            commands=commands,
        )


def command_costs(
    before: RedisSnapshot, after: RedisSnapshot, top: int = 8
) -> list[dict[str, Any]]:
    """The commands that took Redis the most time between two snapshots."""
    rows: list[dict[str, Any]] = []
    for name, (calls, usec) in after.commands.items():
        c0, u0 = before.commands.get(name, (0, 0))
        if calls - c0 > 0:
            rows.append(
                {
                    "command": name,
                    "calls": calls - c0,
                    "usec": usec - u0,
                    "usec_per_call": round((usec - u0) / (calls - c0), 2),
                }
            )
    rows.sort(key=lambda r: -r["usec"])
    return rows[:top]


ENTRY_KINDS = ("topic", "topics", "broker-topics")
"""Key kinds that grow with topic-broker entries (a topic's queue data on one broker):
``topic:<t>`` hashes, the ``topics`` set and the ``broker-topics:<b>`` reverse index."""


def namespace_memory(client: Any, keys: Keys, batch: int = 1000) -> dict[str, int]:
    """Bytes of the namespace's keys by kind (``topic``, ``broker-topics``, ``live``, ...:
    the first segment after the prefix), from ``MEMORY USAGE`` of every key."""
    by_kind: dict[str, int] = {}
    prefix = keys.prefix
    names: list[bytes] = []

    def flush() -> None:
        pipe = client.pipeline(transaction=False)
        for n in names:
            pipe.memory_usage(n, samples=0)
        for n, size in zip(names, pipe.execute(), strict=True):
            kind = n.decode()[len(prefix) :].split(":", 1)[0]
            by_kind[kind] = by_kind.get(kind, 0) + int(size or 0)
        names.clear()

    for name in client.scan_iter(
        match=prefix.replace("{", "\\{").replace("}", "\\}") + "*", count=batch
    ):
        names.append(name)
        if len(names) >= batch:
            flush()
    if names:
        flush()
    return by_kind


def split_memory(by_kind: dict[str, int], entries: int, brokers: int) -> dict[str, Any]:
    """Bytes per topic-broker entry (see :data:`ENTRY_KINDS`) and per broker (everything
    else: broker data, liveness, deadlines, tables, cluster sets)."""
    entry_bytes = sum(v for k, v in by_kind.items() if k in ENTRY_KINDS)
    broker_bytes = sum(v for k, v in by_kind.items() if k not in ENTRY_KINDS)
    return {
        "keys_bytes": sum(by_kind.values()),
        "entry_bytes": entry_bytes,
        "broker_bytes": broker_bytes,
        "bytes_per_entry": round(entry_bytes / max(1, entries)),
        "bytes_per_broker": round(broker_bytes / max(1, brokers)),
        "by_kind": dict(sorted(by_kind.items())),
    }
