"""Golden-data replay: every request captured from a real RocketMQ 4.9.8 NameServer (broker,
mqadmin, Java and C++ clients; tests/fixtures/*.jsonl, copied from shared/captures) is fed, in
order, to our processor over a real Redis; each answer must carry the same response code,
remark and header fields as the Java server's, and a body equal after normalising map and
list ordering."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from namesrv_redis.domain.route_reader import RouteReader
from namesrv_redis.remoting.codec import RemotingCommand
from namesrv_redis.remoting.handler_types import Connection
from namesrv_redis.remoting.processor import NamesrvProcessor
from namesrv_redis.rocketmq import fastjson
from namesrv_redis.settings.config import Settings
from namesrv_redis.store.keys import ORDER_TOPIC_CONFIG
from namesrv_redis.store.route_store import RouteStore

FIXTURES = Path(__file__).parent / "fixtures"
# Each chain is replayed on one fresh store. The probe capture was taken right after the C++
# one, against the broker that registered there, so it replays on top of it.
CHAINS = [
    ["frames.jsonl"],
    ["frames-compressed.jsonl"],
    ["frames-cpp.jsonl", "frames-probe.jsonl"],
]

GET_NAMESRV_CONFIG = 319
UPDATE_NAMESRV_CONFIG = 318


def load_frames(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line]


def command_of(frame: dict[str, Any]) -> RemotingCommand:
    h = frame["header"]
    body = base64.b64decode(frame["body_b64"]) if frame.get("body_b64") else None
    return RemotingCommand(
        code=h["code"],
        language=h.get("language", "JAVA"),
        version=h.get("version", 0),
        opaque=h.get("opaque", 0),
        flag=h.get("flag", 0),
        remark=h.get("remark"),
        ext_fields=h.get("extFields"),
        body=body,
        serialize_type=0 if frame["serialize_type"] == "JSON" else 1,
    )


def normalise(value: Any) -> Any:
    """Order-insensitive form of a decoded JSON body (RocketMQ's maps and sets are unordered)."""
    if isinstance(value, dict):
        return {str(k): normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [normalise(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return value


def decode_body(body: bytes | None) -> Any:
    if not body:
        return None
    try:
        return normalise(fastjson.loads(body))
    except ValueError:
        return body.decode("utf-8", "replace")


def is_strict_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def exchanges(frames: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(request, its captured response or None for oneway requests), in capture order."""
    responses = {(f["conn"], f["opaque"]): f for f in frames if f["direction"] == "response"}
    return [
        (f, responses.get((f["conn"], f["opaque"]))) for f in frames if f["direction"] == "request"
    ]


@pytest.mark.parametrize("chain", CHAINS, ids=lambda c: "+".join(c))
async def test_replay_matches_java_nameserver(
    real_redis: Any, namespace: str, chain: list[str]
) -> None:
    store = RouteStore(real_redis, namespace)
    await store.load_scripts()
    # The captured Java NameServer had an emptied ORDER_TOPIC_CONFIG namespace in its
    # kvConfig.json from earlier runs: its REGISTER_BROKER answers carry {"table":{}}.
    await store.put_kv(ORDER_TOPIC_CONFIG, "_", "_")
    await store.delete_kv(ORDER_TOPIC_CONFIG, "_")
    settings = Settings()
    processor = NamesrvProcessor(store, settings, RouteReader(store, enabled=False))
    connections: dict[tuple[str, int], Connection] = {}
    compared = 0
    for capture, (request, expected) in (
        (c, pair) for c in chain for pair in exchanges(load_frames(c))
    ):
        conn = connections.setdefault(
            (capture, request["conn"]),
            Connection(conn_id=f"{capture}/{request['conn']}", remote_addr=request["client"]),
        )
        cmd = command_of(request)
        response = await processor.process(cmd, conn)
        if expected is None or cmd.is_oneway:
            continue
        where = f"{capture}: {request['code_name']} opaque={cmd.opaque} ext={cmd.ext_fields}"
        eh = expected["header"]
        assert response.code == eh["code"], where
        assert response.remark == eh.get("remark"), where
        assert (response.ext_fields or {}) == (eh.get("extFields") or {}), where
        if cmd.code == GET_NAMESRV_CONFIG:
            text = (response.body or b"").decode()
            assert "listenPort=9876" in text and "orderMessageEnable=false" in text, where
        else:
            expected_body = (
                base64.b64decode(expected["body_b64"]) if expected.get("body_b64") else None
            )
            assert decode_body(response.body) == decode_body(expected_body), where
            if expected_body and response.body:  # the same JSON dialect: fastjson or strict
                assert is_strict_json(response.body) == is_strict_json(expected_body), where
        compared += 1
    assert compared > 0
