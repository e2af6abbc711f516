"""The web console: static pages served by the HTTP tier (``/console/``; no build step, no
CDN) over the same JSON API, plus the two reads it needs that the API lacked (the KV
namespaces, and whether admin calls need a token). Without the admin token the console is
read-only: every change it offers is an admin call the server checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from namesrv_redis import __version__
from namesrv_redis.settings.config import Settings
from namesrv_redis.store.route_store import RouteStore

CONSOLE_DIR = Path(__file__).parent / "console"


class KvNamespaces(BaseModel):
    namespaces: list[str]


class ConsoleInfo(BaseModel):
    namespace: str
    version: str
    adminTokenRequired: bool


def add_console(app: FastAPI, store: RouteStore, settings_provider: Callable[[], Settings]) -> None:
    @app.get("/v1/kv", response_model=KvNamespaces, summary="KV config namespaces that exist")
    async def kv_namespaces() -> KvNamespaces:
        members = await store.redis.smembers(store.keys.kv_namespaces)
        return KvNamespaces(
            namespaces=sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        )

    @app.get("/v1/console/info", response_model=ConsoleInfo, include_in_schema=False)
    async def console_info() -> ConsoleInfo:
        return ConsoleInfo(
            namespace=store.keys.namespace,
            version=__version__,
            adminTokenRequired=settings_provider().admin_token is not None,
        )

    @app.get("/console", include_in_schema=False)
    async def console_slash() -> RedirectResponse:
        return RedirectResponse("/console/")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        """A browser pointed at the pod lands on the console."""
        return RedirectResponse("/console/")

    app.mount("/console/", StaticFiles(directory=CONSOLE_DIR, html=True), name="console")
