"""Metrics of the estate: a ``--workers`` pod's /metrics sums every worker, the estate gauges
come from Redis with a namespace label, labels stay bounded, and every metric name that
docs/grafana-dashboard.json and docs/prometheus-alerts.yaml use is really exported; the rules
pass ``promtool check rules`` and their unit tests."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.sim.broker import SimBroker
from namesrv_redis.store.keys import Keys
from namesrv_redis.telemetry.estate_metrics import EstateCollector, exposition
from namesrv_redis.telemetry.worker_metrics import SNAPSHOT_INTERVAL_S, merged
from tests.brokerthread import BrokerThread
from tests.conftest import RedisServerProcess, free_port
from tests.serverproc import NamesrvProcess

DOCS = Path(__file__).resolve().parent.parent / "docs"
NAMESPACE = "estate"
ROUTE_QUERIES = 64
CONNECTIONS = 8


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(
    metrics: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    return sum(
        v for lab, v in metrics.get(name, []) if all(lab.get(k) == x for k, x in labels.items())
    )


@pytest.fixture(scope="module")
def workers_pod() -> Iterator[tuple[NamesrvProcess, BrokerThread]]:
    redis = RedisServerProcess().start()
    pod = NamesrvProcess(redis.url, NAMESPACE, "--workers", "2").start()
    broker = SimBroker("EstateCluster", "broker-e", "127.0.0.1:30911")
    broker.add_topics(["EstateTopic", "T2", "T3"])
    thread = BrokerThread(pod.port, broker).start()

    async def traffic() -> None:
        clients = [await RemotingClient.connect("127.0.0.1", pod.port) for _ in range(CONNECTIONS)]
        for i in range(ROUTE_QUERIES):
            c = clients[i % CONNECTIONS]
            answer = await c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "EstateTopic"})
            assert answer is not None and answer.code == 0
        # a broker that registers and leaves: a removal (reason unregister) is counted
        gone = SimBroker("EstateCluster", "broker-gone", "127.0.0.1:30999")
        gone.add_topics(["GoneTopic", "GoneToo"])  # a first one-topic registration is refused
        await gone.register(clients[0])
        await gone.unregister(clients[0])
        for c in clients:
            await c.close()

    thread.run(traffic())
    yield pod, thread
    thread.stop()
    pod.stop()
    redis.stop()


def scrape(pod: NamesrvProcess) -> str:
    r = httpx.get(f"http://127.0.0.1:{pod.http_port}/metrics", timeout=5)
    r.raise_for_status()
    return r.text


@pytest.mark.slow
def test_every_scrape_of_a_workers_pod_counts_every_worker(
    workers_pod: tuple[NamesrvProcess, BrokerThread],
) -> None:
    pod, _ = workers_pod
    time.sleep(SNAPSHOT_INTERVAL_S * 1.5)  # the staleness bound of other workers' counts
    seen = set()
    for _ in range(6):  # new connections: the kernel hands them to either worker
        m = samples(scrape(pod))
        seen.add(total(m, "namesrv_requests_total", frontend="remoting", code="105"))
        assert total(m, "namesrv_request_seconds_count", frontend="remoting", code="105") == (
            ROUTE_QUERIES
        )
    assert seen == {ROUTE_QUERIES}  # each worker answered some; each scrape saw them all


def test_merge_sums_counters_keeps_the_dead_and_picks_gauges(tmp_path: Path) -> None:
    def family(name: str, kind: str, samples: list[list[object]]) -> dict[str, object]:
        return {"name": name, "documentation": "d", "type": kind, "unit": "", "samples": samples}

    def snapshot(path: Path, requests: float, connections: float, flag: float) -> None:
        path.write_bytes(
            orjson.dumps(
                [
                    family("namesrv_requests", "counter",
                           [["namesrv_requests_total", {}, requests]]),
                    family("namesrv_remoting_connections", "gauge",
                           [["namesrv_remoting_connections", {}, connections]]),
                    family("namesrv_keyspace_notifications", "gauge",
                           [["namesrv_keyspace_notifications", {}, flag]]),
                    family("namesrv_brokers", "gauge", [["namesrv_brokers", {}, 99.0]]),
                ]
            )
        )  # fmt: skip

    own = list(
        text_string_to_metric_families(
            "# TYPE namesrv_requests_total counter\nnamesrv_requests_total 5\n"
            "# TYPE namesrv_remoting_connections gauge\nnamesrv_remoting_connections 2\n"
            "# TYPE namesrv_keyspace_notifications gauge\nnamesrv_keyspace_notifications 1\n"
            "# TYPE namesrv_brokers gauge\nnamesrv_brokers 3\n"
        )
    )
    snapshot(tmp_path / "worker-1.json", 7, 4, 0)  # a live worker
    snapshot(tmp_path / "dead-2.json", 11, 50, 0)  # a worker that died: only its counts stay
    (tmp_path / "worker-3.json").write_bytes(b"[{half-writ")  # torn: ignored
    got = {s.name: s.value for f in merged(tmp_path, own) for s in f.samples}
    assert got == {
        "namesrv_requests_total": 5 + 7 + 11,
        "namesrv_remoting_connections": 2 + 4,
        "namesrv_keyspace_notifications": 0,
        "namesrv_brokers": 3,  # the answering worker's own, just read from Redis
    }


@pytest.mark.slow
def test_estate_gauges_from_redis_with_namespace_label(
    workers_pod: tuple[NamesrvProcess, BrokerThread],
) -> None:
    pod, _ = workers_pod
    m = samples(scrape(pod))
    assert m["namesrv_estate_brokers"] == [({"namespace": NAMESPACE}, 1.0)]
    assert m["namesrv_estate_clusters"] == [({"namespace": NAMESPACE}, 1.0)]
    assert m["namesrv_estate_topics"] == [({"namespace": NAMESPACE}, 3.0)]
    assert m["namesrv_estate_pods"][0][1] >= 1
    assert m["namesrv_estate_route_version"][0][1] > 0
    assert m["namesrv_redis_up"] == [({}, 1.0)]
    assert total(m, "namesrv_broker_removals_total", reason="unregister") == 1


@pytest.mark.slow
def test_http_labels_stay_bounded(workers_pod: tuple[NamesrvProcess, BrokerThread]) -> None:
    pod, _ = workers_pod
    with httpx.Client(base_url=f"http://127.0.0.1:{pod.http_port}") as http:
        for i in range(30):
            http.get(f"/no/such/path/{i}")
            http.get(f"/v1/routes/random-topic-{i}")
    time.sleep(SNAPSHOT_INTERVAL_S * 1.5)  # whichever worker answered, its counts are in
    m = samples(scrape(pod))
    codes = {lab["code"] for lab, _ in m["namesrv_request_seconds_bucket"]}
    assert "GET unmatched" in codes and "GET /v1/routes/{topic}" in codes
    assert not any("random-topic" in c or "/no/such" in c for c in codes)


async def test_redis_unreachable_scrape_says_so() -> None:
    import redis.asyncio as aioredis

    dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5)
    estate = EstateCollector("ns")
    snap = await estate.refresh(dead, Keys("ns"), 0)
    await dead.aclose()
    assert not snap.redis_up
    m = samples(exposition(estate).decode())
    assert m["namesrv_redis_up"] == [({}, 0.0)]


# ------------------------------------------------------------------ dashboard and rules


def used_metric_names() -> set[str]:
    rules = yaml.safe_load((DOCS / "prometheus-alerts.yaml").read_text())
    text = "\n".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"]]
    return set(re.findall(r"\bnamesrv_[a-z0-9_]+", text + "\n".join(exprs)))


@pytest.mark.slow
def test_dashboard_and_rules_use_only_exported_metrics(
    workers_pod: tuple[NamesrvProcess, BrokerThread],
) -> None:
    pod, _ = workers_pod
    exported = set(samples(scrape(pod)))
    used = used_metric_names()
    assert len(used) >= 12
    missing = used - exported
    assert not missing, f"used by the dashboard or rules but not exported: {sorted(missing)}"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def test_promtool_check_rules() -> None:
    run = subprocess.run(
        [promtool(), "check", "rules", str(DOCS / "prometheus-alerts.yaml")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS: 6 rules found" in run.stdout


def test_promtool_rule_unit_tests() -> None:
    run = subprocess.run(
        [promtool(), "test", "rules", "prometheus-alerts.test.yaml"],
        cwd=DOCS,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_dashboard_is_importable_grafana_json() -> None:
    d = json.loads((DOCS / "grafana-dashboard.json").read_text())
    assert d["uid"] and d["title"] and d["schemaVersion"] >= 30
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["targets"], p["title"]
