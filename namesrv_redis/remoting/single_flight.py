"""Identical list queries in flight at once are answered by one computation.

GET_ALL_TOPIC_LIST over 17,000 topics costs the event loop ~15 ms (a 17,000-member set from
Redis, decoded and sorted, then a 400 KB answer); 32 of them pipelined on one connection, or
one each from 400 connections, are 32 or 400 times the same work, during which the loop
answers nobody else. A request that finds an identical one (same code, version and header
fields, no body) still being computed waits for that computation's answer instead: concurrent
reads may be answered from the same snapshot.

Read-your-writes on this pod is kept: a request joins a computation only if no write request
(registration, KV or topic change…) has completed on this pod since that computation began.
Only the list and cluster queries are coalesced; KV reads and route queries are not (routes
have their own cache).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable

from namesrv_redis.remoting.codec import RemotingCommand
from namesrv_redis.remoting.handler_types import Response
from namesrv_redis.rocketmq.codes import RequestCode

COALESCED = frozenset(
    int(c)
    for c in (
        RequestCode.GET_BROKER_CLUSTER_INFO,
        RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
        RequestCode.GET_TOPICS_BY_CLUSTER,
        RequestCode.GET_SYSTEM_TOPIC_LIST_FROM_NS,
        RequestCode.GET_UNIT_TOPIC_LIST,
        RequestCode.GET_HAS_UNIT_SUB_TOPIC_LIST,
        RequestCode.GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST,
    )
)

WRITES = frozenset(
    int(c)
    for c in (
        RequestCode.PUT_KV_CONFIG,
        RequestCode.DELETE_KV_CONFIG,
        RequestCode.REGISTER_BROKER,
        RequestCode.UNREGISTER_BROKER,
        RequestCode.WIPE_WRITE_PERM_OF_BROKER,
        RequestCode.ADD_WRITE_PERM_OF_BROKER,
        RequestCode.DELETE_TOPIC_IN_NAMESRV,
        RequestCode.REGISTER_TOPIC_IN_NAMESRV,
        RequestCode.UPDATE_NAMESRV_CONFIG,
        RequestCode.QUERY_DATA_VERSION,
        RequestCode.BROKER_HEARTBEAT,
    )
)

_Flight = tuple[int, "asyncio.Future[Response]"]


class SingleFlight:
    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight] = {}
        self.writes = 0
        """Write requests completed on this pod (a computation's generation)."""
        self.computed = 0
        self.joined = 0

    @staticmethod
    def key(cmd: RemotingCommand) -> Hashable | None:
        if cmd.code not in COALESCED or cmd.body:
            return None
        ext = cmd.ext_fields
        return (cmd.code, cmd.version, tuple(sorted(ext.items())) if ext else ())

    async def run(
        self, cmd: RemotingCommand, compute: Callable[[], Awaitable[Response]]
    ) -> Response:
        key = self.key(cmd)
        if key is None:
            try:
                return await compute()
            finally:
                if cmd.code in WRITES:
                    self.writes += 1
        flight = self._flights.get(key)
        if flight is not None and flight[0] == self.writes:
            self.joined += 1
            return await asyncio.shield(flight[1])
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._flights[key] = (self.writes, future)
        self.computed += 1
        try:
            response = await compute()
        except Exception as e:
            future.set_exception(e)
            future.exception()  # retrieved: no warning when nobody joined
            raise
        except BaseException:  # cancelled (the server is stopping): so are those who joined
            future.cancel()
            raise
        else:
            future.set_result(response)
            return response
        finally:
            current = self._flights.get(key)
            if current is not None and current[1] is future:
                del self._flights[key]
