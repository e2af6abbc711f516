"""Real RocketMQ clients against the ``rocketmq_namesrv`` fixture (fakeredis, in-process):
the C++ client of the ``rocketmq`` wheel and the JavaScript client ``ali-ons`` resolve the
routes a helper registered, see TOPIC_NOT_EXIST for unknown topics, and lose a broker's
route after ``expire_broker``. The broker itself is a simulated endpoint that accepts sends,
so the C++ producer completes a real send through the route the fixture served."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from namesrv_redis.rocketmq.codes import RequestCode, ResponseCode
from namesrv_redis.sim.broker import serve_broker_endpoint
from namesrv_redis.testing import NameServer
from tests.test_interop import INTEROP, NODE_DIR, _node, run

pytestmark = pytest.mark.interop

CLUSTER = "FixtureCluster"
BROKER = "broker-fixture"
SENDS = (RequestCode.SEND_MESSAGE, RequestCode.SEND_MESSAGE_V2)


class Broker:
    def __init__(self, addr: str, received: list[Any]) -> None:
        self.addr, self.received = addr, received


@pytest.fixture
async def broker(rocketmq_namesrv: NameServer) -> AsyncIterator[Broker]:
    """A broker endpoint that accepts sends, registered with the fixture by its helper."""
    endpoint, received = await serve_broker_endpoint("127.0.0.1", 0)
    addr = f"127.0.0.1:{endpoint.sockets[0].getsockname()[1]}"
    rocketmq_namesrv.register_broker(CLUSTER, BROKER, addr, {"FixtureTopic": 4, "Other": 2})
    try:
        yield Broker(addr, received)
    finally:
        endpoint.close()


async def cpp_send(namesrv: NameServer, topic: str, timeout_ms: int = 3000) -> dict[str, Any]:
    [result] = await run(
        sys.executable, str(INTEROP / "cpp_client.py"), namesrv.address, topic, str(timeout_ms)
    )
    return result


async def test_cpp_client_sends_through_a_route_the_helper_registered(
    rocketmq_namesrv: NameServer, broker: Broker
) -> None:
    result = await cpp_send(rocketmq_namesrv, "FixtureTopic")
    assert result["ok"] and result["status"] == "OK", result
    sends = [c for c in broker.received if c.code in SENDS]
    assert sends and sends[0].language == "CPP"
    assert rocketmq_namesrv.requests[RequestCode.GET_ROUTEINFO_BY_TOPIC] >= 1


async def test_cpp_client_sees_unknown_topic(rocketmq_namesrv: NameServer, broker: Broker) -> None:
    result = await cpp_send(rocketmq_namesrv, "NoSuchTopic", 2000)
    assert not result["ok"] and "no route info" in result["error"].lower(), result
    assert not [c for c in broker.received if c.code in SENDS]
    assert rocketmq_namesrv.responses[ResponseCode.TOPIC_NOT_EXIST] >= 1


async def test_cpp_client_loses_an_expired_broker(
    rocketmq_namesrv: NameServer, broker: Broker
) -> None:
    assert rocketmq_namesrv.expire_broker(CLUSTER, broker.addr)
    result = await cpp_send(rocketmq_namesrv, "FixtureTopic", 2000)
    assert not result["ok"] and "no route info" in result["error"].lower(), result
    assert not [c for c in broker.received if c.code in SENDS]
    assert rocketmq_namesrv.responses[ResponseCode.TOPIC_NOT_EXIST] >= 1


async def test_node_client_routes_unknown_topic_and_expiry(
    rocketmq_namesrv: NameServer, broker: Broker
) -> None:
    route_js = str(NODE_DIR / "route.js")
    found, missing, done = await run(
        _node(), route_js, rocketmq_namesrv.address, "FixtureTopic", "NoSuchTopic"
    )
    assert found["ok"], found
    assert found["route"]["brokerDatas"][0]["brokerAddrs"]["0"] == broker.addr
    assert found["route"]["queueDatas"][0]["readQueueNums"] == 4
    assert not missing["ok"] and missing["code"] == ResponseCode.TOPIC_NOT_EXIST
    assert done["nameSrvList"] == [rocketmq_namesrv.address]

    assert rocketmq_namesrv.expire_broker(CLUSTER, broker.addr)
    gone, _ = await run(_node(), route_js, rocketmq_namesrv.address, "FixtureTopic")
    assert not gone["ok"] and gone["code"] == ResponseCode.TOPIC_NOT_EXIST
    assert rocketmq_namesrv.requests[RequestCode.GET_ROUTEINFO_BY_TOPIC] == 3
