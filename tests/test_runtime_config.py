"""UPDATE_NAMESRV_CONFIG (issue 12, point 5): Java's options only, validated, all or nothing,
applied on every pod — including the idle timeout of running pods' connections."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from namesrv_redis.domain.runtime_config import ConfigRefused, apply_stored, apply_update
from namesrv_redis.process.pod import Pod
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.settings.config import Settings
from namesrv_redis.store.keys import Keys
from tests.conftest import RedisServerProcess
from tests.inproc import InProcessServer


async def update(c: RemotingClient, text: str) -> Any:
    resp = await c.request(RequestCode.UPDATE_NAMESRV_CONFIG, {}, text.encode())
    assert resp is not None
    return resp


@pytest.fixture
async def pod(real_redis: Any, namespace: str) -> AsyncIterator[InProcessServer]:
    server = await InProcessServer(real_redis, namespace).start()
    yield server
    await server.stop()


@pytest.mark.parametrize(
    "text",
    [
        "brokerChannelExpiredTime=100",
        "routeCacheMaxAgeMs=0",
        "listenPort=1",
        "redisUrl=redis://evil:1",
        "noSuchOption=1",
        "serverChannelMaxIdleTimeSeconds=abc",
        "serverChannelMaxIdleTimeSeconds=0",
        "serverChannelMaxIdleTimeSeconds=99999999999",
        "scanNotActiveBrokerInterval=1",
        "waitSecondsForService=-1",
        "orderMessageEnable=maybe",
        "orderMessageEnable=true\nbrokerChannelExpiredTime=100",
    ],
)
async def test_refused_updates_change_nothing(
    pod: InProcessServer, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = pod.processor.settings
    c = await pod.client()
    resp = await update(c, text)
    await c.close()
    assert resp.code == 1
    assert resp.remark.startswith("Can not update config: ")
    assert "ValueError" not in resp.remark
    assert pod.processor.settings == before
    assert await pod.redis.hgetall(Keys(pod.namespace).config) == {}
    assert not [r for r in caplog.records if r.exc_info], "a refusal logged a traceback"


async def test_accepted_update_is_stored_canonically(pod: InProcessServer) -> None:
    c = await pod.client()
    resp = await update(c, "orderMessageEnable=TRUE\nwaitSecondsForService = 7\n")
    await c.close()
    assert resp.code == 0
    assert pod.processor.settings.order_message_enable is True
    assert pod.processor.settings.wait_seconds_for_service == 7
    stored = await pod.redis.hgetall(Keys(pod.namespace).config)
    assert stored == {b"orderMessageEnable": b"true", b"waitSecondsForService": b"7"}


def test_apply_update_is_all_or_nothing() -> None:
    s = Settings()
    with pytest.raises(ConfigRefused) as e:
        apply_update(s, {"enableTopicList": "false", "brokerChannelExpiredTime": "100"})
    assert e.value.reasons == [
        "brokerChannelExpiredTime: cannot be changed at run time (set it at start-up)"
    ]
    new, changed = apply_update(s, {"enableTopicList": "false"})
    assert changed == {"enableTopicList": "false"} and new.enable_topic_list is False


def test_stored_options_no_longer_allowed_are_skipped() -> None:
    """A Redis written by an older version may hold brokerChannelExpiredTime=100: ignored."""
    s, skipped = apply_stored(
        Settings(), {"brokerChannelExpiredTime": "100", "orderMessageEnable": "true"}
    )
    assert skipped == ["brokerChannelExpiredTime"]
    assert s.broker_timeout_ms == 120_000 and s.order_message_enable is True


async def test_every_pod_applies_the_idle_timeout_to_running_connections(
    redis_server: RedisServerProcess, namespace: str
) -> None:
    """An update sent to pod A reaches pod B through Redis: B closes an idle connection
    after the new serverChannelMaxIdleTimeSeconds (and its sweeper takes the new period)."""

    def settings() -> Settings:
        return Settings(
            redis_url=redis_server.url,
            namespace=namespace,
            listen_host="127.0.0.1",
            listen_port=0,
            http_host="127.0.0.1",
            http_port=0,
            server_channel_max_idle_time_seconds=8,
        )

    pods = [Pod(settings()), Pod(settings())]
    for p in pods:
        await p.start()
    try:
        a, b = (p.remoting for p in pods)
        assert a is not None and b is not None
        idle = await RemotingClient.connect("127.0.0.1", b.bound_port)
        c = await RemotingClient.connect("127.0.0.1", a.bound_port)
        resp = await update(c, "serverChannelMaxIdleTimeSeconds=1\nscanNotActiveBrokerInterval=700")
        assert resp.code == 0
        started = time.monotonic()
        await asyncio.wait_for(idle.closed, 6)
        assert time.monotonic() - started < 6  # the 8 s timeout it started with never ran out
        assert b.idle_timeout_s == 1
        assert pods[1].liveness is not None and pods[1].liveness.sweeper.interval_ms == 700
        await c.close()
    finally:
        for p in pods:
            await p.stop(grace_s=1)
