"""The batched script path (store/script_pipe.py) against a real redis-server: every caller
gets its own reply, an error reply fails only its own call, NOSCRIPT reloads, a dropped
connection is retried, a hung Redis ends in the caller's deadline and leaves no stale reply
behind; and it is used only where it can serve."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from namesrv_redis.store.connection import create_redis
from namesrv_redis.store.deadlines import Deadlines, StoreTimeout
from namesrv_redis.store.script_pipe import ScriptPipe, pipe_for
from tests.conftest import RedisServerProcess

pytestmark = pytest.mark.real_redis

ECHO = """
if ARGV[1] == 'fail' then return redis.error_reply('asked to fail ' .. KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[1])
return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1] .. ':n')}
"""


async def _pipe_and_script(client: Any) -> tuple[ScriptPipe, Any]:
    pipe = pipe_for(client)
    assert isinstance(pipe, ScriptPipe)
    script = client.register_script(ECHO)
    await client.script_load(ECHO)
    return pipe, script


async def test_concurrent_calls_get_their_own_replies_and_errors(
    real_redis: Any, namespace: str
) -> None:
    pipe, script = await _pipe_and_script(real_redis)

    async def call(i: int) -> Any:
        return await pipe.run(script, [f"{namespace}:{i}"], ["fail" if i % 7 == 3 else i])

    results = await asyncio.gather(*(call(i) for i in range(500)), return_exceptions=True)
    for i, r in enumerate(results):
        if i % 7 == 3:
            assert isinstance(r, ResponseError) and f"asked to fail {namespace}:{i}" in str(r)
        else:
            assert r == [f"{namespace}:{i}".encode(), str(i).encode(), 1], (i, r)
    # written by Redis, once each
    assert await real_redis.get(f"{namespace}:11") == b"11"
    assert await real_redis.get(f"{namespace}:11:n") == b"1"
    assert await real_redis.get(f"{namespace}:10") is None  # its script failed first


async def test_noscript_after_a_flush_loads_the_script_again(
    real_redis: Any, namespace: str
) -> None:
    pipe = pipe_for(real_redis)
    assert pipe is not None
    script = real_redis.register_script(ECHO)
    assert (await pipe.run(script, [namespace], ["a"]))[1] == b"a"
    await real_redis.script_flush()
    got = await asyncio.gather(*(pipe.run(script, [f"{namespace}{i}"], ["b"]) for i in range(20)))
    assert all(g[1] == b"b" for g in got)


async def test_a_killed_connection_is_retried_on_another(
    redis_server: RedisServerProcess, namespace: str
) -> None:
    client = create_redis(redis_server.url)
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        pipe = pipe_for(client)
        assert pipe is not None
        script = client.register_script(ECHO)
        await pipe.run(script, [namespace], ["warm"])
        for round_ in range(3):
            # every connection of the pod's client dropped between batches
            await admin.client_kill_filter(_type="normal", skipme=True)
            got = await asyncio.gather(
                *(pipe.run(script, [f"{namespace}:{round_}:{i}"], [i]) for i in range(50))
            )
            assert [g[1] for g in got] == [str(i).encode() for i in range(50)]
    finally:
        await client.aclose()
        await admin.aclose()


async def test_a_hung_redis_ends_in_the_deadline_and_leaves_no_stale_reply(
    namespace: str,
) -> None:
    server = RedisServerProcess().start()
    client = create_redis(server.url)
    try:
        pipe = pipe_for(client)
        assert pipe is not None and server.proc is not None
        script = client.register_script(ECHO)
        await pipe.run(script, [namespace], ["before"])
        deadlines = Deadlines(read_ms=300, write_ms=300)
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(StoreTimeout):
                await deadlines.run("write", pipe.run(script, [f"{namespace}:hung"], ["x"]))
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        # the reply the hung call never read must not become the next call's answer
        for i in range(20):  # (the default deadlines: a busy machine may be slow to resume)
            got = await Deadlines().run("write", pipe.run(script, [f"{namespace}:{i}"], [i]))
            assert got[:2] == [f"{namespace}:{i}".encode(), str(i).encode()]
    finally:
        await client.aclose()
        server.stop()


async def test_a_socket_timeout_past_the_retries_is_a_redis_timeout(namespace: str) -> None:
    """With no caller deadline, the connection's socket timeout bounds a batch: retried,
    then failed as redis-py fails (a Redis TimeoutError, which the tiers answer as one)."""
    server = RedisServerProcess().start()
    client = aioredis.Redis.from_url(server.url, socket_timeout=0.2, retry=Retry(NoBackoff(), 1))
    try:
        pipe = pipe_for(client)
        assert pipe is not None and server.proc is not None
        script = client.register_script(ECHO)
        await pipe.run(script, [namespace], ["before"])
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(RedisTimeoutError):
                await pipe.run(script, [f"{namespace}:hung"], ["x"])
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert (await pipe.run(script, [namespace], ["after"]))[1] == b"after"
    finally:
        await client.aclose()
        server.stop()


async def test_a_cancelled_caller_does_not_disturb_the_others(
    real_redis: Any, namespace: str
) -> None:
    pipe, script = await _pipe_and_script(real_redis)
    tasks = [asyncio.ensure_future(pipe.run(script, [f"{namespace}:{i}"], [i])) for i in range(40)]
    tasks[5].cancel()
    tasks[17].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for i, r in enumerate(results):
        if i in (5, 17):
            assert isinstance(r, asyncio.CancelledError)
        else:
            assert r[1] == str(i).encode()


def test_only_plain_clients_get_a_pipe() -> None:
    assert pipe_for(fakeredis.FakeAsyncRedis()) is None
    cluster = create_redis("redis+cluster://127.0.0.1:1")
    assert pipe_for(cluster) is None
    plain = create_redis("redis://127.0.0.1:1/0")
    assert pipe_for(plain) is pipe_for(plain) is not None
    sentinel = create_redis("redis+sentinel://127.0.0.1:1/mymaster")
    assert pipe_for(sentinel) is not None
