"""The HTTP tier's documented ``curl`` commands, run verbatim by bash (only ``localhost:8080``
rewritten to the test pod's port) against a real pod with a broker registered: every line of
README.md's HTTP block, and every ``curl … -d`` (a body) in README.md and docs/*.md — which
must work as operators type them, without ``Content-Type: application/json``."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from namesrv_redis import __version__
from namesrv_redis.sim.broker import SimBroker
from tests.brokerthread import BrokerThread
from tests.conftest import RedisServerProcess
from tests.serverproc import ROOT, NamesrvProcess

TOKEN = "curl-test-token"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def commands(text: str) -> list[str]:
    """The curl commands of the text's code blocks: continuation lines joined, trailing
    comments dropped."""
    found = []
    for _, block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()
            if line.startswith("curl "):
                found.append(line)
    return found


def readme_http_block() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## HTTP/JSON") :]
    return commands(section[: section.index("\n## ", 1)])


def documented_curl_with_body() -> list[tuple[str, str]]:
    """(page, command) for every ``curl`` with a ``-d`` body in README.md and docs/*.md."""
    return [
        (page.name, command)
        for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
        for command in commands(page.read_text())
        if re.search(r"\s-d\s", command)
    ]


@pytest.fixture(scope="module")
def pod() -> Iterator[NamesrvProcess]:
    redis = RedisServerProcess().start()
    pod = NamesrvProcess(redis.url, "curl", "--admin-token", TOKEN).start()
    sim = SimBroker("DefaultCluster", "broker-a", "127.0.0.1:10911")
    sim.add_topics(["TopicTest", "Other"])
    broker = BrokerThread(pod.port, sim).start()
    yield pod
    broker.stop()
    pod.stop()
    redis.stop()


def run(pod: NamesrvProcess, command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    assert "localhost:8080" in command, command
    return subprocess.run(
        [
            "timeout",
            str(timeout),
            "bash",
            "-c",
            command.replace("localhost:8080", f"localhost:{pod.http_port}"),
        ],
        env={**os.environ, "NAMESRV_ADMIN_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=timeout + 10,
    )


def test_the_docs_show_curl_with_a_body() -> None:
    pages = {page for page, _ in documented_curl_with_body()}
    shown = " ".join(c for _, c in documented_curl_with_body())
    assert "README.md" in pages
    assert "/write-permission" in shown and "/v1/kv/" in shown
    assert "Content-Type" not in shown  # the operator's short form is the one shown


@pytest.mark.parametrize("page,command", documented_curl_with_body())
def test_documented_curl_with_a_body_works(pod: NamesrvProcess, page: str, command: str) -> None:
    done = run(pod, command)
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = orjson.loads(done.stdout)
    assert "error" not in answer, f"{page}: {command}\n{done.stdout}"
    if "/write-permission" in command:
        assert answer["brokerName"] == "broker-a" and answer["topicCount"] == 2
    else:
        with httpx.Client(base_url=f"http://127.0.0.1:{pod.http_port}") as http:
            kv = http.get(f"/v1/kv/{answer['namespace']}/{answer['key']}").json()
        assert kv["value"] == answer["value"]


def test_readme_http_block_works_as_written(pod: NamesrvProcess) -> None:
    block = readme_http_block()
    assert len(block) >= 10
    for command in block:
        if " -sN " in command:  # the event stream never ends: it must be open and quiet
            done = run(pod, command, timeout=3)
            assert done.returncode == 124 and done.stdout.startswith(": connected"), done
            continue
        if "index=" in command:  # a watch past the current version: it must wait
            done = run(pod, command, timeout=3)
            assert done.returncode == 124 and done.stdout == "", done
            continue
        done = run(pod, command)
        assert done.returncode == 0 and done.stdout, (command, done)
        assert '"error"' not in done.stdout, (command, done.stdout)
    outputs = {c: run(pod, c).stdout for c in block if "/v1/status" in c or "/v1/routes/" in c}
    for command, out in outputs.items():
        if "/v1/status" in command:
            assert orjson.loads(out)["version"] == __version__
        elif "index=" not in command:
            assert orjson.loads(out)["queueDatas"][0]["brokerName"] == "broker-a"
