"""Run ``namesrv-redis serve`` as a real process for end-to-end tests (interop, several pods)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


class NamesrvProcess:
    def __init__(
        self, redis_url: str | None, namespace: str, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        """``redis_url`` None: the pod starts its embedded Redis."""
        self.redis_url = redis_url
        self.namespace = namespace
        self.port = free_port()
        self.http_port = free_port()
        self.extra = extra
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"namesrv-{self.port}.log"

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> NamesrvProcess:
        env = {**os.environ, **self.env}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "namesrv_redis.cli",
                "serve",
                *(["--redis-url", self.redis_url] if self.redis_url else []),
                "--namespace",
                self.namespace,
                "--listen-host",
                "127.0.0.1",
                "--listen-port",
                str(self.port),
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(self.http_port),
                *self.extra,
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"namesrv-redis exited early:\n{self.log()}")
            if _listening(self.port) and _listening(self.http_port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"namesrv-redis did not start:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: the pod dies without any clean-up."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
