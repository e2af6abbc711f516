"""Acknowledge a write only once it is safe on the master a failover would keep.

Redis replicates asynchronously: a script that returned on the master may still be lost if
that master fails over (or is demoted by Sentinel) before its replica received it — and a
broker that was told "registered" never registers that data again. So when the master has
replicas, every write script is followed, on the same connection and in the same round trip,
by ``WAIT <n> <timeout>``; a write that fewer than ``n`` replicas confirmed within the
timeout is answered SYSTEM_ERROR ("not confirmed by a replica"), which makes the broker (or
admin) retry, instead of success.

``redisWaitReplicas`` sets ``n``: ``-1`` (the default) means "the replicas the master has,
capped at 1" — re-read every few seconds by :class:`~namesrv_redis.store.topology.Topology`
(from Sentinel's view of the service when there is one, else ``INFO replication``); ``0``
turns confirmation off; ``n > 0`` always waits for ``n``. Under Sentinel the count comes
from the sentinels, not from the master, because a master that a failover is demoting has
already lost its replica: asking it would answer 0 and let exactly the writes that will be
lost through.

Redis' own ``min-replicas-to-write`` refuses writes on a master with too few *connected*
replicas; it complements this (it fences an isolated old master) but confirms nothing about
a particular write, so it cannot replace ``WAIT``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError, ResponseError

from namesrv_redis.store.script_pipe import ScriptPipe, pipe_for
from namesrv_redis.telemetry.metrics import REPLICATION_UNCONFIRMED

AUTO = -1
DEFAULT_WAIT_TIMEOUT_MS = 1000


class ReplicationNotConfirmed(RedisError):
    """A write was applied on the master but not confirmed by enough replicas in time."""

    def __init__(self, wanted: int, got: int, timeout_ms: int) -> None:
        super().__init__(
            f"write not confirmed by {wanted} replica(s) within {timeout_ms} ms "
            f"(confirmed by {got}): not acknowledged, retry"
        )


@dataclass(slots=True)
class Replication:
    """How many replicas each write waits for."""

    wait_replicas: int = AUTO
    timeout_ms: int = DEFAULT_WAIT_TIMEOUT_MS
    replicas_seen: int = 0
    """The master's replicas as last observed (used when ``wait_replicas`` is AUTO)."""
    node_client: Callable[[], Any] | None = None
    """Redis Cluster: a plain client of the node that owns the namespace's slot (a cluster
    client cannot pipeline a script and WAIT on one connection); None elsewhere."""
    slot_moved: Callable[[], Awaitable[None]] | None = None
    """Redis Cluster: find the slot's owner again (after MOVED/ASK)."""

    @property
    def wanted(self) -> int:
        if self.wait_replicas == AUTO:
            return min(1, self.replicas_seen)
        return self.wait_replicas


def batched(
    pipe: ScriptPipe | None, replication: Replication | None, script: Any
) -> ScriptPipe | None:
    """The script pipe a write goes through (store/script_pipe.py): the client's, when no
    replica is awaited and ``script`` is a loaded script; else None (redis-py's path)."""
    if pipe is None or not isinstance(script, AsyncScript):
        return None
    if replication is not None and replication.wanted > 0:
        return None  # WAIT on the script's own connection
    return pipe


async def run_script(
    redis: Any,
    replication: Replication | None,
    script: AsyncScript,
    keys: Sequence[Any],
    args: Sequence[Any],
) -> Any:
    """Run one write script; with replicas, confirm it with WAIT on the same connection."""
    pipe = batched(pipe_for(redis), replication, script)
    if pipe is not None:
        return await pipe.run(script, keys, args)
    wanted = replication.wanted if replication is not None else 0
    if wanted <= 0 or replication is None:
        return await script(keys=keys, args=args)
    for attempt in (1, 2, 3):
        client = replication.node_client() if replication.node_client is not None else redis
        async with client.pipeline(transaction=False) as pipe:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", wanted, replication.timeout_ms)
            result, confirmed = await pipe.execute(raise_on_error=False)
        if isinstance(result, NoScriptError) and attempt < 3:
            # the script cache was flushed (restart, failover): load it and run again
            script.sha = await client.script_load(script.script)
            continue
        if (
            isinstance(result, ResponseError)
            and str(result).startswith(("MOVED", "ASK"))
            and replication.slot_moved is not None
            and attempt < 3
        ):
            await replication.slot_moved()  # the slot moved under us: follow it, once
            continue
        if isinstance(result, BaseException):
            raise result
        if isinstance(confirmed, BaseException):
            raise confirmed
        if int(confirmed) < wanted:
            REPLICATION_UNCONFIRMED.inc()
            raise ReplicationNotConfirmed(wanted, int(confirmed), replication.timeout_ms)
        return result
    raise AssertionError("unreachable")
