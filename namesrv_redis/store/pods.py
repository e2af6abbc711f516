"""Pod advertisement for the address server: each pod keeps its remoting address in the
namespace's ``pods`` sorted set (score = deadline), and ``GET /rocketmq/nsaddr`` lists the
live ones in the ``host:port;host:port`` form RocketMQ clients poll."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import Any

from namesrv_redis.store.keys import Keys

log = logging.getLogger(__name__)

TTL_MS = 15_000
INTERVAL_S = 5.0


def advertised_host(listen_host: str) -> str:
    """The address other machines reach this pod at."""
    if listen_host not in ("0.0.0.0", "::", ""):
        return listen_host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


async def live_pod_addresses(redis: Any, keys: Keys, now_ms: int | None = None) -> list[str]:
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    members = await redis.zrangebyscore(keys.pods, now, "+inf")
    return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)


class PodAdvertiser:
    def __init__(
        self,
        redis: Any,
        keys: Keys,
        *,
        listen_host: str,
        listen_port: int,
        advertised: str | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.address = advertised or f"{advertised_host(listen_host)}:{listen_port}"
        self._task: asyncio.Task[None] | None = None

    async def advertise_once(self) -> None:
        now = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self.keys.pods, {self.address: now + TTL_MS})
            pipe.zremrangebyscore(self.keys.pods, "-inf", now)
            await pipe.execute()

    async def _run(self) -> None:
        while True:
            try:
                await self.advertise_once()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("pod advertisement failed: %s", e)
            await asyncio.sleep(INTERVAL_S)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pod-advertiser")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # bounded: a cancellation swallowed inside a Redis call must not hang shutdown
            await asyncio.wait([self._task], timeout=2.0)
        with contextlib.suppress(Exception):
            await self.redis.zrem(self.keys.pods, self.address)
