"""``serve``: one pod in this process, or ``--workers N`` pod processes sharing the ports.

With several workers the parent starts the embedded Redis (when no URL is configured) so all
workers share it, then starts N worker processes that each bind the remoting and HTTP ports
with SO_REUSEPORT (the kernel spreads connections across them). The parent forwards SIGTERM /
SIGINT, restarts a worker that dies unexpectedly, and stops everything on exit (the embedded
Redis last). A worker that cannot start for a reason a restart does not cure (configuration,
Redis unreachable past the start-up wait, a port in use) stops the whole command with its exit
code.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import time
from typing import Any

from namesrv_redis.settings.config import Settings
from namesrv_redis.settings.exit_codes import ExitCode, StartupError

log = logging.getLogger(__name__)


FATAL_AT_START = frozenset({ExitCode.USAGE, ExitCode.UNREACHABLE, ExitCode.CANNOT_LISTEN})
"""Exit codes of a worker that restarting would not help."""


def run_pod(settings: Settings, *, reuse_port: bool = False) -> int:
    """Run one pod in this process until SIGTERM/SIGINT; its exit code."""
    from namesrv_redis.process.pod import Pod

    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    from namesrv_redis.remoting.acl import AclConfigError
    from namesrv_redis.settings.tls_modes import TlsConfigError
    from namesrv_redis.store.redis_tls import RedisOptionError

    try:
        import asyncio  # not at the top: a --workers supervisor loads this module, not asyncio

        asyncio.run(Pod(settings, reuse_port=reuse_port).run())
    except (TlsConfigError, AclConfigError, RedisOptionError) as e:
        log.error("cannot start: %s", e)
        return ExitCode.USAGE
    except StartupError as e:
        log.error("cannot start: %s", e)
        return e.code
    return ExitCode.OK


def _worker_main(settings: Settings, log_level: str) -> None:
    from namesrv_redis.process.logs import configure_logging

    configure_logging(log_level, settings.log_format)
    from namesrv_redis.telemetry.worker_metrics import SnapshotWriter
    from namesrv_redis.telemetry.worker_metrics_dir import worker_metrics_dir

    directory = worker_metrics_dir()
    writer = SnapshotWriter(directory).start() if directory is not None else None
    try:
        code = run_pod(settings, reuse_port=True)
    finally:
        if writer is not None:
            writer.stop()
    raise SystemExit(code)


def serve(settings: Settings) -> int:
    from namesrv_redis.store.memory import is_memory_url

    if settings.workers > 1 and is_memory_url(settings.redis_url):
        log.error("memory:// lives inside one process: --workers needs a real Redis to share")
        return 2
    if settings.workers <= 1:
        return run_pod(settings)

    embedded = None
    if not settings.redis_url:  # (the supervisor loads the Redis side only for this)
        from namesrv_redis.store.embedded import EmbeddedRedis

        embedded = EmbeddedRedis(persistence=settings.persistence, data_dir=settings.data_dir)
        embedded.start_sync()
        settings = settings.model_copy(update={"redis_url": embedded.url})
        log.info("embedded Redis for %d workers at %s", settings.workers, embedded.url)

    from namesrv_redis.telemetry.worker_metrics_dir import WorkerMetricsDir

    with WorkerMetricsDir() as metrics_dir:  # /metrics of any worker reports them all
        return _supervise(settings, metrics_dir, embedded)


def _supervise(settings: Settings, metrics_dir: Any, embedded: Any) -> int:
    ctx = mp.get_context("spawn")
    stopping = False

    def start_worker() -> Any:
        p = ctx.Process(target=_worker_main, args=(settings, settings.log_level), daemon=False)
        p.start()
        return p

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    procs = [start_worker() for _ in range(settings.workers)]
    started = [time.monotonic()] * len(procs)
    quick_deaths = 0
    status = 0
    log.info("started %d workers: %s", len(procs), [p.pid for p in procs])
    try:
        while not stopping:
            time.sleep(0.2)
            if stopping:  # never restart the embedded Redis while stopping
                break
            if embedded is not None:
                try:
                    embedded.ensure_running()
                except Exception:
                    log.exception("restarting the embedded Redis failed; retrying")
            for i, p in enumerate(procs):
                if p.is_alive() or stopping:
                    continue
                if p.exitcode in FATAL_AT_START:
                    log.error("a worker cannot start (exit %s): stopping", p.exitcode)
                    stopping, status = True, int(p.exitcode or 0)
                    break
                if time.monotonic() - started[i] < 5:
                    quick_deaths += 1
                if quick_deaths >= 5:
                    log.error(
                        "workers keep dying at start-up (last exit %s): giving up", p.exitcode
                    )
                    stopping, status = True, 1
                    break
                log.warning("worker %s exited with %s: restarting it", p.pid, p.exitcode)
                metrics_dir.worker_died(p.pid)
                procs[i], started[i] = start_worker(), time.monotonic()
    finally:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
        if embedded is not None:
            embedded.stop_sync()
        for s, h in old.items():
            signal.signal(s, h)
    return status
