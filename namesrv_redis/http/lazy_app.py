"""The JSON API's application, built when it is first needed.

FastAPI, Starlette and the application's models cost a pod about 10 MB of RSS and a third of
a second of imports. Cached routes (:mod:`.fast_routes`), probes and metrics (:mod:`.probes`)
are answered without them, so a pod that only serves RocketMQ clients, probes and scrapes
never pays for them. The first request for anything else — a route the cache does not hold,
clusters, topics, KV, admin, watches, OpenAPI, the console — builds the application (the
imports on a worker thread, so the event loop keeps answering remoting clients meanwhile)
and waits for it; every later request goes straight to it. If building fails (a broken
install), the request gets a 500 with the reason, the pod goes on, and the next request tries
again. ``httpPreloadApp`` builds it at start instead (and a failure then stops the start).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from namesrv_redis.http.plain_asgi import json_bytes, send_response

log = logging.getLogger(__name__)


class LazyApp:
    """ASGI: every request goes to the application ``build()`` returns, built once."""

    def __init__(self, build: Callable[[], Any], *, import_modules: tuple[str, ...] = ()) -> None:
        self._build = build
        self._import_modules = import_modules
        """Imported on a worker thread before ``build`` runs on the event loop."""
        self._app: Any = None
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        return self._app is not None

    async def load(self, reason: str = "preloaded") -> Any:
        if self._app is not None:
            return self._app
        async with self._lock:
            if self._app is None:
                started = time.perf_counter()
                await asyncio.to_thread(_import_all, self._import_modules)
                self._app = self._build()
                log.info(
                    "HTTP JSON API loaded in %.0f ms (%s)",
                    (time.perf_counter() - started) * 1000,
                    reason,
                )
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        app = self._app
        if app is None:
            path = str(scope.get("path", ""))[:100]  # a client's text: bounded in the log
            try:
                app = await self.load(f"first request: {scope.get('method', '')} {path}")
            except Exception as e:  # a broken install: say so, try again on the next request
                log.exception("the HTTP JSON API failed to load")
                if scope["type"] == "http":
                    detail = f"the JSON API failed to load: {type(e).__name__}"
                    body = json_bytes({"error": "internal_error", "detail": detail})
                    await send_response(send, 500, b"application/json", body)
                return
        await app(scope, receive, send)


def _import_all(names: tuple[str, ...]) -> None:
    import importlib

    for name in names:
        importlib.import_module(name)
