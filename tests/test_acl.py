"""ACL on the wire: RocketMQ's AclClientRPCHook signatures, byte-exact (independently computed
vectors and the signed mqadmin frames captured from a real RocketMQ 4.9 installation), refused
unsigned or badly signed mutating requests that change nothing, permissions, the broker
address allowlist, credentials in Redis (Lua, bootstrap file, HTTP admin API), and the wiring
into ``serve``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from redis.exceptions import ResponseError

from namesrv_redis.remoting.acl import (
    MUTATING,
    AclConfigError,
    AclGuard,
    sign_request,
    signature,
    signing_content,
)
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.remoting.codec import RemotingCommand
from namesrv_redis.remoting.handler_types import Connection
from namesrv_redis.remoting.processor import NamesrvProcessor
from namesrv_redis.remoting.server import RemotingServer
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.settings.config import Settings
from namesrv_redis.sim.broker import SimBroker
from namesrv_redis.store.acl import AclStore, Credential, Permission, read_bootstrap_file
from namesrv_redis.store.route_store import RouteStore
from namesrv_redis.telemetry.metrics import ACL_REFUSALS
from tests.conftest import cached_routes
from tests.test_capture_replay import CHAINS, command_of, exchanges, load_frames

RC = RequestCode
ADMIN = Credential("rocketmq2", "12345678", Permission.ADMIN)
BROKER = Credential("broker-ak", "broker-secret", Permission.BROKER)


def java_signature(secret: bytes, content: bytes) -> str:
    return base64.b64encode(hmac.new(secret, content, hashlib.sha1).digest()).decode()


# ------------------------------------------------------------------ the signature itself


def test_signature_matches_independent_computation() -> None:
    ext = {"topic": "TopicTest", "AccessKey": "rocketmq2", "clusterName": "DefaultCluster"}
    body = b"\x00\x01body"
    # TreeMap order: AccessKey, clusterName, topic -> values concatenated, then the body
    content = b"rocketmq2" + b"DefaultCluster" + b"TopicTest" + body
    assert signing_content({**ext, "Signature": "ignored"}, body) == content
    assert signature("12345678", ext, body) == java_signature(b"12345678", content)
    # a fixed vector (HmacSHA1, Base64 with padding)
    assert signature("key", {"a": "The quick brown fox jumps over the lazy dog"}, None) == (
        "3nybhbi3iqa8ino29wqQcBydtNk="
    )


def test_keys_sort_as_java_strings() -> None:
    # U+1F600 is a surrogate pair in UTF-16 (0xD83D…): Java sorts it before U+FFFD
    ext = {"\ufffd": "B", "\U0001f600": "A", "Z": "z", "_": "u", "a": "l"}
    assert signing_content(ext, None) == b"zulAB"
    assert signing_content({"k": None}, None) == b"null"  # StringBuilder.append(null)
    assert signing_content({"k": "é"}, b"") == "é".encode()  # UTF-8


def signed_captured_requests() -> list[RemotingCommand]:
    out = []
    for chain in CHAINS:
        for capture in chain:
            for request, _ in exchanges(load_frames(capture)):
                cmd = command_of(request)
                if cmd.ext_fields and cmd.ext_fields.get("AccessKey") == "rocketmq2":
                    out.append(cmd)
    return out


class MemoryAcl:
    """An AclStore stand-in for guard unit tests."""

    def __init__(self, *creds: Credential) -> None:
        self.creds = {c.access_key: c for c in creds}

    async def all(self) -> dict[str, Credential]:
        return dict(self.creds)


def guard(*creds: Credential, **kw: Any) -> AclGuard:
    return AclGuard(MemoryAcl(*creds), **kw)  # type: ignore[arg-type]


CONN = Connection(conn_id="t/1", remote_addr="127.0.0.1:50000")


async def test_captured_mqadmin_signatures_verify() -> None:
    """mqadmin 4.9 with tools.yml accessKey=rocketmq2 secretKey=12345678, captured."""
    cmds = signed_captured_requests()
    codes = {c.code for c in cmds}
    assert {RC.PUT_KV_CONFIG, RC.DELETE_KV_CONFIG, RC.UPDATE_NAMESRV_CONFIG} <= codes
    assert {RC.WIPE_WRITE_PERM_OF_BROKER, RC.ADD_WRITE_PERM_OF_BROKER} <= codes
    g = guard(ADMIN, require_signed_reads=True)
    wrong = guard(Credential("rocketmq2", "87654321", Permission.ADMIN), require_signed_reads=True)
    for cmd in cmds:
        assert (await g.check(cmd, CONN)) is None, cmd
        refused = await wrong.check(cmd, CONN)
        assert refused is not None and refused.code == 16
        assert cmd.ext_fields is not None
        assert signature("12345678", cmd.ext_fields, cmd.body) == cmd.ext_fields["Signature"]


async def test_captured_unsigned_broker_registrations_are_refused() -> None:
    g = guard(ADMIN)
    seen = 0
    for chain in CHAINS:
        for capture in chain:
            for request, _ in exchanges(load_frames(capture)):
                cmd = command_of(request)
                if cmd.code == RC.REGISTER_BROKER:
                    refused = await g.check(cmd, CONN)
                    assert refused is not None and refused.code == 16
                    assert "must be signed" in (refused.remark or "")
                    seen += 1
    assert seen


async def test_permissions() -> None:
    g = guard(ADMIN, BROKER)
    for code in MUTATING:
        ext = sign_request(BROKER.access_key, BROKER.secret_key, {"brokerName": "b"}, b"x")
        cmd = RemotingCommand(code=code, ext_fields=ext, body=b"x")
        refused = await g.check(cmd, CONN)
        if code in (RC.REGISTER_BROKER, RC.UNREGISTER_BROKER, RC.BROKER_HEARTBEAT, 322):
            assert refused is None, code
        else:
            assert refused is not None and "needs admin" in (refused.remark or ""), code
        ext = sign_request(ADMIN.access_key, ADMIN.secret_key, {"brokerName": "b"}, b"x")
        assert await g.check(RemotingCommand(code=code, ext_fields=ext, body=b"x"), CONN) is None
    # a body changed after signing
    ext = sign_request(ADMIN.access_key, ADMIN.secret_key, {"namespace": "n"}, b"a=1")
    tampered = RemotingCommand(code=RC.UPDATE_NAMESRV_CONFIG, ext_fields=ext, body=b"a=2")
    refused = await g.check(tampered, CONN)
    assert refused is not None and "signature check failed" in (refused.remark or "")
    # reads are open unless asked
    read = RemotingCommand(code=RC.GET_ROUTEINFO_BY_TOPIC, ext_fields={"topic": "T"})
    assert await g.check(read, CONN) is None
    assert await guard(ADMIN, require_signed_reads=True).check(read, CONN) is not None


async def test_broker_address_allowlist() -> None:
    g = AclGuard(None, signatures=False, broker_allowlist="10.0.0.0/8, 127.0.0.1")
    reg = RemotingCommand(code=RC.REGISTER_BROKER, ext_fields={"brokerAddr": "10.1.2.3:10911"})
    assert await g.check(reg, CONN) is None
    outside = RemotingCommand(code=RC.REGISTER_BROKER, ext_fields={"brokerAddr": "8.8.8.8:10911"})
    refused = await g.check(outside, CONN)
    assert refused is not None and "brokerAddr address 8.8.8.8" in (refused.remark or "")
    far = Connection(conn_id="t/2", remote_addr="192.168.1.1:4000")
    refused = await g.check(reg, far)
    assert refused is not None and "connection address 192.168.1.1" in (refused.remark or "")
    six = AclGuard(None, signatures=False, broker_allowlist="::1/128,10.0.0.0/8")
    assert await six.check(reg, Connection(conn_id="t/3", remote_addr="::1:4000")) is None
    with pytest.raises(AclConfigError, match="not an address range"):
        AclGuard(None, broker_allowlist="10.0.0.0/8,nonsense")


# ------------------------------------------------------------------ credentials in Redis


async def test_acl_store_lua_validates_before_writing(redis: Any, namespace: str) -> None:
    store = RouteStore(redis, namespace)
    await store.load_scripts()
    acl = AclStore(store)
    assert await acl.put(ADMIN)
    assert not await acl.put(ADMIN)  # unchanged
    assert not await acl.put(Credential("rocketmq2", "other", Permission.BROKER), only_if_new=True)
    assert (await acl.get("rocketmq2")) == ADMIN
    for args in (
        ["put", "k", '{"secretKey":"s","permission":"root"}'],
        ["put", "k", '{"secretKey":"","permission":"admin"}'],
        ["put", "", '{"secretKey":"s","permission":"admin"}'],
        ["put", "k", "not json"],
        ["frobnicate", "k", ""],
    ):
        with pytest.raises(ResponseError, match="acl_write"):
            await store.scripts.acl_write(keys=[store.keys.prefix], args=args)
    assert set(await acl.all()) == {"rocketmq2"}
    assert await acl.delete("rocketmq2") and not await acl.delete("rocketmq2")


async def test_bootstrap_file(redis: Any, namespace: str, tmp_path: Path) -> None:
    store = RouteStore(redis, namespace)
    await store.load_scripts()
    acl = AclStore(store)
    f = tmp_path / "acl.yml"
    f.write_text(
        "credentials:\n"
        "  - {accessKey: rocketmq2, secretKey: 12345678, permission: admin}\n"
        "  - {accessKey: broker-ak, secretKey: broker-secret, permission: broker}\n"
    )
    assert await acl.bootstrap(str(f)) == 2
    await acl.put(Credential("broker-ak", "rotated", Permission.BROKER))
    assert await acl.bootstrap(str(f)) == 0  # existing credentials are left as they are
    assert (await acl.get("broker-ak")) == Credential("broker-ak", "rotated", Permission.BROKER)
    plain = tmp_path / "plain_acl.yml"  # RocketMQ's own file: admin accounts only
    plain.write_text(
        "accounts:\n"
        "  - accessKey: RocketMQ\n    secretKey: '12345678'\n    admin: false\n"
        "  - accessKey: rocketmq2\n    secretKey: 12345678\n    admin: true\n"
    )
    assert read_bootstrap_file(str(plain)) == [ADMIN]
    bad = tmp_path / "bad.json"
    bad.write_text('{"credentials": [{"accessKey": "x", "secretKey": "", "permission": "admin"}]}')
    with pytest.raises(ValueError, match="entry 0"):
        read_bootstrap_file(str(bad))


# ------------------------------------------------------------------ over the wire


class AclServer:
    def __init__(self, server: RemotingServer, store: RouteStore) -> None:
        self.server, self.store = server, store

    async def client(self) -> RemotingClient:
        return await RemotingClient.connect("127.0.0.1", self.server.bound_port)


@pytest.fixture
async def acl_server(real_redis: Any, namespace: str) -> AsyncIterator[AclServer]:
    store = RouteStore(real_redis, namespace)
    await store.load_scripts()
    acl = AclStore(store)
    await acl.put(ADMIN)
    await acl.put(BROKER)
    routes, events = await cached_routes(real_redis, store)
    processor = NamesrvProcessor(store, Settings(), routes)
    processor.guard = AclGuard(acl, refresh_s=0)
    server = RemotingServer(processor, host="127.0.0.1", port=0)
    await server.start()
    yield AclServer(server, store)
    await server.stop(grace_s=1)
    await events.stop()


MUTATING_REQUESTS: list[tuple[int, dict[str, str], bytes | None]] = [
    (RC.PUT_KV_CONFIG, {"namespace": "ns", "key": "k", "value": "changed"}, None),
    (RC.DELETE_KV_CONFIG, {"namespace": "ns", "key": "k"}, None),
    (RC.WIPE_WRITE_PERM_OF_BROKER, {"brokerName": "broker-a"}, None),
    (RC.ADD_WRITE_PERM_OF_BROKER, {"brokerName": "broker-a"}, None),
    (RC.DELETE_TOPIC_IN_NAMESRV, {"topic": "T1"}, None),
    (RC.UPDATE_NAMESRV_CONFIG, {}, b"orderMessageEnable=true"),
    (
        RC.UNREGISTER_BROKER,
        {
            "brokerName": "broker-a",
            "brokerAddr": "127.0.0.1:10911",
            "clusterName": "C1",
            "brokerId": "0",
        },
        None,
    ),
]


async def snapshot(store: RouteStore) -> Any:
    info = await store.get_cluster_info()
    routes = {t: await store.get_route(t) for t in await store.all_topics()}
    return (
        info.to_wire(),
        {t: r.to_wire() if r else None for t, r in routes.items()},
        await store.list_kv("ns"),
        await store.get_config(),
    )


async def test_unsigned_and_badly_signed_requests_change_nothing(
    acl_server: AclServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    c = await acl_server.client()
    b = SimBroker("C1", "broker-a", "127.0.0.1:10911")
    b.add_topics(["T1", "T2"])
    ext, body = b.register_request()
    resp = await c.request(RC.REGISTER_BROKER, ext, body, version=b.version)
    assert resp is not None and resp.code == 16 and "must be signed" in (resp.remark or "")
    assert await acl_server.store.get_route("T1") is None
    signed = sign_request(BROKER.access_key, BROKER.secret_key, ext, body)
    resp = await c.request(RC.REGISTER_BROKER, signed, body, version=b.version)
    assert resp is not None and resp.code == 0, resp
    put = sign_request(ADMIN.access_key, ADMIN.secret_key, MUTATING_REQUESTS[0][1], None)
    assert (await c.request(RC.PUT_KV_CONFIG, {**put, "value": "v0"})).code == 16  # type: ignore[union-attr]
    put = sign_request(
        ADMIN.access_key, ADMIN.secret_key, {**MUTATING_REQUESTS[0][1], "value": "v0"}, None
    )
    assert (await c.request(RC.PUT_KV_CONFIG, put)).code == 0  # type: ignore[union-attr]

    before = await snapshot(acl_server.store)
    counter = ACL_REFUSALS.labels("216", "unsigned")
    refusals_before = counter._value.get()
    for code, fields, body_ in MUTATING_REQUESTS:
        for ext_ in (
            fields,  # unsigned
            sign_request(ADMIN.access_key, "wrong-secret", fields, body_),
            sign_request("nobody", "x", fields, body_),
            sign_request(BROKER.access_key, BROKER.secret_key, fields, body_)
            if code != RC.UNREGISTER_BROKER
            else fields,
        ):
            resp = await c.request(code, ext_, body_)
            assert resp is not None and resp.code == 16, (code, ext_, resp)
            assert resp.remark and resp.remark.startswith("ACL: ")
    assert await snapshot(acl_server.store) == before
    assert counter._value.get() == refusals_before + 1
    for code, fields, body_ in MUTATING_REQUESTS:  # signed by admin: all work
        resp = await c.request(
            code, sign_request(ADMIN.access_key, ADMIN.secret_key, fields, body_), body_
        )
        assert resp is not None and resp.code in (0, 17), (code, resp)
    assert await snapshot(acl_server.store) != before
    # reads stay open
    resp = await c.request(RC.GET_KV_CONFIG, {"namespace": "ns", "key": "k"})
    assert resp is not None and resp.code == 22
    assert ADMIN.secret_key not in caplog.text and BROKER.secret_key not in caplog.text
    await c.close()


async def test_signed_reads_required_bypass_no_cache(acl_server: AclServer) -> None:
    guard_ = acl_server.server.processor.guard
    assert guard_ is not None
    c = await acl_server.client()
    b = SimBroker("C1", "broker-a", "127.0.0.1:10911")
    b.add_topics(["T1", "T2"])  # a first registration with one topic is refused (RocketMQ 5)
    ext, body = b.register_request()
    signed = sign_request(BROKER.access_key, BROKER.secret_key, ext, body)
    assert (await c.request(RC.REGISTER_BROKER, signed, body, version=b.version)).code == 0  # type: ignore[union-attr]
    for _ in range(2):  # the second answer would come from the pod cache
        assert (await c.request(RC.GET_ROUTEINFO_BY_TOPIC, {"topic": "T1"})).code == 0  # type: ignore[union-attr]
    guard_.require_signed_reads = True
    resp = await c.request(RC.GET_ROUTEINFO_BY_TOPIC, {"topic": "T1"})
    assert resp is not None and resp.code == 16
    q = sign_request(BROKER.access_key, BROKER.secret_key, {"topic": "T1"}, None)
    resp = await c.request(RC.GET_ROUTEINFO_BY_TOPIC, q)
    assert resp is not None and resp.code == 0 and b"brokerAddrs" in (resp.body or b"")
    await c.close()


async def test_serve_with_acl_and_http_admin_api(
    redis_server: Any, namespace: str, tmp_path: Path
) -> None:
    from tests.serverproc import NamesrvProcess

    boot = tmp_path / "acl.yml"
    boot.write_text(
        "credentials:\n  - {accessKey: rocketmq2, secretKey: 12345678, permission: admin}\n"
    )
    proc = NamesrvProcess(
        redis_server.url,
        namespace,
        "--admin-token",
        "tok",
        env={"NAMESRV_ACL_ENABLE": "true", "NAMESRV_ACL_BOOTSTRAP_FILE": str(boot)},
    ).start()
    try:
        c = await RemotingClient.connect("127.0.0.1", proc.port)
        fields = {"namespace": "ns", "key": "k", "value": "v"}
        resp = await c.request(RC.PUT_KV_CONFIG, fields)
        assert resp is not None and resp.code == 16
        resp = await c.request(
            RC.PUT_KV_CONFIG, sign_request("rocketmq2", "12345678", fields, None)
        )
        assert resp is not None and resp.code == 0
        base = f"http://127.0.0.1:{proc.http_port}"
        auth = {"Authorization": "Bearer tok"}
        async with httpx.AsyncClient(base_url=base) as h:
            assert (await h.get("/v1/acl/credentials")).status_code == 401
            r = await h.put(
                "/v1/acl/credentials/brk",
                json={"secretKey": "s3cret", "permission": "broker"},
                headers=auth,
            )
            assert r.status_code == 200, r.text
            r = await h.get("/v1/acl/credentials", headers=auth)
            assert r.json() == {
                "credentials": [
                    {"accessKey": "brk", "permission": "broker"},
                    {"accessKey": "rocketmq2", "permission": "admin"},
                ]
            }
            assert "s3cret" not in r.text and "12345678" not in r.text
            bad = await h.put(
                "/v1/acl/credentials/x", json={"secretKey": "s", "permission": "root"}, headers=auth
            )
            assert bad.status_code == 422
            metrics = (await h.get("/metrics")).text
            assert 'namesrv_acl_refusals_total{code="100",reason="unsigned"} 1.0' in metrics
            assert (await h.delete("/v1/acl/credentials/brk", headers=auth)).status_code == 204
            assert (await h.delete("/v1/acl/credentials/brk", headers=auth)).status_code == 404
        await c.close()
        assert "12345678" not in proc.log() and "s3cret" not in proc.log()
    finally:
        proc.stop()


def test_admin_refused_on_public_bind_without_token() -> None:
    from namesrv_redis.http.exposure import admin_exposed_without_token

    assert admin_exposed_without_token(Settings(http_host="0.0.0.0"))
    assert not admin_exposed_without_token(Settings(http_host="127.0.0.1"))
    assert not admin_exposed_without_token(
        Settings(http_host="0.0.0.0", admin_token=SecretStr("t"))
    )


async def test_admin_calls_disabled_on_public_bind_without_token(
    redis: Any, namespace: str
) -> None:
    from namesrv_redis.http.app import create_app

    store = RouteStore(redis, namespace)
    await store.load_scripts()

    async def ready() -> str | None:
        return None

    for settings, status in (
        (Settings(http_host="0.0.0.0"), 403),
        (Settings(http_host="0.0.0.0", allow_unauthenticated_admin=True), 200),
        (Settings(http_host="127.0.0.1"), 200),
        (Settings(http_host="0.0.0.0", admin_token=SecretStr("t")), 401),
    ):
        app = create_app(
            store,
            events=None,  # type: ignore[arg-type]
            settings_provider=lambda s=settings: s,
            readiness=ready,
            acl=AclStore(store),
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as h:
            r = await h.put("/v1/kv/ns/k", json={"value": "v"})
            assert r.status_code == status, (settings, r.text)
            r = await h.get("/v1/acl/credentials")
            assert r.status_code == status, (settings, r.text)
            if status == 403:
                assert r.json()["error"] == "admin_disabled"


def test_acl_command(redis_server: Any, namespace: str, capsys: pytest.CaptureFixture[str]) -> None:
    from namesrv_redis.cli import main

    common = ["--redis-url", redis_server.url, "--namespace", namespace]
    assert main(["acl", "put", "ops", "--secret-key", "s3", "--permission", "admin", *common]) == 0
    assert main(["acl", "put", "brk", "--secret-key", "s4", "--permission", "broker", *common]) == 0
    capsys.readouterr()
    assert main(["acl", "list", *common]) == 0
    out = capsys.readouterr().out
    assert out == "brk\tbroker\nops\tadmin\n"
    assert main(["acl", "delete", "brk", *common]) == 0
    assert main(["acl", "delete", "brk", *common]) == 1
    assert main(["acl", "put", *common]) == 2


async def test_unsigned_brokers_from_the_allowlist() -> None:
    """RocketMQ 4.x brokers do not sign: with aclAllowUnsignedBrokers, the allowlist decides."""
    g = AclGuard(
        MemoryAcl(ADMIN),  # type: ignore[arg-type]
        broker_allowlist="127.0.0.0/8",
        unsigned_brokers=True,
    )
    reg = RemotingCommand(code=RC.REGISTER_BROKER, ext_fields={"brokerAddr": "127.0.0.1:10911"})
    assert await g.check(reg, CONN) is None
    far = RemotingCommand(code=RC.REGISTER_BROKER, ext_fields={"brokerAddr": "10.0.0.1:10911"})
    assert (await g.check(far, CONN)) is not None
    qdv = RemotingCommand(code=RC.QUERY_DATA_VERSION, ext_fields={"brokerAddr": "8.8.8.8:1"})
    assert (await g.check(qdv, CONN)) is not None
    kv = RemotingCommand(code=RC.PUT_KV_CONFIG, ext_fields={"namespace": "n", "key": "k"})
    refused = await g.check(kv, CONN)
    assert refused is not None and "must be signed" in (refused.remark or "")
    with pytest.raises(AclConfigError, match="needs aclBrokerAddrAllowlist"):
        AclGuard(MemoryAcl(), unsigned_brokers=True)  # type: ignore[arg-type]


def test_security_options_cannot_be_changed_at_run_time() -> None:
    """UPDATE_NAMESRV_CONFIG (even signed by an admin) never turns ACL or TLS off."""
    from namesrv_redis.domain.runtime_config import ConfigRefused, apply_stored, apply_update

    s = Settings(acl_enable=True)
    props = {
        "aclEnable": "false",
        "aclRequireSignedReads": "false",
        "aclBrokerAddrAllowlist": "0.0.0.0/0",
        "tls.server.mode": "disabled",
        "allowUnauthenticatedAdmin": "true",
        "redisPassword": "x",
    }
    for key, value in props.items():  # each one alone is refused over the wire
        with pytest.raises(ConfigRefused):
            apply_update(s, {key: value})
    new, skipped = apply_stored(s, props)  # and never applied from what Redis holds
    assert sorted(skipped) == sorted(props)
    assert new.acl_enable and new.tls_server_mode == "permissive"
