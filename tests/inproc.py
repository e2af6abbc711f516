"""An in-process remoting server over a real Redis (route store, route cache kept current by
events, processor, server on a free port), for tests and the fuzzer."""

from __future__ import annotations

from typing import Any

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.remoting.processor import NamesrvProcessor
from namesrv_redis.remoting.server import RemotingServer
from namesrv_redis.settings.config import Settings
from namesrv_redis.store.route_store import RouteStore
from tests.conftest import cached_routes


class InProcessServer:
    def __init__(self, redis: Any, namespace: str, settings: Settings | None = None) -> None:
        self.redis, self.namespace = redis, namespace
        self.settings = settings or Settings()
        self.store = RouteStore(redis, namespace)
        self.server: RemotingServer | None = None
        self.events: Any = None

    async def start(self) -> InProcessServer:
        await self.store.load_scripts()
        routes, self.events = await cached_routes(self.redis, self.store)
        self.processor = NamesrvProcessor(self.store, self.settings, routes)
        self.server = RemotingServer(
            self.processor,
            host="127.0.0.1",
            port=0,
            idle_timeout_s=self.settings.server_channel_max_idle_time_seconds,
        )
        await self.server.start()
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.bound_port

    async def client(self) -> RemotingClient:
        return await RemotingClient.connect("127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace_s=1)
        if self.events is not None:
            await self.events.stop()
