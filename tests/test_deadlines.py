"""Deadlines on Redis calls: a hung call becomes StoreTimeout; a connection closed under a
command (redis-py's AttributeError from its connection module) becomes ConnectionError; any
other error passes through unchanged."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from namesrv_redis.store.deadlines import Deadlines, StoreTimeout


def _raiser(filename: str) -> Any:
    """An async function whose frame lives in ``filename``, raising AttributeError there."""
    scope: dict[str, Any] = {}
    code = "async def send():\n    None.writelines([b'x'])\n"
    exec(compile(code, filename, "exec"), scope)  # a frame with a chosen file name
    return scope["send"]


async def test_a_hung_call_times_out() -> None:
    with pytest.raises(StoreTimeout, match="no read answer from Redis within 50 ms"):
        await Deadlines(read_ms=50).run("read", asyncio.sleep(5))


async def test_a_connection_closed_under_a_command_is_a_connection_error() -> None:
    send = _raiser("/venv/site-packages/redis/asyncio/connection.py")
    with pytest.raises(RedisConnectionError, match="closed under a command"):
        await Deadlines().run("write", send())


async def test_other_attribute_errors_are_not_disguised() -> None:
    send = _raiser("/work/namesrv_redis/store/route_store.py")
    with pytest.raises(AttributeError):
        await Deadlines().run("write", send())
