"""``bench persistence`` measures survival correctly: on a tiny workload, a ``kill -9`` of Redis
under AOF always keeps every acknowledged registration and KV write, under no persistence
keeps none, and the Java-like baseline keeps its KV file but no routes. (Correctness of the
measurement, asserted; timings are only reported, never asserted.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from namesrv_redis.bench.persistence import PersistSpec, format_table, run_persistence

pytestmark = pytest.mark.slow

TINY = {
    "brokers": 2,
    "topics": 3,
    "route_conns": 1,
    "load_s": 0.5,
    "max_s": 0.5,
    "rounds": 1,
    "reg_rate": 50.0,
    "route_rate": 50.0,
    "kills": 1,
    "crash_after_s": (0.3, 0.5),
    "recovery_timeout_s": 2.0,
}


def test_survival_measurement_tells_the_modes_apart(tmp_path: Path) -> None:
    spec = PersistSpec(modes=("aof-always", "none", "java-like"), **TINY)  # type: ignore[arg-type]
    result = run_persistence(spec, tmp_path)
    by_mode = {m["mode"]: m for m in result["modes"]}
    for m in by_mode.values():
        crash = m["crashes"][0]
        assert crash["acked_registrations"] > 0 and crash["acked_kv"] > 0, m["mode"]
        assert m["registration"]["latency_us"]["count"] > 0
        assert m["route"]["latency_us"]["count"] > 0

    always = by_mode["aof-always"]
    assert always["survival"] == {"registrations": 1.0, "kv": 1.0}
    assert always["recovery"]["recovered"] == 1
    assert always["disk_bytes"] > 0

    none = by_mode["none"]
    assert none["survival"] == {"registrations": 0.0, "kv": 0.0}
    assert none["recovery"]["recovered"] == 0 and none["recovery"]["median_s"] is None
    assert none["disk_bytes"] == 0

    java = by_mode["java-like"]
    assert java["survival"] == {"registrations": 0.0, "kv": 1.0}
    assert java["recovery"]["recovered"] == 0

    table = format_table(result)
    for mode in by_mode:
        assert mode in table
    assert "never (0/1)" in table


def test_bench_persistence_command_writes_json_and_plots(tmp_path: Path) -> None:
    plots = tmp_path / "plots"
    want_plots = True
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        want_plots = False
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "namesrv_redis.cli",
            "bench",
            "persistence",
            "--quick",
            "--modes",
            "aof-everysec",
            "--kills",
            "1",
            "--load-seconds",
            "0.5",
            "--max-seconds",
            "0.5",
            "--brokers",
            "2",
            "--topics",
            "3",
            "--json",
            str(tmp_path / "r.json"),
            *(["--plots", str(plots)] if want_plots else []),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent.parent,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert [m["mode"] for m in result["modes"]] == ["aof-everysec"]
    assert result["settings"]["brokers"] == 2
    assert "aof-everysec" in out.stdout and "regs kept" in out.stdout
    if want_plots:
        assert sorted(p.name for p in plots.iterdir()) == [
            "persistence-latency.png",
            "persistence-survival.png",
        ]


def test_bench_persistence_refuses_an_unknown_mode() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "namesrv_redis.cli", "bench", "persistence", "--modes", "aof"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert out.returncode == 2
    assert "unknown mode(s) ['aof']" in out.stdout


def test_the_pods_rebuild_brings_back_registrations_redis_forgot(tmp_path: Path) -> None:
    """With rebuildOnDataLoss on, a Redis without persistence that was killed still gets the
    connected brokers' registrations back from the pod (docs/ha.md), and KV still not."""
    spec = PersistSpec(modes=("none",), rebuild=True, **TINY)  # type: ignore[arg-type]
    result = run_persistence(spec, tmp_path)
    assert result["settings"]["rebuild"] is True
    none = result["modes"][0]
    assert none["survival"]["registrations"] > 0
    assert none["survival"]["kv"] == 0.0
