"""The version a pod runs, where operators look for it: ``/v1/status``, the OpenAPI document,
and ``namesrv_redis_build_info{version="…"} 1`` in ``/metrics`` — of a single-process pod and
in every scrape of a ``--workers`` pod's merged exposition."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from namesrv_redis import __version__
from tests.conftest import RedisServerProcess
from tests.serverproc import NamesrvProcess


def build_info(metrics: str) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, s.value)
        for f in text_string_to_metric_families(metrics)
        if f.name == "namesrv_redis_build_info"
        for s in f.samples
    ]


def scrape(port: int, path: str = "/metrics") -> str:
    """``path`` on a new connection (maybe another worker); a worker of a --workers pod that
    is still connecting to Redis answers 503 for a moment: ask again."""
    deadline = time.monotonic() + 30
    while True:
        with httpx.Client(timeout=10) as fresh:
            answer = fresh.get(f"http://127.0.0.1:{port}{path}")
        if answer.status_code == 200 or time.monotonic() > deadline:
            assert answer.status_code == 200, answer.text
            return answer.text
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [None, "2"])
def test_pod_reports_its_version(redis_server: RedisServerProcess, workers: str | None) -> None:
    extra = ("--workers", workers) if workers else ()
    pod = NamesrvProcess(redis_server.url, f"version-{workers}", *extra).start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{pod.http_port}", timeout=10) as http:
            assert json.loads(scrape(pod.http_port, "/v1/status"))["version"] == __version__
            assert http.get("/openapi.json").json()["info"]["version"] == __version__
            # a --workers pod: the kernel hands scrapes to either worker; each has it once
            for _ in range(8):
                assert build_info(scrape(pod.http_port)) == [({"version": __version__}, 1.0)]
    finally:
        pod.stop()
