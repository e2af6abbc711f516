"""A simulated RocketMQ broker, for tests, interop runs and ``namesrv-redis bench``.

It registers with a name server exactly as a broker does (REGISTER_BROKER with a
RegisterBrokerBody, JSON or compressed, with its CRC), re-registers, unregisters, and can
serve as the broker end of a real client's send: it answers HEART_BEAT and
SEND_MESSAGE(_V2) so that a producer that resolved its route through the name server can
complete a send.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, cast

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.remoting.codec import FrameDecoder, RemotingCommand, encode_response
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.rocketmq.register_body import TopicConfig, crc32_masked, encode_register_body


@dataclass
class SimBroker:
    """One broker process (cluster, name, id, address) and the topics it reports."""

    cluster: str
    name: str
    addr: str
    broker_id: int = 0
    topics: dict[str, TopicConfig] = field(default_factory=dict)
    counter: int = 1
    timestamp: int = field(default_factory=lambda: int(time.time() * 1000))
    ha_addr: str = ""
    version: int = 409
    heartbeat_timeout_ms: int | None = None
    compressed: bool = False
    filter_servers: list[str] = field(default_factory=list)

    def add_topics(
        self, names: list[str], queues: int = 8, perm: int = 6, sys_flag: int = 0
    ) -> None:
        for n in names:
            self.topics[n] = TopicConfig(n, queues, queues, perm, sys_flag)
        self.bump()

    def remove_topics(self, names: list[str]) -> None:
        for n in names:
            self.topics.pop(n, None)
        self.bump()

    def bump(self) -> None:
        """A new data version, as the broker makes on every topic change."""
        self.counter += 1

    @property
    def data_version(self) -> dict[str, int]:
        return {"counter": self.counter, "timestamp": self.timestamp}

    def register_request(self) -> tuple[dict[str, str], bytes]:
        body = encode_register_body(
            self.data_version,
            list(self.topics.values()),
            self.filter_servers,
            compressed=self.compressed,
        )
        ext = {
            "brokerName": self.name,
            "brokerAddr": self.addr,
            "clusterName": self.cluster,
            "haServerAddr": self.ha_addr,
            "brokerId": str(self.broker_id),
            "compressed": "true" if self.compressed else "false",
            "bodyCrc32": str(crc32_masked(body)),
        }
        if self.heartbeat_timeout_ms is not None:
            ext["heartbeatTimeoutMillis"] = str(self.heartbeat_timeout_ms)
        return ext, body

    async def register(self, client: RemotingClient, timeout: float = 10.0) -> RemotingCommand:
        ext, body = self.register_request()
        resp = await client.request(
            RequestCode.REGISTER_BROKER, ext, body, version=self.version, timeout=timeout
        )
        assert resp is not None
        return resp

    async def unregister(self, client: RemotingClient) -> RemotingCommand:
        resp = await client.request(
            RequestCode.UNREGISTER_BROKER,
            {
                "brokerName": self.name,
                "brokerAddr": self.addr,
                "clusterName": self.cluster,
                "brokerId": str(self.broker_id),
            },
            version=self.version,
        )
        assert resp is not None
        return resp


class BrokerEndpoint(asyncio.Protocol):
    """The broker's own port: enough of a broker for a producer to complete a send."""

    _offsets = itertools.count()

    def __init__(self, received: list[RemotingCommand]) -> None:
        self.received = received
        self.decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        for cmd in self.decoder.feed(data):
            if cmd.is_response:
                continue
            self.received.append(cmd)
            ext: dict[str, str] | None = None
            if cmd.code in (RequestCode.SEND_MESSAGE, RequestCode.SEND_MESSAGE_V2):
                offset = next(self._offsets)
                ext = {
                    "msgId": f"7F00000100002A9F{offset:016X}",
                    "queueId": (cmd.ext_fields or {}).get(
                        "queueId", (cmd.ext_fields or {}).get("e", "0")
                    ),
                    "queueOffset": str(offset),
                }
            if not cmd.is_oneway:
                self.transport.write(
                    encode_response(0, cmd.opaque, cmd.serialize_type, ext_fields=ext)
                )


async def serve_broker_endpoint(
    host: str = "127.0.0.1", port: int = 0
) -> tuple[Any, list[RemotingCommand]]:
    """Start a broker endpoint; returns (asyncio server, list of requests it received)."""
    received: list[RemotingCommand] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: BrokerEndpoint(received), host, port)
    return server, received
