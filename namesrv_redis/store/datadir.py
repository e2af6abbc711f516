"""The data directory of the embedded Redis: where it is, its permissions, and its lock.

The default is ``~/namesrv/redis``: the Java NameServer keeps its state under
``${user.home}/namesrv/`` (``kvConfig.json``, ``namesrv.properties``), which is where a
RocketMQ operator looks; the ``redis`` subdirectory keeps our files apart from Java's, so both
can live on one host during a migration.

The directory is created with mode 0700 and locked with ``flock`` for as long as the pod *or*
its Redis is alive (the lock's file descriptor is passed to ``redis-server``), so a second pod
on the same directory is refused instead of starting a second Redis on the same files.
The lock file also says how to reach that Redis (the owner's pid, then the server's URL), so
``namesrv-redis check`` finds the embedded Redis of a data directory (:func:`running_url`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path

LOCK_NAME = "namesrv-redis.lock"


class DataDirError(RuntimeError):
    """The data directory cannot be used (held by another pod, or not ours)."""


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server did not come up on its data directory (its last log line
    says why)."""


def default_data_dir() -> Path:
    return Path.home() / "namesrv" / "redis"


def prepare_data_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (mode 0700) if missing; refuse one owned by another user; tighten an
    existing one to 0700 (it holds every route and the KV config)."""
    p = Path(path).expanduser().absolute()
    try:
        p.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise DataDirError(
            f"cannot create data directory {p}: {e.strerror}; give the embedded Redis a "
            "writable one with --data-dir / NAMESRV_DATA_DIR, or use --persistence none or "
            "--redis-url"
        ) from None
    if not p.is_dir():
        raise DataDirError(f"data directory {p} is not a directory")
    st = p.stat()
    if st.st_uid != os.getuid():
        raise DataDirError(f"data directory {p} belongs to uid {st.st_uid}, not to this user")
    if st.st_mode & 0o077:
        os.chmod(p, 0o700)
    return p


class DataDirLock:
    """An exclusive ``flock`` on ``<dir>/namesrv-redis.lock`` holding the owner's pid."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_NAME
        self.fd: int | None = None

    def acquire(self, wait_s: float = 0.0, address: str = "") -> None:
        """Take the lock, retrying for ``wait_s`` (a pod that just died may still be flushing
        its Redis); raise :class:`DataDirError` naming the holder when it stays taken.
        ``address``: the URL of the Redis that will serve this directory."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise DataDirError(
                        f"data directory {self.data_dir} is in use by another namesrv-redis "
                        f"({holder}): two pods cannot run an embedded Redis on the same "
                        "directory. Give this pod its own --data-dir, or share one Redis "
                        "between pods with --redis-url"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{address}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        """Close our descriptor. No LOCK_UN: that would also unlock the copy a still-running
        redis-server inherited; the lock goes when the last descriptor closes."""
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").split("\n", 1)[0].strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"


def running_url(data_dir: str | os.PathLike[str]) -> str | None:
    """The URL of the embedded Redis serving ``data_dir`` now, or None when nothing holds the
    directory's lock (no pod and no Redis of one is running on it)."""
    path = Path(data_dir).expanduser().absolute() / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            lines = os.pread(fd, 4096, 0).decode(errors="replace").split("\n")
            url = lines[1].strip() if len(lines) > 1 else ""
            return url or None
        return None  # we got the lock: nobody is running on this directory
    finally:
        os.close(fd)  # (drops our shared lock, if we took it)
