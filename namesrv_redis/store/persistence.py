"""Redis persistence: the modes ``serve --persistence`` offers, the ``redis-server`` options
each one means, and what an external Redis promises (read with ``CONFIG GET`` at start).

The modes, weakest first:

- ``none``: state only in Redis' memory; a Redis restart starts empty.
- ``rdb``: a snapshot (``dump.rdb``) at most :data:`RDB_SAVE` apart, and on a clean shutdown;
  a crash loses what changed since the last snapshot.
- ``aof-everysec``: every write appended to the AOF, fsync'ed once a second; a clean shutdown
  loses nothing, a crash of Redis alone loses nothing that reached the kernel, a power cut
  loses about the last second. The default.
- ``aof-always``: fsync before every write is acknowledged; nothing acknowledged is lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from namesrv_redis.settings.persistence_modes import RDB_SAVE, uses_aof, validate_mode

log = logging.getLogger(__name__)


def server_options(mode: str) -> list[str]:
    """``redis-server`` command-line options for ``mode``."""
    validate_mode(mode)
    return [
        "--save",
        RDB_SAVE if mode == "rdb" else "",
        "--appendonly",
        "yes" if uses_aof(mode) else "no",
        "--appendfsync",
        "always" if mode == "aof-always" else "everysec",
    ]


@dataclass(frozen=True)
class PersistenceReport:
    """What a Redis server promises for the data it holds."""

    mode: str
    """one of :data:`~namesrv_redis.settings.persistence_modes.MODES`, ``aof-no`` (AOF left to
    the kernel to flush) or ``unknown``"""
    source: str
    """``config`` (CONFIG GET), ``info`` (CONFIG refused; INFO persistence) or ``none``"""
    save: str | None = None
    appendonly: str | None = None
    appendfsync: str | None = None
    kv_durable: bool | None = None
    """False when KV config would be lost on a Redis restart; None when it cannot be told"""
    detail: str = ""


def classify(save: str | None, appendonly: str | None, appendfsync: str | None) -> str:
    if appendonly == "yes":
        if appendfsync in ("always", "everysec"):
            return f"aof-{appendfsync}"
        return "aof-no"
    if save:
        return "rdb"
    return "none"


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


async def read_persistence(client: Any) -> PersistenceReport:
    """The persistence settings of the server behind ``client``. Managed Redis often refuses
    CONFIG; then INFO persistence tells whether AOF is on (not how often it syncs)."""
    try:
        raw = await client.config_get("save")
        raw.update(await client.config_get("appendonly"))
        raw.update(await client.config_get("appendfsync"))
        conf = {_text(k): _text(v) for k, v in raw.items()}
    except (RedisError, NotImplementedError, AttributeError) as e:
        conf = {}
        refused = f"CONFIG GET refused ({type(e).__name__}: {e})"
    else:
        refused = ""
    if "appendonly" in conf:
        save, aof, fsync = conf.get("save", ""), conf["appendonly"], conf.get("appendfsync")
        mode = classify(save, aof, fsync)
        return PersistenceReport(
            mode, "config", save, aof, fsync, kv_durable=mode != "none", detail=_detail(mode)
        )
    try:
        info = await client.info("persistence")
    except (RedisError, NotImplementedError) as e:
        return PersistenceReport(
            "unknown", "none", detail=f"{refused or 'CONFIG GET gave nothing'}; INFO failed: {e}"
        )
    if not info or "aof_enabled" not in info:
        return PersistenceReport(
            "unknown", "none", detail=refused or "INFO persistence gave nothing"
        )
    if int(info["aof_enabled"]):
        return PersistenceReport(
            "unknown",
            "info",
            appendonly="yes",
            kv_durable=True,
            detail=f"{refused}; AOF is on, its fsync policy cannot be read",
        )
    return PersistenceReport(
        "unknown",
        "info",
        appendonly="no",
        kv_durable=None,
        detail=f"{refused}; AOF is off, RDB snapshots cannot be told from INFO",
    )


def _detail(mode: str) -> str:
    return {
        "none": "no persistence: a Redis restart loses every route and all KV config",
        "rdb": "RDB snapshots only: a crash loses what changed since the last snapshot",
        "aof-no": "AOF without fsync: a crash of the machine loses up to ~30 s",
        "aof-everysec": "AOF, fsync every second: a crash loses at most about 1 s",
        "aof-always": "AOF, fsync on every write: nothing acknowledged is lost",
    }[mode]


def log_persistence(report: PersistenceReport, where: str, logger: logging.Logger = log) -> None:
    """Log what the Redis promises; warn when KV config would not survive a restart."""
    logger.info(
        "Redis persistence of %s: %s (save=%r appendonly=%s appendfsync=%s, from %s)",
        where,
        report.mode,
        report.save,
        report.appendonly,
        report.appendfsync,
        report.source,
    )
    if report.kv_durable is False:
        logger.warning(
            "Redis %s has no persistence: KV config (mqadmin updateKvConfig, order-topic "
            "config) would be LOST on a Redis restart. Enable AOF (appendonly yes, appendfsync "
            "everysec) or RDB snapshots on that server; see docs/persistence.md",
            where,
        )
    elif report.mode == "rdb":
        logger.warning(
            "Redis %s persists with RDB snapshots only (save %r): a crash loses KV config "
            "changed since the last snapshot; AOF everysec loses at most ~1 s",
            where,
            report.save,
        )
    elif report.mode == "unknown":
        logger.warning("persistence of Redis %s cannot be read: %s", where, report.detail)


class PersistenceMonitor:
    """What the pod's Redis promises: read and logged at start, re-read for ``/v1/status``,
    exported as the ``namesrv_redis_persistence`` and ``namesrv_redis_kv_durable`` metrics."""

    def __init__(self, client: Any, where: str) -> None:
        self.client = client
        self.where = where
        self.report = PersistenceReport("unknown", "none", detail="not read yet")

    async def refresh(self) -> PersistenceReport:
        from namesrv_redis.telemetry.metrics import set_persistence

        try:
            self.report = await read_persistence(self.client)
        except Exception as e:  # unreachable, or a topology that answers oddly: keep the last
            log.debug("cannot read Redis persistence: %s", e)
        set_persistence(self.report.mode, self.report.source, self.report.kv_durable)
        return self.report

    async def start(self) -> PersistenceReport:
        report = await self.refresh()
        log_persistence(report, self.where)
        return report
