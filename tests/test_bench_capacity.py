"""``namesrv-redis bench capacity``: the estate model, the analysis of what the processes
recorded, and one tiny end-to-end run on 1 and 2 pods (numbers are measured, never asserted:
docs/capacity.md). The end-to-end run checks what must hold whatever the machine: every
broker registered and none refused, the dead rack found on every pod, the tables consistent
afterwards, every window measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from namesrv_redis.bench.capacity_report import _detection, _event_lag, _registrations
from namesrv_redis.bench.estate import Estate
from namesrv_redis.bench.fleet import CHANGED, UNCHANGED, Registrations
from namesrv_redis.bench.redis_stats import RedisSnapshot, command_costs, split_memory


def test_estate_groups_brokers_and_compresses_rocketmq_schedules() -> None:
    e = Estate(brokers=10, topics_per_broker=3, spread=4, interval_s=3.0)
    assert e.groups == 3 and e.topic_count == 9
    assert e.topics_of(0) == e.topics_of(3) == ["cap-topic-0", "cap-topic-1", "cap-topic-2"]
    assert e.topics_of(4) == ["cap-topic-3", "cap-topic-4", "cap-topic-5"]
    assert e.topics_of(9) == ["cap-topic-6", "cap-topic-7", "cap-topic-8"]  # a short group
    assert e.witness_topic(5) in e.topics_of(5)
    assert e.compression == 10 and e.timeout_ms == 12_000 and e.client_poll_s == 3.0
    assert len({e.broker_addr(b) for b in range(70_000)}) == 70_000
    assert e.dying(4) == [0, 2, 5, 7]  # spread over the estate, not one group
    assert e.dying(50) == list(range(10))
    with pytest.raises(ValueError):
        Estate(brokers=0, topics_per_broker=1)


def test_detection_counts_from_each_pods_last_acknowledgement_plus_the_timeout() -> None:
    detected: dict[int, list[float | None]] = {1: [110.5, 111.0], 2: [None, 112.0]}
    last_ack = {1: [100.0, 100.2], 2: [100.0, 100.0]}
    d = _detection(detected, last_ack, timeout_s=10.0, death_at=101.0)
    assert d["observations"] == 3 and d["missed"] == 1
    assert d["after_timeout_ms"]["p50"] == 800.0  # 111.0 - 100.2 - 10
    assert d["after_timeout_ms"]["max"] == 2000.0
    assert d["since_death_ms"]["max"] == 11000.0


def test_event_lag_measures_how_long_a_pod_stays_behind() -> None:
    lag = [(0.0, 5, [5, 3]), (0.2, 6, [6, 4]), (0.4, 6, [6, 6]), (0.6, 7, [7, 7])]
    fresh, behind = _event_lag(lag, pods=2)
    assert fresh["max_versions_behind"] == 0 and fresh["delay_ms"]["max"] == 0.0
    assert behind["max_versions_behind"] == 2
    assert behind["delay_ms"]["max"] == 400.0  # version 5 (sample 0) reached at sample 2


def test_registration_summaries_split_by_kind_and_count_errors() -> None:
    r = Registrations()
    r.add(1.0, 0.002, 0, 0, UNCHANGED)
    r.add(1.1, 0.004, 0, 0, UNCHANGED)
    r.add(1.2, 0.010, 1, 0, CHANGED)
    r.add(1.3, 6.0, 1, -1, CHANGED)  # a timeout
    s = _registrations(r, [0, 1, 2, 3], seconds=2.0)
    assert s["count"] == 4 and s["per_s"] == 2.0
    assert s["errors"] == {"-1": 1}
    assert s["unchanged"]["count"] == 2 and s["changed"]["count"] == 1
    assert s["latency_ms"]["max"] == 10.0  # failed ones are not latencies


def test_redis_costs_and_memory_split() -> None:
    a = RedisSnapshot(1.0, 100, {"evalsha": (10, 500), "get": (5, 10)})
    b = RedisSnapshot(2.0, 200, {"evalsha": (20, 1500), "get": (5, 10), "hset": (1, 3)})
    rows = command_costs(a, b)
    assert rows[0] == {"command": "evalsha", "calls": 10, "usec": 1000, "usec_per_call": 100.0}
    assert [r["command"] for r in rows] == ["evalsha", "hset"]  # idle commands left out
    m = split_memory(
        {"topic": 600, "topics": 100, "broker-topics": 300, "live": 50, "brokers": 150},
        entries=10,
        brokers=2,
    )
    assert m["bytes_per_entry"] == 100 and m["bytes_per_broker"] == 100


@pytest.mark.slow
@pytest.mark.real_redis
def test_bench_capacity_runs_an_estate_on_one_and_two_pods(tmp_path: Path) -> None:
    out_json = tmp_path / "capacity.json"
    plots = tmp_path / "plots"
    try:
        import matplotlib  # noqa: F401

        want_plots = True
    except ImportError:
        want_plots = False
    cmd = [
        sys.executable,
        "-m",
        "namesrv_redis.cli",
        "bench",
        "capacity",
        "--profiles",
        "brokers",
        "--brokers",
        "20",
        "--topics-per-broker",
        "5",
        "--clients",
        "8",
        "--scale-out",
        "1,2",
        "--interval",
        "1",
        "--steady",
        "2",
        "--load",
        "1",
        "--load-connections",
        "2",
        "--pipeline",
        "4",
        "--generator-procs",
        "1",
        "--dying",
        "4",
        "--heartbeat-interval",
        "0.5",
        "--cost-brokers",
        "4",
        "--cost-topics",
        "10",
        "--cost-rounds",
        "5",
        "--cost-paced-rate",
        "40",
        "--cost-paced-seconds",
        "0.5",
        "--json",
        str(out_json),
    ]
    if want_plots:
        cmd += ["--plots", str(plots)]
    run = subprocess.run(
        cmd, capture_output=True, text=True, timeout=400, cwd=Path(__file__).parent.parent
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out_json.read_text())
    assert [s["pods"] for s in result["scenarios"]] == [1, 2]
    for s in result["scenarios"]:
        pods = s["pods"]
        # the cost phase: every request of every kind answered by every pod, CPU counted
        costs = s["op_costs"]
        for group, per_kind in ((costs, 4 * 5 * 3), (costs["paced"], None)):
            for kind in ("changed", "unchanged", "heartbeat"):
                c = group[kind]
                assert c["failed"] == 0 and c["operations"] > 0, (kind, c)
                if per_kind is not None:
                    assert c["operations"] == per_kind * pods, (kind, c)
                assert c["pod_cpu_us"] >= 0 and c["redis_cpu_us"] >= 0
        assert s["fill"]["failed"] == 0
        reg = s["registration"]["steady"]
        assert reg["count"] > 0 and reg["errors"] == {}, reg
        for window in ("steady", "load", "storm", "death"):
            assert s["routes_paced"][window]["count"] > 0, window
            assert s["routes_paced"][window]["errors"] == {}, window
        storm = s["storm"]
        assert storm["count"] == 20 * pods and storm["errors"] == {}  # every broker, every pod
        remoting, http = s["route_load"]["remoting"], s["route_load"]["http"]
        assert remoting["throughput_rps"] > 0 and remoting["errors"] == {}
        assert http["throughput_rps"] > 0 and http["errors"] == {}
        assert len(remoting["pod_cpu_pct"]) == pods
        detection = s["detection"]
        assert detection["brokers"] == 4 and detection["missed"] == 0
        assert detection["observations"] == 4 * pods
        assert len(s["event_lag"]) == pods and s["event_lag"][0]["samples"] > 0
        tables = s["tables_after"]
        assert tables["brokers"] == tables["brokers_expected"] == 16
        assert tables["dead_brokers_left"] == 0 and tables["consistency_problems"] == []
        assert s["redis_keys"]["bytes_per_entry"] > 0 and s["redis_keys"]["bytes_per_broker"] > 0
        assert s["pod0_rss_all_cached_mib"] > 0
    assert "scenario" in run.stdout and "Redis us/reg" in run.stdout
    if want_plots:
        names = sorted(p.name for p in plots.iterdir())
        assert "capacity-scaleout.png" in names and "capacity-profiles.png" in names
