"""The directory the processes of a ``--workers`` pod share their metrics snapshots through
(:mod:`namesrv_redis.telemetry.worker_metrics` writes and merges them). Apart from that module so
that the supervisor, which only creates and removes the directory, loads no metrics library."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

DIR_ENV = "NAMESRV_WORKER_METRICS_DIR"


class WorkerMetricsDir:
    """The directory a ``--workers`` pod's processes share their metrics through:
    ``$NAMESRV_WORKER_METRICS_DIR`` when set (emptied at start), else a private temporary
    directory removed on exit. Entered by the parent before it starts the workers."""

    def __init__(self) -> None:
        given = os.environ.get(DIR_ENV)
        self.owned = not given
        self.path = Path(given) if given else Path(tempfile.mkdtemp(prefix="namesrv-metrics-"))

    def __enter__(self) -> WorkerMetricsDir:
        self.path.mkdir(parents=True, exist_ok=True)
        for stale in self.path.glob("*.json"):
            stale.unlink()
        os.environ[DIR_ENV] = str(self.path)  # inherited by the spawned workers
        return self

    def worker_died(self, pid: int | None) -> None:
        """Keep a dead worker's counts in the sums; its gauges are dropped."""
        if pid is None:
            return
        src = self.path / f"worker-{pid}.json"
        with contextlib.suppress(OSError):
            os.replace(src, self.path / f"dead-{pid}.json")

    def __exit__(self, *exc: object) -> None:
        if self.owned:
            os.environ.pop(DIR_ENV, None)
            shutil.rmtree(self.path, ignore_errors=True)


def worker_metrics_dir() -> Path | None:
    """The shared directory when this process is a worker of a ``--workers`` pod."""
    path = os.environ.get(DIR_ENV)
    return Path(path) if path else None
