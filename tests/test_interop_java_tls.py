"""A JDK client (JSSE TLS, javax.crypto HmacSHA1: an implementation independent of ours)
against a real ``serve`` with ACL on: TLS in permissive mode with the self-signed test
certificate, as a RocketMQ client with ``-Dtls.enable=true`` connects, and signed requests
computed as RocketMQ's AclClientRPCHook computes them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from namesrv_redis.remoting.acl import sign_request
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.sim.broker import SimBroker
from tests.serverproc import NamesrvProcess

JAVA_CLIENT = Path(__file__).parent / "interop" / "java" / "TlsSignedClient.java"

pytestmark = pytest.mark.interop


def java() -> str:
    found = shutil.which("java")
    if found is None:
        pytest.fail("no JDK: .ci/run installs openjdk-17-jdk-headless")
    return found


@pytest.mark.parametrize("transport", ["tls", "plain"])
async def test_jdk_client_over_tls_with_signatures(
    redis_server: Any, namespace: str, tmp_path: Path, transport: str
) -> None:
    boot = tmp_path / "acl.yml"
    boot.write_text(
        "credentials:\n"
        "  - {accessKey: ops, secretKey: ops-secret, permission: admin}\n"
        "  - {accessKey: brk, secretKey: brk-secret, permission: broker}\n"
    )
    proc = NamesrvProcess(
        redis_server.url, namespace, "--acl", "--acl-bootstrap-file", str(boot)
    ).start()
    try:
        c = await RemotingClient.connect("127.0.0.1", proc.port)
        b = SimBroker("C1", "broker-a", "127.0.0.1:10911")
        b.add_topics(["JavaTopic", "Other"])
        ext, body = b.register_request()
        signed = sign_request("brk", "brk-secret", ext, body)
        resp = await c.request(RequestCode.REGISTER_BROKER, signed, body, version=b.version)
        assert resp is not None and resp.code == 0, resp
        out = subprocess.run(
            [java(), str(JAVA_CLIENT), "127.0.0.1", str(proc.port), transport, "ops",
             "ops-secret", "JavaTopic"],
            capture_output=True,
            timeout=120,
            check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr.decode()[-3000:]
        steps = {d["step"]: d for d in map(json.loads, out.stdout.decode().splitlines())}
        if transport == "tls":
            assert steps["route"]["tls"].startswith("TLSv1.3"), steps["route"]
        assert steps["route"]["code"] == 0 and '"brokerAddrs"' in steps["route"]["body"]
        assert steps["put_unsigned"]["code"] == 16
        assert "must be signed" in steps["put_unsigned"]["header"]
        assert steps["put_signed"]["code"] == 0, steps["put_signed"]
        assert steps["update_config_signed"]["code"] == 0, steps["update_config_signed"]
        assert steps["update_config_tampered"]["code"] == 16
        resp = await c.request(RequestCode.GET_KV_CONFIG, {"namespace": "java", "key": "k"})
        assert resp is not None and resp.code == 0 and resp.ext_fields == {"value": "v"}
        await c.close()
    finally:
        proc.stop()
