"""Admin bodies are JSON whatever their ``Content-Type`` claims (``curl -d`` says form data):
in process for every declared type, a clear 400 for a body that is not JSON, an OpenAPI
document that still describes JSON bodies; and README's and docs' ``curl … -d`` commands run
verbatim (only the port rewritten) against a real pod."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from namesrv_redis.sim.broker import SimBroker
from tests.brokerthread import BrokerThread
from tests.conftest import RedisServerProcess
from tests.serverproc import ROOT, NamesrvProcess
from tests.test_http import ADMIN, Tier, register, sim_broker, tier  # noqa: F401

DECLARED_TYPES = [
    None,
    "application/json",
    "application/x-www-form-urlencoded",  # curl -d
    "text/plain",
    "application/json; charset=utf-8",
    "multipart/form-data; boundary=x",
]


@pytest.mark.parametrize("content_type", DECLARED_TYPES)
async def test_json_bodies_whatever_the_content_type(
    tier: Tier,  # noqa: F811
    content_type: str | None,
) -> None:
    c = await register(tier, sim_broker())
    headers = dict(ADMIN)
    if content_type is not None:
        headers["Content-Type"] = content_type
    async with tier.http() as http:
        put = await http.put("/v1/kv/NS/k", content=b'{"value": "v1"}', headers=headers)
        assert (put.status_code, put.json()) == (
            200,
            {"namespace": "NS", "key": "k", "value": "v1"},
        )
        assert (await http.get("/v1/kv/NS/k")).json()["value"] == "v1"
        off = await http.post(
            "/v1/brokers/broker-a/write-permission",
            content=b'{"enabled": false}',
            headers=headers,
        )
        assert off.status_code == 200 and off.json()["enabled"] is False, off.text
        assert off.json()["topicCount"] == 2
    await c.close()


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "application/json"])
async def test_a_body_that_is_not_json_is_a_clear_400(
    tier: Tier,  # noqa: F811
    content_type: str,
) -> None:
    headers = {**ADMIN, "Content-Type": content_type}
    async with tier.http() as http:
        for body in (b"value=v1", b'{"value": "v1"', b"{'value': 'v1'}"):
            r = await http.put("/v1/kv/NS/k", content=body, headers=headers)
            assert r.status_code == 400, r.text
            assert r.json()["error"] == "invalid_json"
            assert "not JSON" in r.json()["detail"]
        assert (await http.get("/v1/kv/NS/k")).status_code == 404  # nothing written
        # JSON of the wrong shape is still a validation error naming the field
        wrong = await http.put("/v1/kv/NS/k", content=b'{"valu": 1}', headers=headers)
        assert wrong.status_code == 422 and "body.value" in wrong.json()["detail"]


async def test_openapi_still_describes_json_bodies(tier: Tier) -> None:  # noqa: F811
    async with tier.http() as http:
        doc = (await http.get("/openapi.json")).json()
    for path, method, model in (
        ("/v1/kv/{namespace}/{key}", "put", "KvValue"),
        ("/v1/brokers/{brokerName}/write-permission", "post", "WritePermRequest"),
    ):
        op = doc["paths"][path][method]
        assert op["requestBody"]["content"] == {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}
        }
        assert op["responses"]["400"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorModel"
        }


# ------------------------------------------------------------------ the documented commands

TOKEN = "curl-test-token"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def documented_curl_with_body() -> list[tuple[str, str]]:
    """(page, command) for every ``curl`` with a ``-d`` body in README.md and docs/*.md,
    continuation lines joined, trailing comments dropped."""
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for _, block in FENCE.findall(page.read_text()):
            for command in block.replace("\\\n", " ").splitlines():
                command = command.split("  #", 1)[0].strip()
                if command.startswith("curl ") and re.search(r"\s-d\s", command):
                    found.append((page.name, command))
    return found


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


def test_the_docs_show_curl_with_a_body() -> None:
    pages = {page for page, _ in documented_curl_with_body()}
    commands = " ".join(c for _, c in documented_curl_with_body())
    assert "README.md" in pages
    assert "/write-permission" in commands and "/v1/kv/" in commands
    assert "Content-Type" not in commands  # the operator's short form is the one shown


@pytest.mark.parametrize(
    "page,command", documented_curl_with_body(), ids=lambda x: x[:60] if " " in x else x
)
def test_documented_curl_with_a_body_works(pod: NamesrvProcess, page: str, command: str) -> None:
    assert "localhost:8080" in command, command
    run = subprocess.run(
        ["bash", "-c", command.replace("localhost:8080", f"127.0.0.1:{pod.http_port}")],
        env={**os.environ, "NAMESRV_ADMIN_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 0, run.stderr
    answer: dict[str, Any] = orjson.loads(run.stdout)
    assert "error" not in answer, f"{page}: {command}\n{run.stdout}"
    with httpx.Client(base_url=f"http://127.0.0.1:{pod.http_port}") as http:
        if "/write-permission" in command:
            assert answer["brokerName"] == "broker-a" and answer["topicCount"] == 2
        else:
            kv = http.get(f"/v1/kv/{answer['namespace']}/{answer['key']}").json()
            assert kv["value"] == answer["value"]
