"""The eviction policy of the pod's Redis, read and judged (issue 21, item 2; docs/redis.md).

A real ``redis-server`` with a memory limit and each ``maxmemory-policy``: ``allkeys-*`` makes
the pod unready and says which setting to change; ``volatile-*`` is ready with a notice (the
liveness keys are evicted first); ``noeviction`` is ready and quiet. The metric names the
policy found and where it was read (CONFIG GET, or INFO memory where CONFIG is renamed away).
A policy changed while the pod runs is noticed at the next check.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from namesrv_redis.process.pod import Pod
from namesrv_redis.settings.config import Settings
from namesrv_redis.telemetry.metrics import REGISTRY
from tests.conftest import RedisServerProcess

MAXMEMORY = 256 * 2**20


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServerProcess]:
    s = RedisServerProcess("--maxmemory", str(MAXMEMORY)).start()
    yield s
    s.stop()


@pytest.fixture
async def admin(server: RedisServerProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(port=server.port)
    yield client
    await client.config_set("maxmemory-policy", "noeviction")
    await client.config_set("maxmemory", str(MAXMEMORY))
    await client.aclose()


async def started_pod(url: str, namespace: str) -> Pod:
    pod = Pod(
        Settings(redis_url=url, namespace=namespace, listen_host="127.0.0.1", listen_port=0),
        http=False,
    )
    await pod.start()
    return pod


async def readiness_after_check(pod: Pod) -> str | None:
    """What /readyz says once the pod has checked again and its loops are up."""
    assert pod.capabilities is not None
    await pod.capabilities.check()
    deadline = time.monotonic() + 10
    reason = await pod.readiness()
    while reason in ("expiry cleaner not subscribed", "route event subscription down"):
        assert time.monotonic() < deadline, reason
        await asyncio.sleep(0.05)
        reason = await pod.readiness()
    return reason


def policy_metric(policy: str, source: str = "config") -> float | None:
    return REGISTRY.get_sample_value(
        "namesrv_redis_maxmemory_policy", {"policy": policy, "source": source}
    )


@pytest.mark.parametrize(
    ("policy", "ready"),
    [
        ("allkeys-lru", False),
        ("allkeys-lfu", False),
        ("allkeys-random", False),
        ("volatile-lru", True),
        ("volatile-ttl", True),
        ("noeviction", True),
    ],
)
async def test_each_policy_readiness_and_metric(
    server: RedisServerProcess, admin: aioredis.Redis, namespace: str, policy: str, ready: bool
) -> None:
    await admin.config_set("maxmemory-policy", policy)
    pod = await started_pod(server.url, namespace)
    try:
        reason = await readiness_after_check(pod)
        assert policy_metric(policy) == 1
        assert REGISTRY.get_sample_value("namesrv_redis_maxmemory_bytes") == MAXMEMORY
        notices = " | ".join(pod.notices())
        if not ready:
            assert reason is not None and f"maxmemory-policy {policy}" in reason, reason
            assert "set maxmemory-policy noeviction" in reason, reason
        else:
            assert reason is None, reason
            assert (f"maxmemory-policy {policy}" in notices) is policy.startswith("volatile-")
    finally:
        await pod.stop(grace_s=0.5)


async def test_policy_changed_at_run_time_is_noticed(
    server: RedisServerProcess, admin: aioredis.Redis, namespace: str
) -> None:
    pod = await started_pod(server.url, namespace)
    try:
        assert await readiness_after_check(pod) is None
        await admin.config_set("maxmemory-policy", "allkeys-lru")
        assert pod.capabilities is not None
        pod.capabilities.wake()  # the periodic check, now
        deadline = time.monotonic() + 10
        while (reason := await pod.readiness()) is None:
            assert time.monotonic() < deadline, "allkeys-lru not noticed"
            await asyncio.sleep(0.05)
        assert "allkeys-lru" in reason
        await admin.config_set("maxmemory-policy", "noeviction")
        pod.capabilities.wake()
        while await pod.readiness() is not None:
            assert time.monotonic() < deadline + 10, "noeviction not noticed"
            await asyncio.sleep(0.05)
    finally:
        await pod.stop(grace_s=0.5)


async def test_allkeys_without_a_memory_limit_is_ready_with_a_notice(
    server: RedisServerProcess, admin: aioredis.Redis, namespace: str
) -> None:
    await admin.config_set("maxmemory-policy", "allkeys-lru")
    await admin.config_set("maxmemory", "0")
    pod = await started_pod(server.url, namespace)
    try:
        assert await readiness_after_check(pod) is None
        assert any("no memory limit" in n for n in pod.notices()), pod.notices()
    finally:
        await pod.stop(grace_s=0.5)


async def test_policy_read_from_info_when_config_is_renamed(namespace: str) -> None:
    renamed = RedisServerProcess(
        "--maxmemory",
        str(MAXMEMORY),
        "--maxmemory-policy",
        "allkeys-lru",
        "--rename-command",
        "CONFIG",
        "",
    ).start()
    try:
        pod = await started_pod(renamed.url, namespace)
        try:
            reason = await readiness_after_check(pod)
            assert reason is not None and "maxmemory-policy allkeys-lru" in reason, reason
            assert policy_metric("allkeys-lru", "info") == 1
        finally:
            await pod.stop(grace_s=0.5)
    finally:
        renamed.stop()
