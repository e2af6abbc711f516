"""The Java NameServer's storage model, as the baseline of ``namesrv-redis bench persistence``.

A single process keeps the route tables in its own memory (RouteInfoManager's maps) and the KV
config in a map that it writes to a JSON file after every change, as KVConfigManager does
(``~/namesrv/kvConfig.json``: the whole table rewritten through a temporary file, no fsync).
A restart reads the file back; the routes start empty until brokers register again.

It speaks just the requests the benchmark sends (REGISTER_BROKER, GET_ROUTEINFO_BY_TOPIC,
PUT_KV_CONFIG, GET_KV_CONFIG) over the real remoting codec. It is a measuring stick for what
keeping state in the process costs and loses, not a name server:
``python -m namesrv_redis.bench.javalike --port P --kv-file F``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any, cast

import orjson

from namesrv_redis.bench.loadgen import install_uvloop
from namesrv_redis.remoting.codec import FrameDecoder, RemotingCommand, encode_response
from namesrv_redis.rocketmq.codes import RequestCode, ResponseCode
from namesrv_redis.rocketmq.register_body import decode_register_body


class JavaLikeState:
    def __init__(self, kv_file: Path) -> None:
        self.kv_file = kv_file
        self.topics: dict[str, dict[str, dict[str, Any]]] = {}  # topic -> broker name -> qd
        self.brokers: dict[str, dict[str, Any]] = {}  # broker name -> broker data
        self.kv: dict[str, dict[str, str]] = {}
        if kv_file.is_file():
            self.kv = orjson.loads(kv_file.read_bytes()).get("configTable", {})

    def register(self, cmd: RemotingCommand) -> tuple[int, str | None]:
        ext = cmd.ext_fields or {}
        name, addr = ext["brokerName"], ext["brokerAddr"]
        body = decode_register_body(cmd.body, ext.get("compressed") == "true", cmd.version)
        bd = self.brokers.setdefault(
            name, {"cluster": ext["clusterName"], "brokerName": name, "brokerAddrs": {}}
        )
        bd["brokerAddrs"][ext.get("brokerId", "0")] = addr
        for t in body.topic_configs.values():
            self.topics.setdefault(t.topic_name, {})[name] = {
                "brokerName": name,
                "readQueueNums": t.read_queue_nums,
                "writeQueueNums": t.write_queue_nums,
                "perm": t.perm,
                "topicSysFlag": t.topic_sys_flag,
            }
        return 0, None

    def route(self, topic: str) -> bytes | None:
        qds = self.topics.get(topic)
        if not qds:
            return None
        return orjson.dumps(
            {
                "queueDatas": list(qds.values()),
                "brokerDatas": [self.brokers[n] for n in qds if n in self.brokers],
            }
        )

    def put_kv(self, namespace: str, key: str, value: str) -> None:
        self.kv.setdefault(namespace, {})[key] = value
        tmp = self.kv_file.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({"configTable": self.kv}))
        os.replace(tmp, self.kv_file)


class _Protocol(asyncio.Protocol):
    def __init__(self, state: JavaLikeState) -> None:
        self.state = state
        self.decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        out = []
        for cmd in self.decoder.feed(data):
            code, remark, ext, body = self._handle(cmd)
            out.append(
                encode_response(
                    code, cmd.opaque, cmd.serialize_type, remark=remark, ext_fields=ext, body=body
                )
            )
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def _handle(
        self, cmd: RemotingCommand
    ) -> tuple[int, str | None, dict[str, str] | None, bytes | None]:
        ext = cmd.ext_fields or {}
        s = self.state
        if cmd.code == RequestCode.REGISTER_BROKER:
            code, remark = s.register(cmd)
            return code, remark, None, None
        if cmd.code == RequestCode.GET_ROUTEINFO_BY_TOPIC:
            body = s.route(ext.get("topic", ""))
            if body is None:
                return ResponseCode.TOPIC_NOT_EXIST, "No topic route info", None, None
            return 0, None, None, body
        if cmd.code == RequestCode.PUT_KV_CONFIG:
            s.put_kv(ext["namespace"], ext["key"], ext["value"])
            return 0, None, None, None
        if cmd.code == RequestCode.GET_KV_CONFIG:
            value = s.kv.get(ext.get("namespace", ""), {}).get(ext.get("key", ""))
            if value is None:
                return ResponseCode.QUERY_NOT_FOUND, "No config item", None, None
            return 0, None, {"value": value}, None
        return ResponseCode.REQUEST_CODE_NOT_SUPPORTED, "not in the baseline", None, None


async def serve(port: int, kv_file: Path) -> None:
    state = JavaLikeState(kv_file)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Protocol(state), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--kv-file", required=True)
    args = p.parse_args()
    install_uvloop()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, Path(args.kv_file)))


if __name__ == "__main__":
    main()
