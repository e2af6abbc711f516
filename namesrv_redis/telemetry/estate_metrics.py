"""Metrics of the whole estate and the exposition of every worker of a pod.

**Estate gauges** (brokers, clusters, topics, route version, live pods) describe the one
namespace that every pod shares, so each pod reports the same values: they are read from Redis
once per scrape (one pipelined round trip) and carry a ``namespace`` label. Aggregate them
across pods with ``max by (namespace)``, never ``sum`` (docs/operations.md). ``namesrv_redis_up``
is per pod: whether this scrape reached Redis.

**Every worker of a ``--workers`` pod**: whichever worker the kernel hands a scrape to
reports the sums over all of them (:mod:`namesrv_redis.telemetry.worker_metrics`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from namesrv_redis.telemetry.metrics import REGISTRY
from namesrv_redis.telemetry.worker_metrics import merged
from namesrv_redis.telemetry.worker_metrics_dir import worker_metrics_dir


@dataclass
class EstateSnapshot:
    brokers: int = 0
    clusters: int = 0
    topics: int = 0
    route_version: int = 0
    pods: int = 0
    redis_up: bool = False


class EstateCollector(Collector):
    """Emits the snapshot of the last :meth:`refresh` (a scrape refreshes, then renders)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.snapshot: EstateSnapshot | None = None

    async def refresh(
        self, redis: Any, keys: Any, now_ms: int, *, timeout_s: float = 1.0
    ) -> EstateSnapshot:
        """One round trip, within ``timeout_s`` (a hung Redis must not hang a scrape)."""
        try:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.zcard(keys.deadlines)
                pipe.scard(keys.clusters)
                pipe.scard(keys.topics)
                pipe.get(keys.version)
                pipe.zcount(keys.pods, now_ms, "+inf")
                brokers, clusters, topics, version, pods = await asyncio.wait_for(
                    pipe.execute(), timeout_s
                )
        except (RedisError, TimeoutError):
            last = self.snapshot or EstateSnapshot()
            self.snapshot = EstateSnapshot(
                last.brokers, last.clusters, last.topics, last.route_version, last.pods, False
            )
            return self.snapshot
        self.snapshot = EstateSnapshot(
            int(brokers), int(clusters), int(topics), int(version or 0), int(pods), True
        )
        return self.snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        up = GaugeMetricFamily(
            "namesrv_redis_up", "1 if this pod's last scrape reached Redis, else 0.", labels=[]
        )
        up.add_metric([], 1.0 if s is not None and s.redis_up else 0.0)
        yield up
        if s is None:
            return
        for name, doc, value in (
            ("brokers", "Broker addresses registered (liveness entries)", s.brokers),
            ("clusters", "Clusters with at least one broker", s.clusters),
            ("topics", "Topics with queue data", s.topics),
            (
                "route_version",
                "Route version: bumped by every change a route sees",
                s.route_version,
            ),
            ("pods", "Pods advertising themselves to the address server", s.pods),
        ):
            g = GaugeMetricFamily(
                f"namesrv_estate_{name}",
                f"{doc}, for the whole namespace (read from Redis at scrape time; "
                "the same on every pod: aggregate with max by (namespace)).",
                labels=["namespace"],
            )
            g.add_metric([self.namespace], float(value))
            yield g


class _Joined:
    def __init__(self, *collectors: Any) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for c in self.collectors:
            yield from c.collect()


def exposition(estate: EstateCollector | None = None) -> bytes:
    """The text of ``/metrics``: this process's registry (merged with the other workers' in a
    ``--workers`` pod, see :mod:`namesrv_redis.telemetry.worker_metrics`) plus the estate gauges."""
    directory = worker_metrics_dir()
    source: Any = REGISTRY if directory is None else _Merged(directory)
    if estate is not None:
        source = _Joined(source, estate)
    return generate_latest(source)


class _Merged:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> Iterator[Metric]:
        return merged(self.directory)
