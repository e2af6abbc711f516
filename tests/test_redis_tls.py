"""Redis reachable only over TLS, with a least-privilege ACL user: a real ``redis-server
--tls-port`` (certificates made here), the pod's minimal ACL (redis_tls.minimal_acl), a
full ``serve`` process doing registrations, routes, liveness and readiness through it, and
the option handling for standalone, Sentinel and Cluster URLs."""

from __future__ import annotations

import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.settings.config import Settings
from namesrv_redis.sim.broker import SimBroker
from namesrv_redis.store.connection import create_redis
from namesrv_redis.store.redis_tls import RedisOptionError, minimal_acl, redis_client_options
from tests.conftest import free_port, redis_server_binary
from tests.serverproc import NamesrvProcess
from tests.tlscerts import Issued, TestCA

PASSWORD = "pod-secret-pw"
SENTINEL_PASSWORD = "sentinel-secret-pw"
NAMESPACE = "tlsns"


class TlsRedis:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = TestCA(directory)
        self.server_cert = self.ca.issue("redis-server")
        self.client_cert = self.ca.issue("namesrv-pod", client=True)
        self.port = free_port()
        acl = directory / "users.acl"
        acl.write_text(
            "user default off\n"
            f"user namesrv on >{PASSWORD} {minimal_acl(NAMESPACE)}\n"
            "user admin on >admin-pw ~* &* +@all\n"
        )
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--tls-cert-file",
                str(self.server_cert.cert),
                "--tls-key-file",
                str(self.server_cert.key),
                "--tls-ca-cert-file",
                str(self.ca.path),
                "--tls-auth-clients",
                "yes",
                "--aclfile",
                str(acl),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(directory),
                "--notify-keyspace-events",
                "Ex",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"redis-server with TLS failed: {self.proc.stdout.read()!r}"  # type: ignore[union-attr]
                    ) from None
                time.sleep(0.05)
        raise RuntimeError("redis-server with TLS did not start")

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    def settings(self, cert: Issued | None = None, **kw: Any) -> Settings:
        cert = cert or self.client_cert
        return Settings(
            redis_url=self.url,
            redis_username="namesrv",
            redis_password=PASSWORD,
            redis_tls_ca_file=str(self.ca.path),
            redis_tls_cert_file=str(cert.cert),
            redis_tls_key_file=str(cert.key),
            **kw,
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[TlsRedis]:
    with tempfile.TemporaryDirectory(prefix="nsr-redis-tls-") as d:
        server = TlsRedis(Path(d))
        yield server
        server.stop()


def start_tls_sentinel(tls_redis: TlsRedis) -> tuple[subprocess.Popen[bytes], int]:
    """A redis-sentinel reachable only over TLS, with its own password, watching the TLS
    master (which it reaches with a client certificate and the admin user)."""
    cert = tls_redis.ca.issue("sentinel", both=True)
    port = free_port()
    d = tls_redis.dir
    conf = d / f"sentinel-{port}.conf"
    conf.write_text(
        f"port 0\ntls-port {port}\nbind 127.0.0.1\n"
        f"tls-cert-file {cert.cert}\ntls-key-file {cert.key}\n"
        f"tls-ca-cert-file {tls_redis.ca.path}\ntls-auth-clients yes\ntls-replication yes\n"
        f"requirepass {SENTINEL_PASSWORD}\ndir {d}\n"
        f"sentinel monitor mymaster 127.0.0.1 {tls_redis.port} 1\n"
        "sentinel auth-user mymaster admin\nsentinel auth-pass mymaster admin-pw\n"
    )
    binary = Path(redis_server_binary()).with_name("redis-sentinel")
    if not binary.exists():
        pytest.skip("no redis-sentinel binary")
    proc = subprocess.Popen(
        [str(binary), str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return proc, port
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"sentinel failed: {proc.stdout.read()!r}") from None  # type: ignore[union-attr]
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("sentinel did not start")


def client_of(settings: Settings, *, retries: bool = True) -> Any:
    assert settings.redis_url is not None
    extra: dict[str, Any] = {} if retries else {"retry": Retry(NoBackoff(), 0)}
    return create_redis(
        settings.redis_url, **redis_client_options(settings, settings.redis_url), **extra
    )


async def test_only_tls_with_the_pod_user(tls_redis: TlsRedis) -> None:
    good = client_of(tls_redis.settings())
    assert await good.ping()
    # least privilege: other namespaces' keys and unrelated commands are refused
    with pytest.raises(NoPermissionError):
        await good.get("nsr:{other}:version")
    with pytest.raises(NoPermissionError):
        await good.flushall()
    with pytest.raises(NoPermissionError):
        await good.config_set("notify-keyspace-events", "")
    await good.aclose()
    # wrong password
    bad = client_of(
        tls_redis.settings().model_copy(update={"redis_password": "nope"}), retries=False
    )
    with pytest.raises((AuthenticationError, ResponseError)):
        await bad.ping()
    await bad.aclose()
    # no client certificate: the TLS handshake is refused
    s = tls_redis.settings().model_copy(
        update={"redis_tls_cert_file": None, "redis_tls_key_file": None}
    )
    nocert = client_of(s, retries=False)
    with pytest.raises(Exception):  # noqa: B017 - ssl or connection error, by platform
        await nocert.ping()
    await nocert.aclose()
    # plain TCP on the TLS port gets nothing useful
    plain = aioredis.Redis(
        host="127.0.0.1", port=tls_redis.port, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    with pytest.raises(Exception):  # noqa: B017
        await plain.ping()
    await plain.aclose()


async def test_serve_over_tls_with_least_privilege_user(tls_redis: TlsRedis) -> None:
    s = tls_redis.settings()
    proc = NamesrvProcess(
        tls_redis.url,
        NAMESPACE,
        "--redis-username",
        "namesrv",
        "--redis-tls-ca-file",
        str(s.redis_tls_ca_file),
        "--redis-tls-cert-file",
        str(s.redis_tls_cert_file),
        "--redis-tls-key-file",
        str(s.redis_tls_key_file),
        env={"NAMESRV_REDIS_PASSWORD": PASSWORD},
    ).start()
    try:
        c = await RemotingClient.connect("127.0.0.1", proc.port)
        b = SimBroker("C1", "broker-a", "127.0.0.1:10911", heartbeat_timeout_ms=1500)
        b.add_topics(["T1", "T2"])
        assert (await b.register(c)).code == 0
        resp = await c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T1"})
        assert resp is not None and resp.code == 0 and b"brokerAddrs" in (resp.body or b"")
        put = {"namespace": "ns", "key": "k", "value": "v"}
        assert (await c.request(RequestCode.PUT_KV_CONFIG, put)).code == 0  # type: ignore[union-attr]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{proc.http_port}") as h:
            for _ in range(100):  # events subscribed, expiry cleaner subscribed, Redis pinged
                r = await h.get("/readyz")
                if r.status_code == 200:
                    break
                time.sleep(0.05)
            assert r.status_code == 200, r.text
        # the broker's connection closes: remove_broker.lua runs through the ACL user
        await c.close()
        c = await RemotingClient.connect("127.0.0.1", proc.port)
        for _ in range(100):
            resp = await c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T1"})
            if resp is not None and resp.code == 17:
                break
            time.sleep(0.05)
        assert resp is not None and resp.code == 17
        await c.close()
        assert "NOPERM" not in proc.log() and PASSWORD not in proc.log()
    finally:
        proc.stop()


def test_options_for_every_url_form(tmp_path: Path) -> None:
    base: dict[str, Any] = {
        "redis_username": "pod",
        "redis_password": "pw",
        "redis_tls_ca_file": "/ca.pem",
        "redis_tls_cert_file": "/c.pem",
        "redis_tls_key_file": "/k.pem",
    }
    kw = redis_client_options(Settings(**base), "rediss://h:6380/0")
    assert kw == {
        "username": "pod",
        "password": "pw",
        "ssl_check_hostname": True,
        "ssl_ca_certs": "/ca.pem",
        "ssl_certfile": "/c.pem",
        "ssl_keyfile": "/k.pem",
    }
    cluster = redis_client_options(
        Settings(**base, redis_tls=True), "redis+cluster://h1:7000,h2:7001"
    )
    assert cluster["ssl"] is True and cluster["username"] == "pod"
    sentinel = redis_client_options(
        Settings(
            **base,
            redis_tls=True,
            redis_sentinel_username="sentinel-user",
            redis_sentinel_password="spw",
        ),
        "redis+sentinel://s1:26379,s2:26379/mymaster",
    )
    assert sentinel["ssl"] is True and sentinel["password"] == "pw"
    assert sentinel["sentinel_kwargs"] == {
        "username": "sentinel-user",
        "password": "spw",
        "ssl": True,
        "ssl_check_hostname": True,
        "ssl_ca_certs": "/ca.pem",
        "ssl_certfile": "/c.pem",
        "ssl_keyfile": "/k.pem",
    }
    # the Sentinel and Cluster clients are built with them (no connection yet)
    for url, opts in (
        ("redis+sentinel://127.0.0.1:1/mymaster", sentinel),
        ("redis+cluster://127.0.0.1:1", cluster),
    ):
        client = create_redis(url, **opts)
        assert client is not None
    user_in_url = redis_client_options(Settings(), "redis+sentinel://pod:pw@s1:26379/m")
    assert user_in_url == {"username": "pod"}
    with pytest.raises(RedisOptionError, match="rediss://"):
        redis_client_options(Settings(redis_tls=True), "redis://h:6379")
    with pytest.raises(RedisOptionError, match="need TLS"):
        redis_client_options(Settings(redis_tls_ca_file="/ca"), "redis://h:6379")
    with pytest.raises(RedisOptionError, match="give one"):
        redis_client_options(Settings(redis_password="x"), "redis://:y@h:6379")
    with pytest.raises(RedisOptionError, match="both"):
        redis_client_options(Settings(redis_tls_cert_file="/c"), "rediss://h:6379")


def test_minimal_acl_names_only_the_namespace() -> None:
    rule = minimal_acl("prod", db=2)
    assert "~nsr:{prod}:*" in rule and "&nsr:{prod}:events" in rule
    assert "&__keyevent@2__:expired" in rule and "-@all" in rule
    assert "+evalsha" in rule and "+config|set" not in rule
    assert "+config|set" in minimal_acl("prod", config_set=True)
    assert "+cluster|slots +command" in minimal_acl("prod", cluster=True)
    assert ssl.OPENSSL_VERSION  # the tests above need an OpenSSL-backed ssl module


async def test_sentinel_over_tls_with_its_own_password(tls_redis: TlsRedis) -> None:
    from namesrv_redis.store.route_store import RouteStore

    proc, port = start_tls_sentinel(tls_redis)
    try:
        url = f"redis+sentinel://127.0.0.1:{port}/mymaster"
        s = tls_redis.settings().model_copy(
            update={
                "redis_url": url,
                "redis_tls": True,
                "redis_sentinel_password": SENTINEL_PASSWORD,
            }
        )
        client = client_of(s)
        store = RouteStore(client, NAMESPACE)
        await store.load_scripts()
        await store.put_kv("ns", "via-sentinel", "yes")
        assert await store.get_kv("ns", "via-sentinel") == "yes"
        await client.aclose()
        # the sentinel itself is TLS-only and refuses a client without its password
        tls_kw = {
            "ssl": True,
            "ssl_ca_certs": str(tls_redis.ca.path),
            "ssl_certfile": str(tls_redis.client_cert.cert),
            "ssl_keyfile": str(tls_redis.client_cert.key),
        }
        anonymous = aioredis.Redis(host="127.0.0.1", port=port, **tls_kw)  # type: ignore[arg-type]
        with pytest.raises((AuthenticationError, ResponseError)):
            await anonymous.execute_command("SENTINEL", "MASTERS")
        await anonymous.aclose()
        authed = aioredis.Redis(
            host="127.0.0.1",
            port=port,
            password=SENTINEL_PASSWORD,
            **tls_kw,  # type: ignore[arg-type]
        )
        assert await authed.ping()
        await authed.aclose()
    finally:
        proc.terminate()
        proc.wait(5)


async def test_cluster_over_tls_with_least_privilege_user(tls_redis: TlsRedis) -> None:
    """A one-node Redis Cluster reachable only over TLS; the pod's user (the minimal ACL plus
    what the cluster client needs) runs the scripts there."""
    from namesrv_redis.store.route_store import RouteStore
    from tests.redis_topologies import cluster_port

    d = tls_redis.dir
    port = cluster_port(set())  # its cluster bus port (port + 10000) must exist and be free
    node_cert = tls_redis.ca.issue("cluster-node", both=True)
    acl = d / f"cluster-{port}.acl"
    acl.write_text(
        "user default off\n"
        f"user namesrv on >{PASSWORD} {minimal_acl(NAMESPACE, cluster=True)}\n"
        "user admin on >admin-pw ~* &* +@all\n"
    )
    proc = subprocess.Popen(
        [
            redis_server_binary(),
            "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(node_cert.cert), "--tls-key-file", str(node_cert.key),
            "--tls-ca-cert-file", str(tls_redis.ca.path), "--tls-auth-clients", "yes",
            "--tls-cluster", "yes", "--cluster-enabled", "yes",
            "--cluster-config-file", str(d / f"nodes-{port}.conf"),
            "--aclfile", str(acl), "--save", "", "--appendonly", "no", "--dir", str(d),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    tls_kw: dict[str, Any] = {
        "ssl": True,
        "ssl_ca_certs": str(tls_redis.ca.path),
        "ssl_certfile": str(tls_redis.client_cert.cert),
        "ssl_keyfile": str(tls_redis.client_cert.key),
    }
    try:
        admin = aioredis.Redis(
            host="127.0.0.1", port=port, username="admin", password="admin-pw", **tls_kw
        )
        for _ in range(100):
            try:
                await admin.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
                break
            except Exception:
                time.sleep(0.05)
        for _ in range(100):
            info = await admin.execute_command("CLUSTER", "INFO")
            if b"cluster_state:ok" in info:
                break
            time.sleep(0.05)
        await admin.aclose()
        s = tls_redis.settings().model_copy(
            update={"redis_url": f"redis+cluster://127.0.0.1:{port}", "redis_tls": True}
        )
        client = client_of(s)
        store = RouteStore(client, NAMESPACE)
        await store.load_scripts()
        await store.put_kv("ns", "via-cluster", "yes")
        assert await store.get_kv("ns", "via-cluster") == "yes"
        await client.aclose()
    finally:
        proc.terminate()
        proc.wait(5)
