"""Latency percentiles and process CPU/RSS accounting for the benchmark."""

from __future__ import annotations

import contextlib
import os
import resource
from array import array
from dataclasses import dataclass, field
from typing import Any

import psutil


def percentile(sorted_values: array[int] | list[int], p: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return float(sorted_values[k])


def summarize_us(latencies: array[int] | list[int]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max/mean of latencies in microseconds."""
    values = sorted(latencies)
    n = len(values)
    return {
        "count": n,
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "p999": percentile(values, 99.9),
        "max": float(values[-1]) if n else 0.0,
        "mean": round(sum(values) / n, 1) if n else 0.0,
    }


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass
class ProcessTree:
    """CPU seconds and RSS of a server process and its children (workers, embedded Redis
    excluded by name)."""

    pid: int
    exclude: tuple[str, ...] = ("redis-server",)
    _procs: dict[int, psutil.Process] = field(default_factory=dict)

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        out = []
        for p in procs:
            try:
                if any(x in p.name() for x in self.exclude):
                    continue
            except psutil.Error:
                continue
            out.append(self._procs.setdefault(p.pid, p))
        return out

    def cpu_s(self) -> float:
        total = 0.0
        for p in self.processes():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def rss_mib(self) -> float:
        total = 0
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total / 2**20


def redis_used_memory(info: dict[str, Any]) -> int:
    return int(info.get("used_memory", 0))


def cpu_affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return []
