"""Sentinel failover under load, on real processes: a master, a replica and three sentinels
(``redis-server --sentinel``), two ``namesrv-redis serve`` pods, heartbeating brokers, one-shot
registrations and route readers. A planned failover and a killed master must lose no
acknowledged registration and remove no heartbeating broker, and afterwards a dead broker must
again be found by its expiry notification (not by the sweeper, set to 10 s here). The killed
master also runs on Valkey (``valkey-server --sentinel``); the planned failover on Redis only,
to keep the suite short."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.ha_load import assert_nothing_lost, run_failure, running_pods
from tests.redis_topologies import SentinelSet, command, kill
from tests.serverproc import NamesrvProcess

pytestmark = [pytest.mark.slow, pytest.mark.real_redis]


@pytest.fixture
def sentinels(server_kind: str) -> Iterator[SentinelSet]:
    s = SentinelSet(kind=server_kind).start()
    for server in s.servers:  # as a stock server: the pods must turn expiry events on
        command(server.port, "CONFIG", "SET", "notify-keyspace-events", "")
    yield s
    s.stop()


@pytest.fixture
def pods(sentinels: SentinelSet, namespace: str) -> Iterator[list[NamesrvProcess]]:
    yield from running_pods(sentinels.url, namespace)


def fail_over(sentinels: SentinelSet, *, planned: bool) -> None:
    """A planned failover (SENTINEL FAILOVER) or a kill -9 of the master; returns once the
    sentinels name a new master."""
    old = sentinels.master_port()
    if planned:
        sentinels.failover()
    else:
        kill(sentinels.server_on(old))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if sentinels.master_port() != old:
            return
        time.sleep(0.1)
    raise AssertionError("Sentinel did not fail over")


@pytest.mark.parametrize(
    ("planned", "server_kind"),
    [(True, "redis"), (False, "redis"), (False, "valkey")],
    ids=["planned-redis", "killed-master-redis", "killed-master-valkey"],
    indirect=["server_kind"],
)
async def test_failover_loses_no_acknowledged_write(
    sentinels: SentinelSet, pods: list[NamesrvProcess], planned: bool
) -> None:
    load = await run_failure(pods, lambda: fail_over(sentinels, planned=planned))
    try:
        assert_nothing_lost(load, pods)
        assert all("switched from" in p.log_path.read_text() for p in pods)
    finally:
        await load.close()
