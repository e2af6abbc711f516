"""``namesrv-redis bench ceiling``: the constant-answer server answers correct frames, the
RESP generator validates Redis' answers, the summary takes medians per server and ratios per
round, and one tiny run of the whole suite measures every server without an error (numbers
are printed, never asserted: docs/benchmarks.md, "The limit")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis as redis_sync

from namesrv_redis.bench.ceiling import serve_constant, summarize
from namesrv_redis.bench.loadgen import LoadSpec, run_route_load
from namesrv_redis.bench.target import free_port
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.remoting.codec import JSON, encode_request, encode_response
from namesrv_redis.rocketmq.codes import RequestCode
from tests.conftest import RedisServerProcess

BODY = b'{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10911"}}],"queueDatas":[{"x":1}]}'


@contextlib.asynccontextmanager
async def _ceiling(body: bytes = BODY) -> Any:
    port = free_port()
    task = asyncio.create_task(serve_constant("127.0.0.1", port, body))
    try:
        for _ in range(100):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.02)
        yield port
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_ceiling_server_answers_every_request_with_the_body_and_its_opaque() -> None:
    async with _ceiling() as port:
        c = await RemotingClient.connect("127.0.0.1", port)
        answers = await asyncio.gather(
            *(
                c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": f"T{i}"}, timeout=10)
                for i in range(50)
            )
        )
        await c.close()
        assert all(a is not None and a.code == 0 and a.body == BODY for a in answers)
        assert all(a is not None and a.is_response for a in answers)

        # byte for byte the pod's encoding; a oneway request gets no answer
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            encode_request(105, 7, {"topic": "T"})
            + encode_request(105, 8, {"topic": "T"}, oneway=True)
            + encode_request(105, 2**31 - 1, {"topic": "T"})
        )
        want = encode_response(0, 7, JSON, body=BODY) + encode_response(
            0, 2**31 - 1, JSON, body=BODY
        )
        got = b""
        while len(got) < len(want):
            chunk = await asyncio.wait_for(reader.read(1 << 16), 10)
            assert chunk
            got += chunk
        assert got == want

        # a bad frame closes the connection
        writer.write(b"\x00\x00\x00\x02xx")
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()


def test_resp_generator_counts_valid_gets_and_refuses_missing_keys(
    redis_server: RedisServerProcess,
) -> None:
    with redis_sync.Redis.from_url(redis_server.url) as r:
        r.set("ceiling-test-route", BODY)
        r.set("ceiling-test-other", b"x" * 100)

    def load(key: str) -> dict[str, Any]:
        spec = LoadSpec(
            "127.0.0.1",
            redis_server.port,
            [key],
            connections=2,
            pipeline=8,
            duration_s=0.5,
            warmup_s=0.2,
            protocol="resp",
        )
        return run_route_load(spec)

    ok = load("ceiling-test-route")
    assert ok["ok"] > 0 and ok["errors"] == {}
    assert not load("ceiling-test-missing")["ok"]
    assert load("ceiling-test-missing")["errors"].keys() == {"redis_nil"}
    assert load("ceiling-test-other")["errors"].keys() == {"invalid_body"}
    with redis_sync.Redis.from_url(redis_server.url) as r:  # a shared server: leave nothing
        r.delete("ceiling-test-route", "ceiling-test-other")
    # the generator ran in this process: its loop policy (and so subprocesses) is untouched
    assert not type(asyncio.get_event_loop_policy()).__module__.startswith("uvloop")


def _result(rps: int, cpu: float, p99: float, errors: int = 0) -> dict[str, Any]:
    return {
        "throughput_rps": rps,
        "server_cpu_us_per_req": cpu,
        "latency_us": {"p99": p99},
        "server_rss_mib": 40.0,
        "errors": {"x": errors} if errors else {},
    }


def test_summary_takes_each_servers_median_and_the_median_of_per_round_ratios() -> None:
    c, r, p = "ceiling", "redis", "pod"
    rounds = [
        {c: _result(100, 2.0, 10), r: _result(300, 1.0, 5), p: _result(80, 3.0, 20)},
        {c: _result(90, 4.0, 30), r: _result(200, 2.0, 6), p: _result(70, 4.0, 40, 2)},
        {c: _result(120, 3.0, 20), r: _result(250, 1.0, 7), p: _result(95, 6.0, 30)},
    ]
    s = summarize(rounds)
    assert s["ceiling"]["throughput_rps"] == 100 and s["ceiling"]["server_cpu_us_per_req"] == 3.0
    assert s["pod"]["p99_us"] == 30 and s["pod"]["errors"] == 2
    assert "java" not in s
    # per round: 1.5, 1.0, 2.0 of the ceiling; 3.0, 2.0, 6.0 of Redis
    assert s["ratios"] == {"pod_cpu_vs_ceiling": 1.5, "pod_cpu_vs_redis": 3.0}


def test_a_tiny_run_measures_every_server(tmp_path: Path) -> None:
    out = tmp_path / "ceiling.json"
    proc = subprocess.run(
        [
            sys.executable, "-m", "namesrv_redis.cli", "bench", "ceiling",
            "--rounds", "1", "--duration", "1", "--warmup", "0.5",
            "--brokers", "2", "--topics", "5", "--connections", "2", "--procs", "1",
            "--json", str(out),
        ],
        env={**os.environ, "NAMESRV_LOG_LEVEL": "ERROR"},
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pod_cpu_vs_ceiling" in proc.stdout
    result = json.loads(out.read_text())
    median = result["median"]
    for name in ("ceiling", "redis", "pod"):
        assert median[name]["throughput_rps"] > 0, name
        assert median[name]["server_cpu_us_per_req"] > 0, name
        assert median[name]["errors"] == 0, name
    assert set(median["ratios"]) == {"pod_cpu_vs_ceiling", "pod_cpu_vs_redis"}
    assert len(result["rounds"]) == 1


def test_a_java_reference_that_is_not_there_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "namesrv_redis.cli", "bench", "ceiling", f"--java-ref={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "start-namesrv.sh" in proc.stderr
