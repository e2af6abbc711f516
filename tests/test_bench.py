"""``namesrv-redis bench`` runs end to end on a tiny estate and reports sane numbers (the
numbers themselves are measured, never asserted: see docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_bench_command_reports_every_measurement() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "namesrv_redis.cli",
            "bench",
            "--brokers",
            "2",
            "--topics",
            "20",
            "--duration",
            "1.5",
            "--warmup",
            "0.5",
            "--procs",
            "1",
            "--connections",
            "2",
            "--pipeline",
            "4",
            "--register-sizes",
            "10,50",
            "--memory-sizes",
            "100,500",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).parent.parent,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    routes = result["routes"]
    for name in ("remoting_cached", "remoting_uncached", "http_cached"):
        assert routes[name]["throughput_rps"] > 0, name
        assert routes[name]["errors"] == {}, name
        assert routes[name]["latency_us"]["p50"] > 0
        assert routes[name]["server_cpu_us_per_req"] > 0
    assert routes["cache_speedup"] > 0
    assert [m["topics"] for m in result["memory"]] == [100, 500]
    for m in result["memory"]:
        assert m["server_rss_mib"] >= m["server_rss_idle_mib"] > 0
        assert m["redis_used_memory_mib"] > 0
    assert [r["topics"] for r in result["registration"]] == [10, 50]
    assert "remoting (cached)" in out.stdout
