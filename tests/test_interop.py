"""Interoperability with real RocketMQ clients from the registries, against a real
``namesrv-redis serve`` process: the C++ client (bundled in the ``rocketmq`` 0.4.4 wheel)
and the pure JavaScript client ``ali-ons`` (npm). A simulated broker registers over the wire;
each client must resolve that topic's route through our server (the C++ producer then sends
a message to the broker endpoint the route names) and must see "topic not found" for an
unknown topic."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.sim.broker import SimBroker, serve_broker_endpoint
from tests.conftest import RedisServerProcess
from tests.serverproc import NamesrvProcess

INTEROP = Path(__file__).parent / "interop"
NODE_DIR = INTEROP / "node"

pytestmark = pytest.mark.interop


class Estate:
    """A running name server with one registered broker whose endpoint accepts sends."""

    def __init__(self, namesrv: NamesrvProcess, broker: SimBroker, received: list[Any]) -> None:
        self.namesrv, self.broker, self.received = namesrv, broker, received


@pytest.fixture
async def estate(redis_server: RedisServerProcess, namespace: str) -> AsyncIterator[Estate]:
    namesrv = NamesrvProcess(redis_server.url, namespace).start()
    endpoint, received = await serve_broker_endpoint("127.0.0.1", 0)
    port = endpoint.sockets[0].getsockname()[1]
    broker = SimBroker(cluster="InteropCluster", name="broker-interop", addr=f"127.0.0.1:{port}")
    broker.add_topics(["InteropTopic", "OtherTopic"], queues=4)
    client = await RemotingClient.connect("127.0.0.1", namesrv.port)
    resp = await broker.register(client)
    assert resp.code == 0
    try:
        yield Estate(namesrv, broker, received)
    finally:
        await client.close()
        endpoint.close()
        namesrv.stop()


async def run(*cmd: str, timeout: float = 60) -> list[dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        raise
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}): {err.decode()[-2000:]}"
    return [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]


async def test_cpp_client_sends_through_our_route(estate: Estate) -> None:
    [result] = await run(
        sys.executable, str(INTEROP / "cpp_client.py"), estate.namesrv.addr, "InteropTopic"
    )
    assert result["ok"], result
    assert result["status"] == "OK", result
    sends = [
        c
        for c in estate.received
        if c.code in (RequestCode.SEND_MESSAGE, RequestCode.SEND_MESSAGE_V2)
    ]
    assert sends, "the C++ producer never reached the broker our route named"
    ext = sends[0].ext_fields or {}
    assert "InteropTopic" in (ext.get("topic"), ext.get("b"))
    assert sends[0].language == "CPP"


async def test_cpp_client_sees_unknown_topic(estate: Estate) -> None:
    [result] = await run(
        sys.executable, str(INTEROP / "cpp_client.py"), estate.namesrv.addr, "NoSuchTopic", "2000"
    )
    assert not result["ok"]
    assert "route" in result["error"].lower() or "topic" in result["error"].lower(), result
    assert not [
        c
        for c in estate.received
        if c.code in (RequestCode.SEND_MESSAGE, RequestCode.SEND_MESSAGE_V2)
    ]


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "ali-ons").is_dir():
        pytest.fail("ali-ons is not installed: run npm install --prefix tests/interop/node")
    return node


async def test_node_client_routes_and_unknown_topic(estate: Estate) -> None:
    lines = await run(
        _node(), str(NODE_DIR / "route.js"), estate.namesrv.addr, "InteropTopic", "NoSuchTopic"
    )
    found, missing, done = lines
    assert found["ok"] and found["topic"] == "InteropTopic"
    route = found["route"]
    assert route["brokerDatas"][0]["brokerAddrs"]["0"] == estate.broker.addr
    assert route["queueDatas"][0] == {
        "brokerName": "broker-interop",
        "perm": 6,
        "readQueueNums": 4,
        "topicSysFlag": 0,
        "writeQueueNums": 4,
    }
    assert not missing["ok"] and missing["code"] == 17
    assert done["nameSrvList"] == [estate.namesrv.addr]


async def test_node_client_finds_us_through_the_address_server(estate: Estate) -> None:
    url = f"http://127.0.0.1:{estate.namesrv.http_port}/rocketmq/nsaddr"
    for _ in range(50):  # the pod advertises itself right after start
        lines = await run(_node(), str(NODE_DIR / "route.js"), url, "InteropTopic")
        if lines and lines[-1].get("nameSrvList") == [estate.namesrv.addr]:
            break
        await asyncio.sleep(0.1)
    found, done = lines
    assert done["nameSrvList"] == [estate.namesrv.addr]
    assert found["ok"] and found["route"]["brokerDatas"][0]["brokerName"] == "broker-interop"
