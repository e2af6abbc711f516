"""Golden frames of RocketMQ 5.3.3's controller (tests/fixtures/controller/README.md) replayed
against a pod on a real redis-server: every captured request is sent, in the captured order,
on one connection per captured connection, and answered with the captured response code and
equivalent headers and bodies. The master's connections close where the capture killed it;
the pod then elects the slave, as the Java controller did."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from namesrv_redis.process.pod import Pod
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.remoting.codec import RemotingCommand, decode_frame
from namesrv_redis.rocketmq import fastjson
from tests.test_controller_failover import started_pods, stop_pods

FRAMES = Path(__file__).parent / "fixtures" / "controller" / "frames-controller.jsonl"
NOT_COMPARED = {1005, 1010}
"""1005 names the leader (the Java controller's own address; here the pod's); 1010 lists
each server's own configuration."""


def frames() -> list[dict[str, Any]]:
    return [json.loads(line) for line in FRAMES.read_text().splitlines()]


def command(frame: dict[str, Any]) -> RemotingCommand:
    return decode_frame(base64.b64decode(frame["raw_b64"])[4:])


@pytest.fixture
async def pod(redis_server: Any, namespace: str) -> AsyncIterator[Pod]:
    # no 1008: the captured brokers' addresses (127.0.0.1:26911/26931) may be real brokers of
    # someone else's estate on this machine
    [p] = await started_pods(redis_server.url, namespace, 1, notify_broker_role_changed=False)
    try:
        yield p
    finally:
        await stop_pods([p])


def test_the_capture_holds_every_controller_code() -> None:
    codes = {f["code"] for f in frames() if f["type"] == "req"}
    assert codes == {904, 1001, 1002, 1003, 1004, 1005, 1006, 1008, 1009, 1010, 1011, 1012, 1013}


def _body(cmd: RemotingCommand) -> Any:
    return fastjson.loads(cmd.body) if cmd.body else None


async def test_golden_frames_are_answered_as_the_java_controller_answered(pod: Pod) -> None:
    assert pod.remoting is not None and pod.processor is not None
    port = pod.remoting.bound_port
    all_frames = frames()
    responses = {
        (f["via"], f["conn"], f["opaque"]): f
        for f in all_frames
        if f["source"] == "relay" and f["type"] == "resp"
    }
    clients: dict[tuple[str, int], RemotingClient] = {}
    killed = False
    compared = 0
    try:
        for f in all_frames:
            if f["source"] != "relay" or f["type"] != "req":
                continue  # the controller's own 1008 frames: checked by the failover tests
            if f["phase"] == "failover" and not killed:
                killed = True  # kill -9 of the master: its connections close
                for (via, conn), client in list(clients.items()):
                    if via == "master":
                        await client.close()
                        del clients[(via, conn)]
                await _until_master(pod, 2)
            key = (f["via"], f["conn"])
            if key not in clients:
                clients[key] = await RemotingClient.connect("127.0.0.1", port)
            req = command(f)
            answer = await clients[key].request(
                req.code, req.ext_fields, req.body, oneway=req.is_oneway, version=req.version
            )
            want = responses.get((f["via"], f["conn"], f["opaque"]))
            if req.is_oneway:
                assert answer is None and want is None
                continue
            assert answer is not None and want is not None, f
            golden = command(want)
            where = f"seq {f['seq']} code {req.code} {f['via']}"
            assert answer.code == golden.code, (where, answer.remark, golden.remark)
            if req.code in NOT_COMPARED:
                continue
            if golden.code == 0 or req.code in (1001, 1002):
                assert (answer.ext_fields or {}) == (golden.ext_fields or {}), where
                assert _body(answer) == _body(golden), where
            compared += 1
    finally:
        for client in clients.values():
            await client.close()
    assert killed and compared > 80


async def _until_master(pod: Pod, broker_id: int) -> None:
    assert pod.processor is not None and pod.processor.controller is not None
    store = pod.processor.controller.store
    for _ in range(200):
        g = await store.group("bset")
        if g is not None and g.master == broker_id:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"broker {broker_id} was not elected")
