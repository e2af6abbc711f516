"""The benchmarks' child processes: a server stopped, a worker reaped, a worker's tagged
message awaited (with a deadline, so a worker that died is an error, not a hang)."""

from __future__ import annotations

import subprocess
from multiprocessing.connection import Connection
from typing import Any


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; reaped either way."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def reap(proc: Any) -> None:
    """A ``multiprocessing`` worker joined, terminated if it does not end by itself."""
    proc.join(10)
    if proc.is_alive():
        proc.terminate()
        proc.join(5)


def expect(conn: Connection, tag: str, timeout: float, who: str = "a benchmark process") -> Any:
    """The next message of ``conn``, which must be a tuple starting with ``tag``."""
    if not conn.poll(max(1.0, timeout)):
        raise RuntimeError(f"{who} sent no {tag!r} within {timeout:.0f} s")
    msg = conn.recv()
    if msg[0] != tag:
        raise RuntimeError(f"expected {tag!r} from {who}, got {msg[0]!r}")
    return msg
