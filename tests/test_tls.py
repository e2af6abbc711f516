"""Remoting TLS as RocketMQ speaks it: TLS and plain clients on one port (permissive), plain
clients refused (enforcing), mutual TLS, the self-signed test-mode certificate, reload, and
RocketMQ's option names (settings and ``tls.config.file``)."""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.remoting.processor import NamesrvProcessor
from namesrv_redis.remoting.server import RemotingServer
from namesrv_redis.remoting.tls import (
    ServerTls,
    TlsOptions,
    client_context_insecure,
    tls_options,
)
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.settings.config import load_settings
from namesrv_redis.settings.tls_modes import ClientAuth, TlsConfigError, TlsMode
from namesrv_redis.sim.broker import SimBroker
from namesrv_redis.store.route_store import RouteStore
from tests.conftest import cached_routes
from tests.tlscerts import TestCA

Start = Callable[[TlsOptions], Any]


@pytest.fixture
async def start_server(real_redis: Any, namespace: str) -> AsyncIterator[Start]:
    """start_server(opts) -> a running RemotingServer with that TLS configuration."""
    store = RouteStore(real_redis, namespace)
    await store.load_scripts()
    routes, events = await cached_routes(real_redis, store)
    from namesrv_redis.settings.config import Settings

    servers: list[RemotingServer] = []

    async def start(opts: TlsOptions) -> RemotingServer:
        processor = NamesrvProcessor(store, Settings(), routes)
        server = RemotingServer(processor, host="127.0.0.1", port=0, tls=ServerTls(opts))
        await server.start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        await s.stop(grace_s=1)
    await events.stop()


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


async def route_of(client: RemotingClient, topic: str = "T1") -> bytes:
    resp = await client.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic}, version=409)
    assert resp is not None and resp.code == 0, resp
    return bytes(resp.body or b"")


async def register(client: RemotingClient) -> None:
    b = SimBroker("C1", "broker-a", "127.0.0.1:10911")
    b.add_topics(["T1", "T2"])
    assert (await b.register(client)).code == 0


async def refused(port: int, ssl_ctx: ssl.SSLContext | None = None) -> bool:
    """True when the server closes the connection instead of answering."""
    try:
        c = await RemotingClient.connect("127.0.0.1", port, ssl=ssl_ctx)
    except (OSError, ssl.SSLError):
        return True
    try:
        await c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T1"}, timeout=5)
    except (ConnectionError, ssl.SSLError, OSError):
        return True
    except TimeoutError:
        return False
    finally:
        await c.close()
    return False


async def test_permissive_serves_tls_and_plain_on_one_port(start_server: Start) -> None:
    server = await start_server(TlsOptions(mode=TlsMode.PERMISSIVE))
    assert server.tls is not None and server.tls.self_signed
    tls_client = await RemotingClient.connect(
        "127.0.0.1", server.bound_port, ssl=client_context_insecure()
    )
    assert tls_client.transport is not None
    assert tls_client.transport.get_extra_info("ssl_object") is not None
    await register(tls_client)  # a broker with -Dtls.enable=true registers over TLS
    plain = await RemotingClient.connect("127.0.0.1", server.bound_port)
    assert plain.transport is not None
    assert plain.transport.get_extra_info("ssl_object") is None
    # cached and uncached answers, both ways, are the same bytes
    for _ in range(2):
        assert await route_of(tls_client) == await route_of(plain)
    assert not await refused(server.bound_port)
    assert not await refused(server.bound_port, client_context_insecure())
    await tls_client.close()
    await plain.close()


async def test_enforcing_refuses_plain_clients(start_server: Start) -> None:
    server = await start_server(TlsOptions(mode=TlsMode.ENFORCING))
    tls_client = await RemotingClient.connect(
        "127.0.0.1", server.bound_port, ssl=client_context_insecure()
    )
    await register(tls_client)
    assert b"brokerAddrs" in await route_of(tls_client)
    assert await refused(server.bound_port)
    await tls_client.close()


async def test_disabled_mode_is_the_plain_server(start_server: Start) -> None:
    server = await start_server(TlsOptions(mode=TlsMode.DISABLED))
    assert server.tls is None
    assert await refused(server.bound_port, client_context_insecure())
    plain = await RemotingClient.connect("127.0.0.1", server.bound_port)
    resp = await plain.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "nope"})
    assert resp is not None and resp.code == 17
    await plain.close()


async def test_mutual_tls_refuses_a_client_without_certificate(
    start_server: Start, ca: TestCA
) -> None:
    srv = ca.issue("server")
    opts = TlsOptions(
        mode=TlsMode.ENFORCING,
        cert_path=str(srv.cert),
        key_path=str(srv.key),
        trust_cert_path=str(ca.path),
        need_client_auth=ClientAuth.REQUIRE,
        test_mode=False,
    )
    server = await start_server(opts)
    verified = ssl.create_default_context(cafile=str(ca.path))
    assert await refused(server.bound_port, verified)  # no client certificate

    stranger = TestCA(ca.dir / ".." / ca.dir.name, name="other CA").issue("x", client=True)
    wrong = ssl.create_default_context(cafile=str(ca.path))
    wrong.load_cert_chain(stranger.cert, stranger.key)
    assert await refused(server.bound_port, wrong)  # a certificate of another CA

    me = ca.issue("client", client=True)
    good = ssl.create_default_context(cafile=str(ca.path))
    good.load_cert_chain(me.cert, me.key)
    c = await RemotingClient.connect("127.0.0.1", server.bound_port, ssl=good)
    await register(c)
    assert b"brokerAddrs" in await route_of(c)
    await c.close()


async def test_optional_client_auth_accepts_both(start_server: Start, ca: TestCA) -> None:
    srv = ca.issue("server")
    opts = TlsOptions(
        cert_path=str(srv.cert),
        key_path=str(srv.key),
        trust_cert_path=str(ca.path),
        need_client_auth=ClientAuth.OPTIONAL,
        test_mode=False,
    )
    server = await start_server(opts)
    c = await RemotingClient.connect(
        "127.0.0.1", server.bound_port, ssl=ssl.create_default_context(cafile=str(ca.path))
    )
    resp = await c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "none"})
    assert resp is not None and resp.code == 17
    await c.close()


def test_no_certificate_without_test_mode_refuses_to_start() -> None:
    with pytest.raises(TlsConfigError, match=r"needs a certificate.*tls.server.certPath"):
        ServerTls(TlsOptions(test_mode=False)).load()
    with pytest.raises(TlsConfigError, match="both"):
        ServerTls(TlsOptions(cert_path="/x.crt")).load()
    with pytest.raises(TlsConfigError, match=r"tls.server.trustCertPath"):
        ServerTls(TlsOptions(need_client_auth=ClientAuth.REQUIRE)).load()
    with pytest.raises(TlsConfigError, match="cannot load"):
        ServerTls(TlsOptions(cert_path="/nonexistent.crt", key_path="/nonexistent.key")).load()


async def test_reload_serves_the_new_certificate(start_server: Start, ca: TestCA) -> None:
    live_cert, live_key = ca.dir / "live.crt", ca.dir / "live.key"
    first, second = ca.issue("first"), ca.issue("second")
    live_cert.write_bytes(first.cert.read_bytes())
    live_key.write_bytes(first.key.read_bytes())
    opts = TlsOptions(
        cert_path=str(live_cert), key_path=str(live_key), test_mode=False, reload_interval_s=0.1
    )
    server = await start_server(opts)

    async def peer_cn() -> str:
        ctx = ssl.create_default_context(cafile=str(ca.path))
        c = await RemotingClient.connect("127.0.0.1", server.bound_port, ssl=ctx)
        assert c.transport is not None
        cert = c.transport.get_extra_info("peercert")
        await c.close()
        return str(dict(x[0] for x in cert["subject"])["commonName"])

    assert await peer_cn() == "first"
    # a broken file is refused, the old certificate stays
    live_key.write_bytes(b"garbage")
    assert server.tls is not None and not server.tls.reload()
    assert await peer_cn() == "first"
    # the file watch picks up the new pair
    live_cert.write_bytes(second.cert.read_bytes())
    live_key.write_bytes(second.key.read_bytes())
    os.utime(live_cert, (time.time() + 5, time.time() + 5))
    for _ in range(50):
        if await peer_cn() == "second":
            break
        await asyncio.sleep(0.1)
    assert await peer_cn() == "second"


async def test_client_that_sends_nothing_is_closed(start_server: Start) -> None:
    server = await start_server(replace(TlsOptions(), handshake_timeout_s=0.3))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
    assert await asyncio.wait_for(reader.read(1), 5) == b""
    writer.close()


def test_rocketmq_option_names_and_tls_config_file(tmp_path: Path, ca: TestCA) -> None:
    srv = ca.issue("server")
    conf = tmp_path / "namesrv.properties"
    conf.write_text(
        "tls.server.mode=enforcing\n"
        f"tls.server.certPath={srv.cert}\n"
        f"tls.server.keyPath={srv.key}\n"
        "tls.server.need.client.auth=require\n"
        f"tls.config.file={tmp_path / 'tls.properties'}\n"
    )
    (tmp_path / "tls.properties").write_text(
        "tls.server.mode=permissive\n"  # set explicitly in the config file: that wins
        f"tls.server.trustCertPath={ca.path}\n"
        "tls.test.mode.enable=false\n"
        "tls.server.keyPassword=secret\n"
    )
    opts = tls_options(load_settings(str(conf)))
    assert opts.mode is TlsMode.ENFORCING
    assert opts.need_client_auth is ClientAuth.REQUIRE
    assert opts.cert_path == str(srv.cert)
    assert opts.trust_cert_path == str(ca.path)
    assert opts.test_mode is False
    assert opts.key_password == "secret"
    with pytest.raises(ValueError, match=r"tls\.server\.mode"):
        load_settings(None, {"tls_server_mode": "sometimes"})
    env = {"NAMESRV_TLS_SERVER_MODE": "disabled", "NAMESRV_TLS_CONFIG_FILE": ""}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert tls_options(load_settings(None)).mode is TlsMode.DISABLED
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_key_password_never_reported() -> None:
    from namesrv_redis.settings.config import to_properties_text

    s = load_settings(None, {"tls_server_key_password": "hunter2", "redis_password": "pw"})
    text = to_properties_text(s)
    assert "hunter2" not in text and "tls.server.mode=permissive" in text


async def test_serve_defaults_to_permissive_with_a_self_signed_certificate(
    redis_server: Any, namespace: str
) -> None:
    """``namesrv-redis serve`` as a new user starts it: a TLS client gets routes."""
    from tests.serverproc import NamesrvProcess

    proc = NamesrvProcess(redis_server.url, namespace).start()
    try:
        c = await RemotingClient.connect("127.0.0.1", proc.port, ssl=client_context_insecure())
        await register(c)
        assert b"brokerAddrs" in await route_of(c)
        plain = await RemotingClient.connect("127.0.0.1", proc.port)
        assert b"brokerAddrs" in await route_of(plain)
        await plain.close()
        await c.close()
        assert "self-signed" in proc.log()
    finally:
        proc.stop()


async def test_serve_refuses_tls_without_certificate_when_test_mode_is_off(
    redis_server: Any, namespace: str
) -> None:
    from tests.serverproc import NamesrvProcess

    proc = NamesrvProcess(
        redis_server.url, namespace, env={"NAMESRV_TLS_TEST_MODE_ENABLE": "false"}
    )
    with pytest.raises(RuntimeError, match="needs a certificate"):
        proc.start()


async def test_serve_https_and_sighup_reload(redis_server: Any, namespace: str, ca: TestCA) -> None:
    import signal

    import httpx

    from tests.serverproc import NamesrvProcess

    srv = ca.issue("server")
    proc = NamesrvProcess(
        redis_server.url,
        namespace,
        "--http-tls",
        "--tls-mode",
        "enforcing",
        "--tls-cert",
        str(srv.cert),
        "--tls-key",
        str(srv.key),
        "--tls-test-mode",
        "false",
    ).start()
    try:
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(ca.path))) as h:
            r = await h.get(f"https://127.0.0.1:{proc.http_port}/healthz")
            assert r.status_code == 200 and r.json() == {"status": "ok"}
        async with httpx.AsyncClient() as h:
            with pytest.raises(httpx.HTTPError):
                await h.get(f"http://127.0.0.1:{proc.http_port}/healthz")
        verified = ssl.create_default_context(cafile=str(ca.path))
        c = await RemotingClient.connect("127.0.0.1", proc.port, ssl=verified)
        resp = await c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "none"})
        assert resp is not None and resp.code == 17
        await c.close()
        assert await refused(proc.port)  # enforcing
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGHUP)
        for _ in range(100):
            if "TLS certificate reloaded" in proc.log():
                break
            await asyncio.sleep(0.05)
        assert "TLS certificate reloaded" in proc.log()
    finally:
        proc.stop()
