"""Predictable failures of the command line: one line that names the value, where it came from
and what to do; the exit code docs/operations.md documents; never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str]:
    """Run ``namesrv-redis ARGS``; (exit code, stdout and stderr)."""
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("NAMESRV_")}
    proc = subprocess.run(
        [sys.executable, "-m", "namesrv_redis.cli", *args],
        cwd=ROOT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout + proc.stderr


def problem_lines(output: str) -> list[str]:
    """The lines that report the failure (ERROR records or the CLI's own line)."""
    return [
        line
        for line in output.splitlines()
        if " ERROR " in line or line.startswith("namesrv-redis:") or "Traceback" in line
    ]


def serve_args(*extra: str, port: int = 0, http_port: int = 0) -> list[str]:
    """``serve`` on loopback ports (free ones unless given)."""
    return [
        "serve",
        *("--listen-host", "127.0.0.1", "--listen-port", str(port or free_port())),
        *("--http-host", "127.0.0.1", "--http-port", str(http_port or free_port())),
        *extra,
    ]


def test_bad_redis_url_scheme() -> None:
    code, out = run_cli(*serve_args("--redis-url", "foo://x:1"))
    assert code == 2
    [line] = problem_lines(out)
    assert "foo://" in line and "--redis-url" in line and "redis://" in line


def test_bad_value_in_the_environment_names_the_variable() -> None:
    code, out = run_cli("serve", env={"NAMESRV_LISTEN_PORT": "abc"})
    assert code == 2
    [line] = problem_lines(out)
    assert "NAMESRV_LISTEN_PORT" in line and "'abc'" in line and "listen_port" not in line


def test_unreachable_redis_gives_up_after_the_start_up_wait() -> None:
    dead = free_port()
    code, out = run_cli(
        *serve_args("--redis-url", f"redis://127.0.0.1:{dead}/0", "--redis-startup-timeout", "1")
    )
    assert code == 4, out
    [line] = problem_lines(out)
    assert f"127.0.0.1:{dead}" in line and "--redis-startup-timeout" in line
    assert "cannot be read" not in out and "Traceback" not in out


@pytest.mark.parametrize("scheme", ["redis+sentinel", "redis+cluster"])
def test_unreachable_sentinels_or_cluster_nodes(scheme: str) -> None:
    dead = free_port()
    url = f"{scheme}://127.0.0.1:{dead}" + ("/mymaster" if scheme == "redis+sentinel" else "")
    code, out = run_cli(*serve_args("--redis-url", url, "--redis-startup-timeout", "0"))
    assert code == 4, out
    [line] = problem_lines(out)
    assert f"127.0.0.1:{dead}" in line and "Connection refused" in line
    assert "<redis." not in line  # no client repr


def test_unknown_redis_host() -> None:
    code, out = run_cli(
        *serve_args(
            "--redis-url", "redis://no-such-host.invalid:6379", "--redis-startup-timeout", "0"
        )
    )
    assert code == 4, out
    [line] = problem_lines(out)
    assert "no-such-host.invalid" in line


@pytest.mark.parametrize("tier", ["--http-port", "--listen-port"])
def test_a_port_in_use_names_port_and_tier(tier: str) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        args = serve_args("--redis-url", "memory://")
        args[args.index(tier) + 1] = str(port)
        code, out = run_cli(*args)
    assert code == 7, out
    [line] = problem_lines(out)
    assert f"127.0.0.1:{port}" in line and tier in line
    assert ("HTTP tier" if tier == "--http-port" else "remoting server") in line


@pytest.mark.parametrize("command", [["check"], ["acl", "list"]])
def test_a_dead_redis_is_cannot_reach_not_broken_invariants(command: list[str]) -> None:
    code, out = run_cli(*command, "--redis-url", f"redis://127.0.0.1:{free_port()}/0")
    assert code == 4
    [line] = problem_lines(out)
    assert "cannot reach Redis" in line


def test_check_without_url_and_no_embedded_redis_running(tmp_path: Path) -> None:
    code, out = run_cli("check", "--data-dir", str(tmp_path / "data"))
    assert code == 4
    [line] = problem_lines(out)
    assert str(tmp_path / "data") in line and "--redis-url" in line


@pytest.fixture
def http_port() -> Iterator[int]:
    """A plain HTTP server (answers 400 to anything), as on the pod's 8080."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    srv.close()


def test_admin_against_the_http_port(http_port: int) -> None:
    code, out = run_cli("admin", "clusterList", "-n", f"127.0.0.1:{http_port}")
    assert code == 4
    assert "Traceback" not in out and "Fatal error" not in out
    assert "HTTP" in out and "9876" in out
    assert len(out.strip().splitlines()) == 1


def test_help_documents_the_exit_codes() -> None:
    for args in (["--help"], ["serve", "--help"], ["check", "--help"]):
        code, out = run_cli(*args)
        assert code == 0
        assert "exit codes:" in out and "cannot reach Redis" in out


def test_an_embedded_redis_that_does_not_start(tmp_path: Path) -> None:
    code, out = run_cli(
        *serve_args("--data-dir", str(tmp_path / "data")),
        env={"NAMESRV_REDIS_SERVER_BIN": "/bin/false", "HOME": str(tmp_path)},
    )
    assert code == 4, out
    [line] = problem_lines(out)
    assert "embedded redis-server did not start" in line and str(tmp_path / "data") in line
