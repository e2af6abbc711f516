"""Readiness tells the truth about what the pod's Redis user may do (issue 21, items 3 and 5).

Real ``redis-server`` processes on loopback; ACL users made from the documented least-privilege
rule (``redis_tls.minimal_acl``) minus one permission each; CONFIG renamed away with and
without ``notify-keyspace-events Ex`` preset. Each case starts a whole pod in-process and reads
its ``readiness()`` and ``notices()`` (what ``/readyz`` serves).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from namesrv_redis.process.pod import Pod
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.settings.config import Settings
from namesrv_redis.sim.broker import SimBroker
from namesrv_redis.store.redis_tls import minimal_acl
from namesrv_redis.telemetry.metrics import REGISTRY
from tests.conftest import RedisServerProcess

PASSWORD = "caps-secret"
HEARTBEAT_TIMEOUT_MS = 1500


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServerProcess]:
    """One server (notify-keyspace-events Ex) on which each test makes its own users."""
    server = RedisServerProcess().start()
    yield server
    server.stop()


async def make_user(server: RedisServerProcess, name: str, rules: str) -> None:
    admin = aioredis.Redis(port=server.port)
    try:
        await admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{PASSWORD}")
        await admin.execute_command("ACL", "SETUSER", name, *rules.split())
    finally:
        await admin.aclose()


def settings(url: str, namespace: str, user: str | None, sweep_ms: int = 300) -> Settings:
    extra = {"redis_username": user, "redis_password": PASSWORD} if user else {}
    return Settings(
        redis_url=url,
        namespace=namespace,
        listen_host="127.0.0.1",
        listen_port=0,
        scan_not_active_broker_interval=sweep_ms,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
async def pods() -> AsyncIterator[list[Pod]]:
    started: list[Pod] = []
    yield started
    for pod in started:
        await pod.stop(grace_s=0.5)


async def start_pod(pods: list[Pod], s: Settings) -> Pod:
    pod = Pod(s, http=False)
    pods.append(pod)
    await pod.start()
    return pod


async def settled_readiness(pod: Pod, *, ready: bool, within_s: float = 10.0) -> str | None:
    """The pod's readiness once it is (not) ready as expected — or what it said instead."""
    deadline = time.monotonic() + within_s
    reason = await pod.readiness()
    while time.monotonic() < deadline:
        reason = await pod.readiness()
        if (reason is None) == ready and reason != "Redis permissions not checked yet":
            return reason
        await asyncio.sleep(0.1)
    return reason


def without_keyevent_channel(namespace: str) -> str:
    return minimal_acl(namespace).replace(" &__keyevent@0__:expired", "")


# (what the user lacks, rules after the minimal ACL, ready?, text /readyz must carry)
PERMISSION_CASES = [
    ("-evalsha", "-evalsha", False, "+evalsha"),
    ("-script", "-script", False, "+script|load"),
    ("-wait", "-wait", False, "+wait"),
    ("-info", "-info", False, "+info"),
    ("-mget", "-mget", False, "+mget"),
    ("-set", "-set", False, "+set"),
    ("-subscribe", "-subscribe", False, "+subscribe"),
    ("-eval", "-eval", True, None),
    ("-config", "-config", True, "CONFIG GET"),
]


@pytest.mark.parametrize(
    ("lacks", "rules", "ready", "says"), PERMISSION_CASES, ids=[c[0] for c in PERMISSION_CASES]
)
async def test_readiness_names_the_missing_permission(
    acl_server: RedisServerProcess,
    namespace: str,
    pods: list[Pod],
    lacks: str,
    rules: str,
    ready: bool,
    says: str | None,
) -> None:
    user = f"u{lacks.strip('-').replace('|', '')}{namespace}"
    await make_user(acl_server, user, f"{minimal_acl(namespace)} {rules}")
    pod = await start_pod(pods, settings(acl_server.url, namespace, user))
    reason = await settled_readiness(pod, ready=ready)
    if not ready:
        assert reason is not None and says is not None and says in reason, reason
        return
    assert reason is None, reason
    notices = " | ".join(pod.notices())
    if says is not None:  # optional: ready, and the notice says what is refused
        assert says in notices, notices
    else:  # not needed at all (EVAL: scripts run by EVALSHA, reloaded by SCRIPT LOAD)
        assert notices == "", notices


async def test_least_privilege_user_is_ready_with_expiry_events(
    acl_server: RedisServerProcess, namespace: str, pods: list[Pod]
) -> None:
    user = f"full{namespace}"
    await make_user(acl_server, user, minimal_acl(namespace))
    pod = await start_pod(pods, settings(acl_server.url, namespace, user))
    assert await settled_readiness(pod, ready=True) is None
    assert pod.liveness is not None
    await eventually(lambda: pod.liveness.cleaner.notifications is True, 5)  # type: ignore[union-attr]
    assert pod.notices() == []
    assert REGISTRY.get_sample_value("namesrv_keyspace_notifications") == 1


async def eventually(check: object, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within_s}s")


async def route_code(client: RemotingClient, topic: str) -> int:
    resp = await client.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
    assert resp is not None
    return resp.code


async def test_refused_expiry_channel_backs_off_keeps_cache_and_sweeps(
    acl_server: RedisServerProcess, namespace: str, pods: list[Pod]
) -> None:
    """No access to ``__keyevent@*``: ready in sweeper-only mode, a few connections a minute,
    the route cache never flushed for the refusal, dead brokers still removed on time."""
    user = f"nochan{namespace}"
    await make_user(acl_server, user, without_keyevent_channel(namespace))
    pod = await start_pod(pods, settings(acl_server.url, namespace, user))
    assert await settled_readiness(pod, ready=True) is None
    notices = " | ".join(pod.notices())
    assert "&__keyevent@0__:expired" in notices and "sweeper only" in notices, notices
    assert (
        REGISTRY.get_sample_value("namesrv_redis_permission", {"permission": "subscribe_expired"})
        == 0
    )

    assert pod.routes is not None and pod.remoting is not None
    flushes = 0
    clear = pod.routes.clear

    def counting_clear() -> None:
        nonlocal flushes
        flushes += 1
        clear()

    pod.routes.clear = counting_clear  # type: ignore[method-assign]
    admin = aioredis.Redis(port=acl_server.port)
    client = await RemotingClient.connect("127.0.0.1", pod.remoting.bound_port)
    try:
        stayer = SimBroker("C1", "broker-a", "127.0.0.1:10911")
        stayer.add_topics(["T1", "SELF_TEST_TOPIC"])
        assert (await stayer.register(client)).code == 0
        assert await route_code(client, "T1") == 0  # cached now
        before = int((await admin.info("stats"))["total_connections_received"])
        await asyncio.sleep(10)
        opened = int((await admin.info("stats"))["total_connections_received"]) - before
        # the cleaner retries 2, 4, 8 … s apart (at most 3 in these 10 s); nothing else of
        # the pod reconnects (slack for a connection a loaded machine's deadline may drop;
        # without the back-off this was about 100)
        assert opened <= 6, f"{opened} connections in 10 s"
        assert flushes == 0

        # the sweeper alone removes a broker that stops heartbeating, on time
        leaver = SimBroker("C1", "broker-b", "127.0.0.1:10921", heartbeat_timeout_ms=1500)
        leaver.add_topics(["T2", "SELF_TEST_TOPIC"])
        other = await RemotingClient.connect("127.0.0.1", pod.remoting.bound_port)
        assert (await leaver.register(other)).code == 0
        started = time.monotonic()  # it stops heartbeating (its connection stays open)
        while await route_code(client, "T2") == 0:
            assert time.monotonic() - started < HEARTBEAT_TIMEOUT_MS / 1000 + 8
            await asyncio.sleep(0.1)
        await other.close()
    finally:
        await client.close()
        await admin.aclose()


@pytest.mark.parametrize("preset", ["Ex", ""], ids=["Ex-preset", "no-events"])
async def test_config_renamed_judged_by_observation(
    namespace: str, pods: list[Pod], preset: str
) -> None:
    """CONFIG renamed away (as ElastiCache, MemoryDB and Azure do): with ``Ex`` preset the probe
    key's event is seen (metric 1, no notice) and a dead broker leaves on its expiry event
    (the sweeper runs once a minute here); without it, sweeper-only, said in the notices."""
    server = RedisServerProcess(
        "--notify-keyspace-events", preset, "--rename-command", "CONFIG", ""
    ).start()
    try:
        sweep_ms = 60_000 if preset else 300
        s = settings(server.url, namespace, None, sweep_ms)
        pod = await start_pod(pods, s)
        assert await settled_readiness(pod, ready=True) is None
        assert pod.liveness is not None and pod.remoting is not None
        cleaner = pod.liveness.cleaner
        await eventually(lambda: cleaner.notifications is not None, 5)
        assert cleaner.notifications is bool(preset)
        assert REGISTRY.get_sample_value("namesrv_keyspace_notifications") == (1 if preset else 0)
        notices = " | ".join(pod.notices())
        assert ("sweeper only" in notices) is (not preset), notices
        assert "CONFIG GET" in notices
        policy = {"policy": "noeviction", "source": "info"}  # read from INFO memory
        assert REGISTRY.get_sample_value("namesrv_redis_maxmemory_policy", policy) == 1

        client = await RemotingClient.connect("127.0.0.1", pod.remoting.bound_port)
        broker = await RemotingClient.connect("127.0.0.1", pod.remoting.bound_port)
        try:
            b = SimBroker("C1", "broker-a", "127.0.0.1:10911", heartbeat_timeout_ms=1000)
            b.add_topics(["T1", "SELF_TEST_TOPIC"])
            assert (await b.register(broker)).code == 0
            started = time.monotonic()
            while await route_code(client, "T1") == 0:  # no heartbeat: it must leave
                assert time.monotonic() - started < 1.0 + 2.0, "broker not removed on time"
                await asyncio.sleep(0.05)
        finally:
            await client.close()
            await broker.close()
    finally:
        server.stop()


def test_the_documented_rule_grants_every_command_our_scripts_call() -> None:
    """Redis checks commands run inside a script against the user's ACL: a command a script
    calls that the least-privilege rule does not grant fails only on that path, for that user."""
    import re
    from pathlib import Path

    from namesrv_redis.store.redis_tls import POD_COMMANDS

    granted = {c for group in POD_COMMANDS for c in group.split()}
    lua = Path(__file__).resolve().parent.parent / "lua"
    called = {
        m.lower()
        for f in lua.glob("*.lua")
        for m in re.findall(r"redis\.(?:p?call)\(\s*'([A-Za-z]+)'", f.read_text())
    }
    assert called, "no redis.call found in lua/"
    assert called - granted == set()
