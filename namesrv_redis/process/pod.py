"""One name-server pod process: Redis, the route store, both front ends and the background
loops, started in order and stopped in reverse. The pod owns signals and shutdown: stop
accepting, drain in-flight requests with a grace period, then cancel (STYLE.md #11).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import socket
from typing import Any

from namesrv_redis.domain.controller import Controller, ControllerWatch
from namesrv_redis.domain.route_reader import RouteReader
from namesrv_redis.domain.runtime_config import apply_stored
from namesrv_redis.http.lazy_app import LazyApp
from namesrv_redis.process.memtrim import MemoryTrimmer
from namesrv_redis.process.redis_wait import StartupWait, WaitingHttp, wait_for_redis
from namesrv_redis.remoting.acl import start_acl
from namesrv_redis.remoting.controller_handlers import notify_broker
from namesrv_redis.remoting.limits import FlowLimits
from namesrv_redis.remoting.offload import Offloader
from namesrv_redis.remoting.processor import NamesrvProcessor
from namesrv_redis.remoting.server import RemotingServer
from namesrv_redis.remoting.tls import ServerTls, https_options, tls_options
from namesrv_redis.rocketmq.register_body import set_max_inflated
from namesrv_redis.settings.config import Settings
from namesrv_redis.settings.exit_codes import ExitCode, StartupError
from namesrv_redis.store.acl import AclStore
from namesrv_redis.store.capabilities import CapabilityMonitor, load_scripts_unless_refused
from namesrv_redis.store.connection import (
    Deployment,
    RedisTarget,
    create_redis,
    describe_url,
    parse_target,
)
from namesrv_redis.store.controller_store import ControllerStore
from namesrv_redis.store.deadlines import Deadlines
from namesrv_redis.store.embedded import EmbeddedRedis
from namesrv_redis.store.events import RouteEvent, RouteEvents
from namesrv_redis.store.liveness import Liveness
from namesrv_redis.store.persistence import PersistenceMonitor
from namesrv_redis.store.pods import PodAdvertiser, advertised_host
from namesrv_redis.store.redis_tls import redis_client_options
from namesrv_redis.store.replication import Replication
from namesrv_redis.store.route_store import RouteStore
from namesrv_redis.store.topology import Topology
from namesrv_redis.telemetry.estate_metrics import EstateCollector
from namesrv_redis.telemetry.metrics import EMBEDDED_REDIS_RESTARTS

log = logging.getLogger(__name__)


def _embedded_uvicorn(config: Any) -> Any:
    """A uvicorn server without its own signal handlers: the pod owns signals. (uvicorn and
    FastAPI load only when the HTTP tier starts: a remoting-only pod starts without them.)"""
    import uvicorn

    class _EmbeddedUvicorn(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield

    return _EmbeddedUvicorn(config)


def listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound, listening TCP socket; with ``reuse_port`` several processes share the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def listen_error(tier: str, option: str, host: str, port: int, e: OSError) -> StartupError:
    """One line for a port that cannot be bound: which tier, address, option and what to do."""
    flag = option.replace("_", "-")
    todo = (
        "stop what holds it or choose another port"
        if e.errno == errno.EADDRINUSE
        else "choose a port above 1023 or grant CAP_NET_BIND_SERVICE"
        if e.errno == errno.EACCES
        else "check the address"
    )
    return StartupError(
        f"cannot listen on {host}:{port} for the {tier} (--{flag}, NAMESRV_{option.upper()}): "
        f"{e.strerror or e}; {todo}",
        ExitCode.CANNOT_LISTEN,
    )


class Pod:
    """A running name server (one process)."""

    def __init__(
        self,
        settings: Settings,
        *,
        reuse_port: bool = False,
        redis: Any = None,
        http: bool = True,
    ) -> None:
        """``redis``: an already-built asyncio client to use instead of ``redis_url`` (the pod
        closes it on stop); ``http=False`` serves remoting only (namesrv_redis.testing)."""
        self.settings = settings
        self.reuse_port = reuse_port
        self.serve_http = http
        self.embedded: EmbeddedRedis | None = None
        self.redis: Any = redis
        self.store: RouteStore | None = None
        self.routes: RouteReader | None = None
        self.processor: NamesrvProcessor | None = None
        self.remoting: RemotingServer | None = None
        self.controller_remoting: RemotingServer | None = None
        self.controller_watch: ControllerWatch | None = None
        self.offload: Offloader | None = None
        self.events: RouteEvents | None = None
        self.liveness: Liveness | None = None
        self.advertiser: PodAdvertiser | None = None
        self.topology: Topology | None = None
        self.capabilities: CapabilityMonitor | None = None
        self.http: Any = None
        self.http_app: LazyApp | None = None
        """The JSON API (FastAPI), built on its first request."""
        self.tls: ServerTls | None = None
        self.acl: AclStore | None = None
        self.trimmer = MemoryTrimmer(settings.malloc_trim_threshold_mb * 2**20)
        self._http_task: asyncio.Task[None] | None = None
        self.persistence: PersistenceMonitor | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._http_sock: socket.socket | None = None
        self.startup = StartupWait()
        self._waiting_http: WaitingHttp | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        s = self.settings
        # TLS first: a missing or bad certificate refuses to start before anything is
        # started or connected (nothing to stop again)
        opts = tls_options(s)
        if opts.enabled or s.http_tls_enable:
            self.tls = ServerTls(opts)
            self.tls.load()
            self.tls.start_watch()  # certificate files checked for changes (remoting and HTTPS)
        if self.serve_http:  # up at once: /readyz says what the pod is waiting for
            await self._open_http_port()
        target = RedisTarget(Deployment.STANDALONE)  # a client handed in (tests)
        options: dict[str, Any] = {}
        url: str | None = None
        if self.redis is None:
            url = s.redis_url
            if not url:
                self.embedded = EmbeddedRedis(persistence=s.persistence, data_dir=s.data_dir)
                await self.embedded.start()
                url = self.embedded.url
                log.info("no Redis URL configured: started an embedded Redis at %s", url)
                self._watch_task = asyncio.create_task(self._watch_embedded(), name="embedded")
            options = redis_client_options(s, url)
            self.redis = create_redis(url, **options)
            target = parse_target(url)
            log.info("route store: %s namespace %r", describe_url(url), s.namespace)
            await wait_for_redis(
                self.redis,
                "embedded" if self.embedded else describe_url(url),
                timeout_s=s.redis_startup_timeout_seconds,
                backoff_max_s=s.redis_startup_backoff_max_millis / 1000,
                state=self.startup,
            )
        self.persistence = PersistenceMonitor(
            self.redis, "embedded" if self.embedded else describe_url(url or "in-process")
        )
        await self.persistence.start()
        replication = Replication(s.redis_wait_replicas, s.redis_wait_timeout_millis)
        store = self.store = RouteStore(
            self.redis,
            s.namespace,
            delete_topic_with_broker_registration=s.delete_topic_with_broker_registration,
            deadlines=Deadlines(s.redis_read_timeout_millis, s.redis_write_timeout_millis),
            replication=replication,
            command_budget_ms=s.redis_command_budget_millis,
        )
        await load_scripts_unless_refused(store)
        await self._load_shared_config()
        self.topology = Topology(
            self.redis, target, store.keys, replication=replication, client_options=options
        )
        await self.topology.start()
        caps = self.capabilities = CapabilityMonitor(
            self.topology.expiry_client,
            store.keys,
            store.scripts.probe_expiry,
            wait_needed=lambda: replication.wait_replicas != 0,
        )
        await caps.start()
        self.topology.on_failover.append(caps.recheck)

        self.routes = RouteReader(
            store,
            order_message_enable=lambda: self._current().order_message_enable,
            support_acting_master=lambda: self._current().support_acting_master,
            enabled=s.route_cache_max_age_ms > 0,
        )
        self.processor = NamesrvProcessor(store, self.settings, self.routes)
        self.acl = AclStore(store)
        self.processor.guard = await start_acl(s, self.acl)
        # a lost event is noticed within two polls: the cache's staleness bound
        poll_s = s.route_cache_max_age_ms / 2000 if s.route_cache_max_age_ms > 0 else 0.5
        self.events = RouteEvents(self.redis, store.keys, store=store, poll_interval_s=poll_s)
        self.events.add_listener(self._on_route_event)
        self.events.on_data_loss.append(self._rebuild)
        await self.events.start()

        routes = self.routes

        def resubscribed() -> None:  # expiry events may have been lost: recheck, refetch
            routes.clear()
            caps.wake()

        self.liveness = Liveness(
            store,
            self.redis,
            scan_interval_ms=s.scan_not_active_broker_interval,
            on_reconnect=resubscribed,
            topology=self.topology,
        )
        await self.liveness.start()
        await self.processor.reconciler.start()  # the state is verified, not trusted
        self.topology.on_failover.append(self._failed_over)

        limits = FlowLimits.from_settings(s)
        set_max_inflated(s.flow_register_body_max_inflated)
        # big registrations off the loop: on a pod with a Redis URL of its own and not on
        # Cluster (confirmed writes there use a slot-owner client of the pod's loop)
        if limits.offload_min_body > 0 and url and target.deployment is not Deployment.CLUSTER:
            self.offload = Offloader(
                self.processor, url, min_body=limits.offload_min_body, client_options=options
            )
            await self.offload.start()
        self.remoting = RemotingServer(
            self.processor,
            host=s.listen_host,
            port=s.listen_port,
            max_frame_bytes=s.max_frame_bytes,
            max_connections=s.max_connections,
            idle_timeout_s=s.server_channel_max_idle_time_seconds,
            reuse_port=self.reuse_port,
            tls=self.tls if opts.enabled else None,
            limits=limits,
            offload=self.offload,
            after_big_request=self.trimmer.burst_ended,
        )
        try:
            await self.remoting.start()
        except OSError as e:
            raise listen_error(
                "remoting server", "listen_port", s.listen_host, s.listen_port, e
            ) from None
        await self._start_controller(s, store)

        self.advertiser = PodAdvertiser(
            self.redis, store.keys, listen_host=s.listen_host, listen_port=self.remoting.bound_port
        )
        await self.advertiser.start()
        await self.trimmer.start()
        if self.serve_http:
            await self._start_http()

    async def _start_controller(self, s: Settings, store: RouteStore) -> None:
        """RocketMQ 5 Controller mode (docs/controller.md): this pod answers the controller
        codes as the leader, on the remoting port and on ``controllerListenPort`` if set."""
        assert self.processor is not None and self.remoting is not None
        port = self.remoting.bound_port
        if s.controller_listen_port:
            self.controller_remoting = RemotingServer(
                self.processor,
                host=s.listen_host,
                port=s.controller_listen_port,
                pod_id=f"{self.remoting.pod_id}-controller",
                reuse_port=self.reuse_port,
            )
            await self.controller_remoting.start()
            port = self.controller_remoting.bound_port
        controller = self.processor.controller = Controller(
            ControllerStore(store),
            address=f"{advertised_host(s.listen_host)}:{port}",
            unclean=lambda: self._current().enable_elect_unclean_master,
            notify_enabled=lambda: self._current().notify_broker_role_changed,
            notifier=notify_broker,
        )
        self.controller_watch = ControllerWatch(
            controller, scan_interval_ms=lambda: self._current().scan_inactive_master_interval
        )
        if self.liveness is not None:  # one expired-key subscription serves both
            self.liveness.cleaner.on_other_key = self.controller_watch.expired_key
        await self.controller_watch.start()

    def _json_api(self, estate: EstateCollector) -> Any:
        """The FastAPI application of this pod (built by :class:`LazyApp` when first needed)."""
        from namesrv_redis.http.app import create_app
        from namesrv_redis.http.status import StatusSource, status_router

        s = self.settings
        assert self.store is not None and self.events is not None and self.routes is not None
        assert self.persistence is not None
        app = create_app(
            self.store,
            events=self.events,
            settings_provider=self._current,
            readiness=self.readiness,
            routes=self.routes,
            notices=self.notices,
            acl=self.acl,
            estate=estate,
        )
        app.include_router(
            status_router(
                StatusSource(
                    describe_url(s.redis_url or "embedded"),
                    s.namespace,
                    self.persistence,
                    self.embedded,
                )
            )
        )
        return app

    async def _start_http(self) -> None:
        import uvicorn

        from namesrv_redis.http.exposure import warn_if_unprotected
        from namesrv_redis.http.fast_protocol import route_protocol
        from namesrv_redis.http.fast_routes import RouteFastPath
        from namesrv_redis.http.limits import MAX_HEAD_BYTES, BodyLimit
        from namesrv_redis.http.probes import Probes

        s = self.settings
        assert self.store is not None and self.events is not None and self.routes is not None
        warn_if_unprotected(s, log)
        estate = EstateCollector(self.store.keys.namespace)
        self.http_app = LazyApp(
            lambda: self._json_api(estate),
            import_modules=("namesrv_redis.http.app", "namesrv_redis.http.status"),
        )
        if s.http_preload_app:
            await self.http_app.load()
        app = BodyLimit(
            RouteFastPath(
                Probes(self.http_app, self.store, estate, self.readiness, self.notices),
                self.routes,
                self.events,
            )
        )
        config = uvicorn.Config(
            app,
            log_config=None,  # uvicorn's lines go through our handler and format
            log_level=s.log_level.lower(),
            access_log=False,
            lifespan="off",
            **https_options(self.tls if s.http_tls_enable else None),
            http=route_protocol(self.routes, self.events),  # cached routes without ASGI
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        )
        if s.http_tls_enable and self.tls is not None:
            config.load()
            assert config.ssl is not None
            self.tls.follow(config.ssl)  # a certificate reload reaches HTTPS too
        self.http = _embedded_uvicorn(config)
        sock, self._http_sock = self._http_sock, None
        if sock is None:
            sock = listening_socket(s.http_host, s.http_port, reuse_port=self.reuse_port)
        self.http_port = sock.getsockname()[1]
        if self._waiting_http is not None:
            await self._waiting_http.stop()
            self._waiting_http = None
        self._http_task = asyncio.create_task(self.http.serve(sockets=[sock]), name="http")
        log.info(
            "HTTP tier listening on %s:%d%s",
            s.http_host,
            self.http_port,
            " (HTTPS)" if s.http_tls_enable else "",
        )

    async def _open_http_port(self) -> None:
        """Bind the HTTP port (a port in use fails the start before anything else starts) and
        answer it while the pod waits for Redis."""
        s = self.settings
        try:
            sock = listening_socket(s.http_host, s.http_port, reuse_port=self.reuse_port)
        except OSError as e:
            raise listen_error("HTTP tier", "http_port", s.http_host, s.http_port, e) from None
        self._http_sock = sock
        tls = self.tls.context if s.http_tls_enable and self.tls is not None else None
        self._waiting_http = WaitingHttp(sock, self.startup, tls)
        await self._waiting_http.start()

    async def stop(self, grace_s: float = 5.0) -> None:
        if self._watch_task is not None:  # never restart the embedded Redis while stopping
            self._watch_task.cancel()
            with contextlib.suppress(BaseException):
                await self._watch_task
        if self._waiting_http is not None:
            await self._waiting_http.stop()
        if self._http_sock is not None:
            self._http_sock.close()
        if self.http is not None:
            self.http.should_exit = True
        if self.remoting is not None:
            await self.remoting.stop(grace_s)
        if self.controller_remoting is not None:
            await self.controller_remoting.stop(grace_s)
        if self._http_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._http_task, grace_s)
        await self.trimmer.stop()
        if self.processor is not None:
            await self.processor.reconciler.stop()
        parts = (self.advertiser, self.liveness, self.events, self.topology, self.offload)
        for part in (self.controller_watch, *parts, self.capabilities):
            if part is not None:
                with contextlib.suppress(Exception):
                    await part.stop()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()
        if self.embedded is not None:
            await self.embedded.stop()
        if self.tls is not None:
            self.tls.close()

    async def run(self) -> None:
        """Start, serve until SIGTERM or SIGINT, stop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_tls)
        try:
            starting = asyncio.ensure_future(self.start())
            stop_asked = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait((starting, stop_asked), return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():  # a signal while waiting for Redis: stop without a trace
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError, StartupError):
                    await starting
                log.info("stopped before start-up finished (%s)", self.startup.reason)
                return
            stop_asked.cancel()
            starting.result()
            # What start-up allocated lives as long as the process: out of the collector's
            # generations, full collections stay short (they pause the loop).
            gc.freeze()
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

    def reload_tls(self) -> None:
        """SIGHUP: reload the TLS certificate from its files (remoting and HTTPS)."""
        if self.tls is not None:
            self.tls.reload()
        else:
            log.info("SIGHUP: TLS is off, nothing to reload")

    # ------------------------------------------------------------------ state

    def _current(self) -> Settings:
        """The live settings (UPDATE_NAMESRV_CONFIG may have changed them)."""
        return self.processor.settings if self.processor is not None else self.settings

    async def readiness(self) -> str | None:
        """None when ready, else why not (served as /readyz, within a second)."""
        if (
            self.store is None
            or self.liveness is None
            or self.events is None
            or self.capabilities is None
        ):
            return "starting"
        try:
            await self.store.deadlines.run("read", self.redis.ping())
        except Exception as e:
            return f"redis unreachable: {type(e).__name__}: {e}"
        # what the Redis user may do and how Redis evicts (docs/redis.md)
        if (problem := self.capabilities.problem()) is not None:
            return problem
        if not self.events.connected:
            return "route event subscription down"
        cleaner = self.liveness.cleaner
        if not cleaner.subscribed and cleaner.refusal is None:  # refused: sweeper-only, ready
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

    def notices(self) -> list[str]:
        """What works but degraded (served with /readyz)."""
        out = self.capabilities.notices() if self.capabilities is not None else []
        cleaner = self.liveness.cleaner if self.liveness is not None else None
        sweeper_only = (
            "dead brokers are found by the sweeper only (up to one "
            "scanNotActiveBrokerInterval late)"
        )
        if cleaner is not None and cleaner.refusal is not None:
            out.append(f"expired-key events refused: {cleaner.refusal.text()}; {sweeper_only}")
        elif cleaner is not None and cleaner.notifications is False:
            out.append(
                "no expired-key event seen for a probe key (notify-keyspace-events lacks Ex?): "
                + sweeper_only
            )
        return out

    async def _rebuild(self, reason: str) -> None:
        if self.processor is None:
            return
        if not self._current().rebuild_on_data_loss:
            log.warning("not re-applying registrations (%s): rebuildOnDataLoss=false", reason)
            return
        await self.processor.rebuild(reason)

    async def _failed_over(self, reason: str) -> None:
        """A new master or slot owner: it may lack acknowledged writes and expiry events."""
        if self.liveness is not None:
            self.liveness.sweeper.wake.set()
        if self.offload is not None:
            await self.offload.drop_connections()
        await self._rebuild(f"after a failover ({reason})")

    async def _watch_embedded(self) -> None:
        """Restart the embedded Redis on its own files if it dies."""
        assert self.embedded is not None
        while True:
            await asyncio.sleep(0.25)
            try:
                if await self.embedded.ensure_running_async():
                    EMBEDDED_REDIS_RESTARTS.inc()
            except Exception:
                log.exception("restarting the embedded Redis failed; retrying")

    def _on_route_event(self, event: RouteEvent) -> None:
        if self.routes is not None:
            self.routes.invalidate(event.topics, event.brokers)
        if event.kind == "config" or event.topics is None:
            asyncio.get_running_loop().create_task(self._load_shared_config())
