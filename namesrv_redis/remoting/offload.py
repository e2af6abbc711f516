"""Big registrations off the event loop: a worker thread with its own loop and Redis client.

A 100,000-topic REGISTER_BROKER body (15 MB) costs about a second of Python work — decoding
it, diffing it against the remembered table, and above all packing half a million script
arguments into the Redis protocol. Done on the pod's event loop, that second is a second in
which no other client is answered. The :class:`Offloader` runs such requests, start to end,
on a second thread: the handler is the very one the loop would run (a second
:class:`~namesrv_redis.remoting.processor.NamesrvProcessor` sharing the pod's settings and
remembered registrations), only its store talks to Redis through a client of its own.

Python threads share one interpreter lock, so the worker's Python code and the loop take
turns; while a job runs, the switch interval is lowered to 0.5 ms so that the loop waits at
most that long for its turn (C code that holds the lock, such as one JSON decode of the
whole body, is not interrupted: about 6 ms per MB).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

from redis.exceptions import RedisError

from namesrv_redis.remoting.codec import RemotingCommand
from namesrv_redis.remoting.handler_types import Connection, Response
from namesrv_redis.remoting.processor import NamesrvProcessor
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.rocketmq.errors import RemotingError
from namesrv_redis.store.capabilities import load_scripts_unless_refused
from namesrv_redis.store.connection import create_redis
from namesrv_redis.store.replication import Replication
from namesrv_redis.store.route_store import RouteStore

log = logging.getLogger(__name__)

_REGISTER = int(RequestCode.REGISTER_BROKER)
JOB_SWITCH_INTERVAL_S = 0.0005
MAX_CONCURRENT_JOBS = 2
"""Big registrations decoded at once: each may hold a 16 MiB body, its inflated form and its
decoded table, so this bounds their memory (brokers register every 30 s: they wait a moment)."""


class _SwitchInterval:
    """Lowers the interpreter's switch interval while at least one job runs."""

    def __init__(self) -> None:
        self._active = 0
        self._saved = sys.getswitchinterval()

    @contextlib.contextmanager
    def lowered(self) -> Iterator[None]:
        if self._active == 0:
            self._saved = sys.getswitchinterval()
            sys.setswitchinterval(min(self._saved, JOB_SWITCH_INTERVAL_S))
        self._active += 1
        try:
            yield
        finally:
            self._active -= 1
            if self._active == 0:
                sys.setswitchinterval(self._saved)


async def _process(worker: NamesrvProcessor, cmd: RemotingCommand, conn: Connection) -> Response:
    """``worker.process`` on the worker's loop. A failure crosses to the pod's loop without
    its traceback: the frames it references (a 16 MiB inflated body, a decoded table) would
    otherwise live as long as the futures that carried it. Unexpected ones are logged here,
    with their traceback, first."""
    try:
        return await worker.process(cmd, conn)
    except Exception as e:
        if not isinstance(e, (RemotingError, RedisError)):
            log.exception("offloaded request code=%d failed", cmd.code)
        chained: BaseException | None = e
        for _ in range(16):  # a chain is short; never loop on a cyclic one
            if chained is None:
                break
            chained.__traceback__ = None
            chained = chained.__cause__ or chained.__context__
        raise e from e.__cause__


class Offloader:
    def __init__(
        self,
        processor: NamesrvProcessor,
        redis_url: str,
        *,
        min_body: int = 256 * 1024,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self.main = processor
        self.redis_url = redis_url
        self.client_options = dict(client_options or {})
        """The pod's credentials and TLS options (redis_tls.py)."""
        self.min_body = min_body
        self.jobs = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: NamesrvProcessor | None = None
        self._redis: Any = None
        self._switch = _SwitchInterval()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_JOBS)

    def wants(self, cmd: RemotingCommand) -> bool:
        return cmd.code == _REGISTER and cmd.body_at_least(self.min_body)

    async def start(self) -> None:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        main_loop = asyncio.get_running_loop()

        def report(exc: BaseException | None) -> None:
            if not ready.done():
                if exc is None:
                    ready.set_result(None)
                else:
                    ready.set_exception(exc)

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._setup())
            except BaseException as e:  # reported to start(), which raises it
                main_loop.call_soon_threadsafe(report, e)
                loop.close()
                return
            main_loop.call_soon_threadsafe(report, None)
            loop.run_forever()
            loop.run_until_complete(self._teardown())
            loop.close()

        self._thread = threading.Thread(target=run, name="register-offload", daemon=True)
        self._thread.start()
        await ready

    async def _setup(self) -> None:
        self._redis = create_redis(self.redis_url, max_connections=8, **self.client_options)
        main = self.main.store
        replication = main.replication
        store = RouteStore(
            self._redis,
            main.keys.namespace,
            delete_topic_with_broker_registration=main.delete_topic_with_broker_registration,
            deadlines=main.deadlines,
            command_budget_ms=main.command_budget_ms,
            # confirmed as the pod's own writes; the replica count is copied in per job
            replication=Replication(replication.wait_replicas, replication.timeout_ms)
            if replication is not None
            else None,
        )
        await load_scripts_unless_refused(store)  # a refusal: the pod says so, not ready
        worker = NamesrvProcessor(store, self.main.settings, self.main.routes)
        worker.registrations = self.main.registrations
        worker.accepted = self.main.accepted  # re-applied after a data loss like any other
        self._worker = worker

    async def _teardown(self) -> None:
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()

    async def process(self, cmd: RemotingCommand, conn: Connection) -> Response:
        """Run ``cmd`` on the worker; the caller's loop stays free meanwhile. The ACL check
        runs here, on the pod's loop, before anything is handed over."""
        refused = await self.main.refusal(cmd, conn)
        if refused is not None:
            return refused
        worker, loop = self._worker, self._loop
        assert worker is not None and loop is not None, "Offloader not started"
        async with self._slots:
            worker.settings = self.main.settings  # UPDATE_NAMESRV_CONFIG may have changed them
            if worker.store.replication is not None and self.main.store.replication is not None:
                worker.store.replication.replicas_seen = self.main.store.replication.replicas_seen
            worker.store.delete_topic_with_broker_registration = (
                self.main.store.delete_topic_with_broker_registration
            )
            self.jobs += 1
            with self._switch.lowered():
                future = asyncio.run_coroutine_threadsafe(_process(worker, cmd, conn), loop)
                return await asyncio.wrap_future(future)

    async def drop_connections(self) -> None:
        """A Redis failover: drop the worker client's connections too (they may still point
        at a demoted master); the next job reconnects through discovery."""
        loop = self._loop
        if loop is None or self._redis is None or not loop.is_running():
            return
        pool = getattr(self._redis, "connection_pool", None)
        if pool is None:
            return
        future = asyncio.run_coroutine_threadsafe(pool.disconnect(inuse_connections=True), loop)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.wrap_future(future), 2.0)

    async def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join, 10)
