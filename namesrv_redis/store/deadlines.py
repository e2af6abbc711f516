"""Deadlines on Redis calls: nothing waits on Redis longer than a RocketMQ client would.

A hung Redis (SIGSTOP, a stalled network, a full kernel buffer) does not fail a socket; it
just never answers. RocketMQ clients give up on a route query after 3 s and brokers on a
registration after 6 s, so a name server that waits longer than that answers nobody. Every
:class:`~namesrv_redis.store.route_store.RouteStore` call therefore runs under a deadline —
``redisReadTimeoutMillis`` (default 1000) for reads, ``redisWriteTimeoutMillis`` (default
2000) for writes, which includes the replication confirmation of
:mod:`namesrv_redis.store.replication` — and past it raises :class:`StoreTimeout`, which the
remoting tier answers as SYSTEM_ERROR and the HTTP tier as 503. Cancelling a redis-py command
closes its connection, so a hung connection is never reused, and the connection pool's own
wait for a free connection counts against the same deadline: work queued behind a hung
Redis is bounded by the deadline, not by Redis.

A write whose deadline passes may still have been applied by Redis; every script is
idempotent, so the client's retry is harmless.

A connection that a failover handler closes while a command is being written on it makes
redis-py fail with an ``AttributeError`` from inside its connection code (its stream writer
is already gone); that is a lost connection like any other, and is raised as
``redis.ConnectionError`` so that it is answered and logged as one.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from namesrv_redis.store.event_loop import Deadline, running_loop

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_READ_TIMEOUT_MS = 1000
DEFAULT_WRITE_TIMEOUT_MS = 2000


class StoreTimeout(RedisTimeoutError):
    """Redis did not answer within the call's deadline."""

    def __init__(self, kind: str, timeout_ms: int) -> None:
        super().__init__(
            f"route store timed out: no {kind} answer from Redis within {timeout_ms} ms"
        )
        self.kind = kind
        self.timeout_ms = timeout_ms


@dataclass(frozen=True, slots=True)
class Deadlines:
    read_ms: int = DEFAULT_READ_TIMEOUT_MS
    write_ms: int = DEFAULT_WRITE_TIMEOUT_MS

    async def run(self, kind: str, awaitable: Awaitable[R]) -> R:
        """Await ``awaitable`` within the ``kind`` ("read" or "write") deadline."""
        ms = self.write_ms if kind == "write" else self.read_ms
        deadline = Deadline(running_loop(), ms / 1000)  # asyncio.timeout, without getpid
        try:
            return await awaitable
        except asyncio.CancelledError:
            if deadline.expired_here():
                raise StoreTimeout(kind, ms) from None
            raise
        except AttributeError as e:
            if not _raised_by_redis_connection(e):
                raise
            raise RedisConnectionError(f"connection to Redis closed under a command: {e}") from e
        finally:
            deadline.close()


def _raised_by_redis_connection(e: BaseException) -> bool:
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename if tb is not None else ""
    return filename.replace("\\", "/").endswith("/redis/asyncio/connection.py")


class HasDeadlines(Protocol):
    deadlines: Deadlines


S = TypeVar("S", bound=HasDeadlines)


def _bounded(
    kind: str, fn: Callable[Concatenate[S, P], Awaitable[R]]
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    @functools.wraps(fn)
    async def bounded(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self.deadlines.run(kind, fn(self, *args, **kwargs))

    return bounded


def read(
    fn: Callable[Concatenate[S, P], Awaitable[R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Method decorator: the call runs under the read deadline."""
    return _bounded("read", fn)


def write(
    fn: Callable[Concatenate[S, P], Awaitable[R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Method decorator: the call runs under the write deadline."""
    return _bounded("write", fn)
