"""One name-server pod process: Redis, the route store, both front ends and the background
loops, started in order and stopped in reverse. The pod owns signals and shutdown: stop
accepting, drain in-flight requests with a grace period, then cancel (STYLE.md #11).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from typing import Any

import uvicorn

from namesrv_redis.config import Settings
from namesrv_redis.http import create_app, warn_if_unprotected
from namesrv_redis.http.fast_routes import RouteFastPath
from namesrv_redis.http.limits import MAX_HEAD_BYTES, BodyLimit, BoundedHttpToolsProtocol
from namesrv_redis.memtrim import MemoryTrimmer
from namesrv_redis.remoting.processor import NamesrvProcessor
from namesrv_redis.remoting.server import RemotingServer
from namesrv_redis.route_reader import RouteReader
from namesrv_redis.runtime_config import apply_stored
from namesrv_redis.store.connection import create_redis, describe_url
from namesrv_redis.store.embedded import EmbeddedRedis
from namesrv_redis.store.events import RouteEvent, RouteEvents
from namesrv_redis.store.liveness import Liveness
from namesrv_redis.store.pods import PodAdvertiser
from namesrv_redis.store.route_store import RouteStore

log = logging.getLogger(__name__)


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: the pod owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


def listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound, listening TCP socket; with ``reuse_port`` several processes share the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class Pod:
    """A running name server (one process)."""

    def __init__(self, settings: Settings, *, reuse_port: bool = False) -> None:
        self.settings = settings
        self.reuse_port = reuse_port
        self.embedded: EmbeddedRedis | None = None
        self.redis: Any = None
        self.store: RouteStore | None = None
        self.routes: RouteReader | None = None
        self.processor: NamesrvProcessor | None = None
        self.remoting: RemotingServer | None = None
        self.events: RouteEvents | None = None
        self.liveness: Liveness | None = None
        self.advertiser: PodAdvertiser | None = None
        self.trimmer = MemoryTrimmer(settings.malloc_trim_threshold_mb * 2**20)
        self.http: _EmbeddedUvicorn | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        s = self.settings
        url = s.redis_url
        if not url:
            self.embedded = EmbeddedRedis()
            await self.embedded.start()
            url = self.embedded.url
            log.info("no Redis URL configured: started an embedded Redis at %s", url)
        self.redis = create_redis(url)
        log.info("route store: %s namespace %r", describe_url(url), s.namespace)
        store = self.store = RouteStore(
            self.redis,
            s.namespace,
            delete_topic_with_broker_registration=s.delete_topic_with_broker_registration,
        )
        await store.load_scripts()
        await self._load_shared_config()

        self.routes = RouteReader(
            store,
            order_message_enable=lambda: self._current().order_message_enable,
            support_acting_master=lambda: self._current().support_acting_master,
            enabled=s.route_cache_max_age_ms > 0,
        )
        self.processor = NamesrvProcessor(store, self.settings, self.routes)
        # a lost event is noticed within two polls: the cache's staleness bound
        poll_s = s.route_cache_max_age_ms / 2000 if s.route_cache_max_age_ms > 0 else 0.5
        self.events = RouteEvents(self.redis, store.keys, store=store, poll_interval_s=poll_s)
        self.events.add_listener(self._on_route_event)
        await self.events.start()

        self.liveness = Liveness(
            store,
            self.redis,
            scan_interval_ms=s.scan_not_active_broker_interval,
            on_reconnect=self.routes.clear,
        )
        await self.liveness.start()

        self.remoting = RemotingServer(
            self.processor,
            host=s.listen_host,
            port=s.listen_port,
            max_frame_bytes=s.max_frame_bytes,
            max_connections=s.max_connections,
            idle_timeout_s=s.server_channel_max_idle_time_seconds,
            reuse_port=self.reuse_port,
        )
        await self.remoting.start()

        self.advertiser = PodAdvertiser(
            self.redis, store.keys, listen_host=s.listen_host, listen_port=self.remoting.bound_port
        )
        await self.advertiser.start()
        await self.trimmer.start()
        await self._start_http()

    async def _start_http(self) -> None:
        s = self.settings
        assert self.store is not None and self.events is not None and self.routes is not None
        warn_if_unprotected(s, log)
        app = BodyLimit(
            RouteFastPath(
                create_app(
                    self.store,
                    events=self.events,
                    settings_provider=self._current,
                    readiness=self.readiness,
                    routes=self.routes,
                ),
                self.routes,
                self.events,
            )
        )
        config = uvicorn.Config(
            app,
            log_level=s.log_level.lower(),
            access_log=False,
            lifespan="off",
            http=BoundedHttpToolsProtocol,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        )
        self.http = _EmbeddedUvicorn(config)
        sock = listening_socket(s.http_host, s.http_port, reuse_port=self.reuse_port)
        self.http_port = sock.getsockname()[1]
        self._http_task = asyncio.create_task(self.http.serve(sockets=[sock]), name="http")
        log.info("HTTP tier listening on %s:%d", s.http_host, self.http_port)

    async def stop(self, grace_s: float = 5.0) -> None:
        if self.http is not None:
            self.http.should_exit = True
        if self.remoting is not None:
            await self.remoting.stop(grace_s)
        if self._http_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._http_task, grace_s)
        await self.trimmer.stop()
        for part in (self.advertiser, self.liveness, self.events):
            if part is not None:
                with contextlib.suppress(Exception):
                    await part.stop()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()
        if self.embedded is not None:
            await self.embedded.stop()

    async def run(self) -> None:
        """Start, serve until SIGTERM or SIGINT, stop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        try:
            await self.start()
            log.info(
                "namesrv-redis pod %d ready: remoting %s:%d",
                os.getpid(),
                self.settings.listen_host,
                self.remoting.bound_port if self.remoting else 0,
            )
            await self._stopping.wait()
            log.info("shutting down")
        finally:
            await self.stop()

    # ------------------------------------------------------------------ state

    def _current(self) -> Settings:
        """The live settings (UPDATE_NAMESRV_CONFIG may have changed them)."""
        return self.processor.settings if self.processor is not None else self.settings

    async def readiness(self) -> str | None:
        """None when ready, else why not (served as /readyz)."""
        if self.store is None or self.liveness is None or self.events is None:
            return "starting"
        try:
            await self.redis.ping()
        except Exception as e:
            return f"redis unreachable: {type(e).__name__}"
        if not self.events.connected:
            return "route event subscription down"
        if not self.liveness.cleaner.subscribed:
            return "expiry cleaner not subscribed"
        return None

    async def _load_shared_config(self) -> None:
        """Options changed by UPDATE_NAMESRV_CONFIG on any pod live in Redis."""
        assert self.store is not None
        shared = await self.store.get_config()
        if shared:
            self.settings, skipped = apply_stored(self.settings, shared)
            if skipped:
                log.warning("shared options not applied (not changeable at run time): %s", skipped)
            if self.processor is not None:
                self.processor.settings = self.settings
            self._apply_running_options()

    def _apply_running_options(self) -> None:
        """Options the running parts read once: hand them the current values."""
        s = self.settings
        if self.store is not None:
            self.store.delete_topic_with_broker_registration = (
                s.delete_topic_with_broker_registration
            )
        if self.liveness is not None:
            self.liveness.sweeper.interval_ms = s.scan_not_active_broker_interval
        if self.remoting is not None:
            self.remoting.idle_timeout_s = s.server_channel_max_idle_time_seconds

    def _on_route_event(self, event: RouteEvent) -> None:
        if self.routes is not None:
            self.routes.invalidate(event.topics, event.brokers)
        if event.kind == "config" or event.topics is None:
            asyncio.get_running_loop().create_task(self._load_shared_config())
