"""The embedded default keeps routes and KV config across a restart of ``serve``, and across a
``kill -9`` of its Redis, as far as each ``--persistence`` mode promises
(docs/persistence.md); a second pod on the same data directory is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.sim.broker import SimBroker
from namesrv_redis.store.datadir import DataDirLock, prepare_data_dir
from tests.serverproc import ROOT, NamesrvProcess

pytestmark = pytest.mark.slow


async def _write(addr: str, tag: str) -> RemotingClient:
    """Register a broker with topic ``t-<tag>`` and put KV ``ORDER_TOPIC_CONFIG/k-<tag>``.
    Returns the broker's connection (closing it would remove the broker)."""
    host, port = addr.split(":")
    client = await RemotingClient.connect(host, int(port))
    sim = SimBroker("DurCluster", f"dur-broker-{tag}", f"127.0.0.1:{31000 + len(tag)}")
    sim.add_topics([f"t-{tag}", f"t2-{tag}"])  # (a first registration of one topic is refused)
    assert (await sim.register(client)).code == 0
    resp = await client.request(
        RequestCode.PUT_KV_CONFIG,
        {"namespace": "ORDER_TOPIC_CONFIG", "key": f"k-{tag}", "value": f"v-{tag}"},
    )
    assert resp is not None and resp.code == 0
    return client


async def _read(addr: str, tag: str) -> tuple[bool, str | None]:
    """(route of ``t-<tag>`` answered, value of KV ``k-<tag>``), asked of the pod."""
    host, port = addr.split(":")
    client = await RemotingClient.connect(host, int(port))
    try:
        route = await client.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": f"t-{tag}"})
        kv = await client.request(
            RequestCode.GET_KV_CONFIG, {"namespace": "ORDER_TOPIC_CONFIG", "key": f"k-{tag}"}
        )
    finally:
        await client.close()
    assert route is not None and kv is not None
    value = kv.ext_fields.get("value") if kv.code == 0 else None
    return route.code == 0 and b"dur-broker" in (route.body or b""), value


def _serve(data_dir: Path, mode: str | None) -> NamesrvProcess:
    extra = ["--data-dir", str(data_dir)]
    if mode is not None:
        extra += ["--persistence", mode]
    return NamesrvProcess(None, "default", *extra)


def _embedded_redis(pod: NamesrvProcess) -> psutil.Process:
    assert pod.proc is not None
    kids = [p for p in psutil.Process(pod.proc.pid).children() if "redis" in p.name()]
    assert len(kids) == 1, kids
    return kids[0]


# None: no flag, the default (AOF everysec)
@pytest.mark.parametrize("mode", [None, "aof-always", "rdb", "none"])
async def test_restart_of_serve_keeps_routes_and_kv(tmp_path: Path, mode: str | None) -> None:
    pod = _serve(tmp_path / "data", mode).start()
    try:
        broker = await _write(pod.addr, "a")
        assert await _read(pod.addr, "a") == (True, "v-a")
    finally:
        pod.stop()  # a clean stop: Redis fsyncs its AOF / writes its snapshot
    await broker.close()
    pod = _serve(tmp_path / "data", mode).start()
    try:
        # at once: no broker has re-registered
        got = await _read(pod.addr, "a")
    finally:
        pod.stop()
    assert got == ((False, None) if mode == "none" else (True, "v-a"))
    if mode != "none":
        assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mode", ["aof-everysec", "aof-always"])
async def test_kill_9_of_its_redis_keeps_acknowledged_writes(tmp_path: Path, mode: str) -> None:
    pod = _serve(tmp_path / "data", mode).start()
    try:
        broker = await _write(pod.addr, "b")
        if mode == "aof-everysec":
            time.sleep(1.5)  # its promise: everything older than about a second
        old = _embedded_redis(pod)
        old.send_signal(signal.SIGKILL)
        old.wait(5)
        deadline = time.monotonic() + 15
        got: tuple[bool, str | None] = (False, None)
        while time.monotonic() < deadline:
            try:
                got = await _read(pod.addr, "b")
            except (ConnectionError, OSError, TimeoutError):
                got = (False, None)
            if got == (True, "v-b"):
                break
            time.sleep(0.2)
        assert got == (True, "v-b"), pod.log()
        assert _embedded_redis(pod).pid != old.pid
        status = httpx.get(f"http://127.0.0.1:{pod.http_port}/v1/status").json()
        assert status["embedded"]["restarts"] == 1
        assert status["persistence"]["mode"] == mode
        assert status["persistence"]["kv_durable"] is True
        await broker.close()
    finally:
        pod.stop()


def test_second_pod_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = _serve(data, None).start()
    try:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "namesrv_redis.cli",
                "serve",
                "--data-dir",
                str(data),
                "--listen-port",
                "0",
                "--http-port",
                "0",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        first.stop()
    assert out.returncode == 2
    assert "is in use by another namesrv-redis" in out.stderr
    assert first.proc is not None and f"pid {first.proc.pid}" in out.stderr


def test_data_dir_lock_is_exclusive_and_made_private(tmp_path: Path) -> None:
    data = tmp_path / "a" / "b"
    os.makedirs(data, mode=0o755)
    os.chmod(data, 0o755)
    p = prepare_data_dir(data)
    assert p.stat().st_mode & 0o777 == 0o700
    first = DataDirLock(p)
    first.acquire()
    second = DataDirLock(p)
    from namesrv_redis.store.datadir import DataDirError

    with pytest.raises(DataDirError, match=f"pid {os.getpid()}"):
        second.acquire(wait_s=0.2)
    first.release()
    second.acquire()
    second.release()


def test_switching_modes_keeps_the_data(tmp_path: Path) -> None:
    import redis

    from namesrv_redis.store.embedded import EmbeddedRedis

    data = tmp_path / "data"

    def run(mode: str, put: str | None) -> set[bytes]:
        emb = EmbeddedRedis(persistence=mode, data_dir=data)
        emb.start_sync()
        try:
            client = redis.Redis(unix_socket_path=emb.socket_path)
            if put:
                client.set(put, "1")
            keys = set(client.keys("*"))
            client.close()
        finally:
            emb.stop_sync()
        return keys

    assert run("rdb", "a") == {b"a"}
    assert run("aof-everysec", "b") == {b"a", b"b"}  # loaded from dump.rdb, then AOF on
    assert (data / "appendonlydir").is_dir() or (data / "appendonly.aof").is_file()
    assert run("aof-always", "c") == {b"a", b"b", b"c"}
    assert run("rdb", "d") == {b"a", b"b", b"c", b"d"}  # loaded from the AOF, then RDB
    assert not (data / "appendonlydir").exists() and not (data / "appendonly.aof").exists()
    assert any(p.name.startswith("appendonly") and ".replaced-" in p.name for p in data.iterdir())
    assert run("rdb", None) == {b"a", b"b", b"c", b"d"}
    assert run("none", None) == set()  # in memory only: the data directory is not used


async def test_workers_share_one_durable_embedded_redis(tmp_path: Path) -> None:
    """With --workers the parent starts (and locks) the embedded Redis that workers share."""
    pod = NamesrvProcess(None, "default", "--data-dir", str(tmp_path / "d"), "--workers", "2")
    pod.start()
    try:
        broker = await _write(pod.addr, "w")
    finally:
        pod.stop()
    await broker.close()
    pod = _serve(tmp_path / "d", None).start()
    try:
        got = await _read(pod.addr, "w")
    finally:
        pod.stop()
    assert got == (True, "v-w")
