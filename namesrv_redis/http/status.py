"""``GET /v1/status``: what this pod runs (the package version) and on what: the Redis it uses
(password hidden), the namespace, what that Redis promises for the data (persistence, re-read
on every call), and for the embedded default its data directory and how often it had to be
restarted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from namesrv_redis import __version__
from namesrv_redis.store.embedded import EmbeddedRedis
from namesrv_redis.store.persistence import PersistenceMonitor, PersistenceReport


class EmbeddedModel(BaseModel):
    data_dir: str | None
    persistence: str
    restarts: int


class PodStatus(BaseModel):
    version: str
    """The namesrv-redis package this pod runs."""
    redis: str
    namespace: str
    persistence: PersistenceReport
    """The store's own report (a dataclass pydantic validates and documents as it is)."""
    embedded: EmbeddedModel | None = None


@dataclass
class StatusSource:
    redis: str
    namespace: str
    monitor: PersistenceMonitor
    embedded: EmbeddedRedis | None = None


def status_router(source: StatusSource) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/status", response_model=PodStatus, summary="What this pod runs on")
    async def get_status() -> dict[str, Any]:
        report = await source.monitor.refresh()
        emb = source.embedded
        return {
            "version": __version__,
            "redis": source.redis,
            "namespace": source.namespace,
            "persistence": report,
            "embedded": None
            if emb is None
            else {
                "data_dir": None if emb.persistence == "none" else str(emb.data_dir),
                "persistence": emb.persistence,
                "restarts": emb.restarts,
            },
        }

    return router
