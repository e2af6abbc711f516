"""A real ``serve`` process: waiting for Redis at start, Ctrl-C to its process group, ``check``
of the embedded default, and what a plain start logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RedisServerProcess, free_port
from tests.test_cli_errors import ROOT, run_cli, serve_args

# generous: two cores shared with other test runs
START_S = 60.0


class Serve:
    """``namesrv-redis serve`` in a session (a process group) of its own."""

    def __init__(self, tmp: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.port, self.http_port = free_port(), free_port()
        self.log_path = tmp / f"serve-{self.port}.log"
        base = {k: v for k, v in os.environ.items() if not k.upper().startswith("NAMESRV_")}
        self.env = {**base, "HOME": str(tmp / "home"), **(env or {})}
        self.args = [
            sys.executable,
            "-m",
            "namesrv_redis.cli",
            *serve_args(*extra, port=self.port, http_port=self.http_port),
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Serve:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def get(self, path: str) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"not ready:\n{self.log()}")

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def serves(tmp_path: Path) -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for s in started:
        s.kill()


def redis_servers_of(data_dir: Path) -> list[int]:
    """pids of redis-server processes working on ``data_dir``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:  # redis-server rewrites its title; it works in its --dir
            title = (entry / "cmdline").read_bytes()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        is_redis = title.startswith(b"redis-server") or b"/redis-server" in title.split(b"\0")[0]
        if is_redis and cwd == str(data_dir):
            pids.append(int(entry.name))
    return pids


def test_waits_for_redis_while_readyz_says_why(tmp_path: Path, serves: list[Serve]) -> None:
    redis = RedisServerProcess()  # its port, not yet listening
    pod = Serve(
        tmp_path, "--redis-url", redis.url, "--redis-startup-timeout", "120", "--namespace", "w"
    ).start()
    serves.append(pod)
    deadline = time.monotonic() + START_S
    while True:  # the HTTP port answers before Redis is there
        assert time.monotonic() < deadline, pod.log()
        try:
            status, body = pod.get("/readyz")
        except OSError:
            time.sleep(0.1)
            continue
        assert status == 503, body
        if "waiting for Redis" in str(body["reason"]):  # (after a first failed attempt)
            break
        time.sleep(0.1)
    assert f"127.0.0.1:{redis.port}" in str(body["reason"])
    assert pod.get("/healthz") == (200, {"status": "ok"})
    code, _ = run_cli("admin", "clusterList", "-n", f"127.0.0.1:{pod.port}", "--timeout", "2")
    assert code == 4  # remoting stays closed meanwhile
    redis.start()
    try:
        pod.wait_ready()
        assert run_cli("admin", "clusterList", "-n", f"127.0.0.1:{pod.port}")[0] == 0
        assert pod.proc is not None
        pod.proc.send_signal(signal.SIGTERM)
        assert pod.wait_exit() == 0
    finally:
        redis.stop()
    log = pod.log()
    assert "Traceback" not in log and " ERROR " not in log


def test_a_signal_while_waiting_for_redis_stops_cleanly(
    tmp_path: Path, serves: list[Serve]
) -> None:
    pod = Serve(tmp_path, "--redis-url", f"redis://127.0.0.1:{free_port()}/0").start()
    serves.append(pod)
    deadline = time.monotonic() + START_S
    while "retrying for up to" not in pod.log():
        assert time.monotonic() < deadline, pod.log()
        time.sleep(0.1)
    assert pod.proc is not None
    os.killpg(pod.proc.pid, signal.SIGINT)
    assert pod.wait_exit() == 0
    assert "Traceback" not in pod.log() and " ERROR " not in pod.log()


def test_ctrl_c_to_the_process_group_stops_cleanly_and_keeps_the_data(
    tmp_path: Path, serves: list[Serve]
) -> None:
    data = tmp_path / "data"
    pod = Serve(tmp_path, "--data-dir", str(data)).start()
    serves.append(pod)
    pod.wait_ready()
    n = ["-n", f"127.0.0.1:{pod.port}"]
    kv = ["-s", "ns_ctrl_c", "-k", "key"]
    assert run_cli("admin", "updateKvConfig", *n, *kv, "-v", "kept")[0] == 0
    # check finds the embedded Redis of the data directory
    code, out = run_cli("check", "--data-dir", str(data))
    assert code == 0 and "consistent" in out, out
    [server] = redis_servers_of(data)
    assert pod.proc is not None
    assert os.getsid(server) != os.getsid(pod.proc.pid)  # the group's Ctrl-C does not reach it

    os.killpg(pod.proc.pid, signal.SIGINT)  # a terminal's Ctrl-C
    assert pod.wait_exit() == 0
    log = pod.log()
    assert " ERROR " not in log and "Traceback" not in log, log
    deadline = time.monotonic() + 10
    while redis_servers_of(data):  # stopped by the pod, last
        assert time.monotonic() < deadline, "redis-server left running"
        time.sleep(0.05)
    code, out = run_cli("check", "--data-dir", str(data))
    assert code == 4 and "no embedded Redis is running" in out

    again = Serve(tmp_path, "--data-dir", str(data)).start()
    serves.append(again)
    again.wait_ready()
    code, out = run_cli("admin", "getKvConfig", "-n", f"127.0.0.1:{again.port}", *kv)
    assert code == 0 and "kept" in out


def test_a_plain_start_is_quiet_and_says_what_it_runs(tmp_path: Path, serves: list[Serve]) -> None:
    from namesrv_redis import __version__

    pod = Serve(tmp_path, "--data-dir", str(tmp_path / "data")).start()
    serves.append(pod)
    pod.wait_ready()
    assert pod.proc is not None
    pod.proc.send_signal(signal.SIGTERM)
    assert pod.wait_exit() == 0
    lines = pod.log().splitlines()
    first = lines[0]
    assert f"namesrv-redis {__version__}" in first
    assert "embedded Redis (persistence aof-everysec" in first and "workers 1" in first
    assert "TLS permissive" in first
    assert [ln for ln in lines if " WARNING " in ln or " ERROR " in ln] == []
    # uvicorn's lines in our format
    uvicorn = [ln for ln in lines if "uvicorn" in ln]
    assert uvicorn and all(f" INFO {pod.proc.pid} uvicorn" in ln for ln in uvicorn), uvicorn


def test_json_logs_and_one_warning_for_ignored_java_options(
    tmp_path: Path, serves: list[Serve]
) -> None:
    conf = tmp_path / "namesrv.properties"
    conf.write_text("kvConfigPath=/root/namesrv/kvConfig.json\nserverWorkerThreads=8\n")
    pod = Serve(
        tmp_path,
        "--config",
        str(conf),
        "--log-format",
        "json",
        "--redis-url",
        "memory://",
        "--defaultThreadPoolNums=16",
        env={"NAMESRV_SERVER_SOCKET_SND_BUF_SIZE": "65536"},
    ).start()
    serves.append(pod)
    pod.wait_ready()
    assert pod.proc is not None
    pod.proc.send_signal(signal.SIGTERM)
    assert pod.wait_exit() == 0
    records = [json.loads(line) for line in pod.log().splitlines()]
    for r in records:
        assert {"time", "level", "logger", "message", "pid"} <= set(r)
        assert r["pid"] == pod.proc.pid
    assert records[0]["message"].startswith("namesrv-redis ")
    assert any(r["logger"].startswith("uvicorn") for r in records)
    ignored = [r for r in records if "ignored" in r["message"] and r["level"] == "WARNING"]
    assert len(ignored) == 1
    for name in (
        "kvConfigPath",
        "serverWorkerThreads",
        "defaultThreadPoolNums",
        "serverSocketSndBufSize",
    ):
        assert name in ignored[0]["message"]
