"""A closed broker connection removes its brokers; a burst of closes is paced and a removal
that Redis refuses or does not answer in time is retried, then left to the heartbeat timeout
with a warning (never an unhandled error)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from namesrv_redis.remoting import processor as processor_module
from namesrv_redis.remoting.handler_types import Connection
from namesrv_redis.remoting.processor import NamesrvProcessor
from namesrv_redis.settings.config import Settings
from namesrv_redis.store.deadlines import StoreTimeout
from namesrv_redis.store.route_store import RemovalResult


class FlakyStore:
    """remove_broker fails ``failures`` times per broker, then removes it; tracks overlap."""

    def __init__(self, failures: int, delay_s: float = 0.0) -> None:
        self.failures = failures
        self.delay_s = delay_s
        self.calls: dict[str, int] = {}
        self.running = 0
        self.most_at_once = 0

    async def remove_broker(
        self, reason: Any, cluster: str, addr: str, name: str, **_: Any
    ) -> RemovalResult:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(self.delay_s)
            self.calls[name] = self.calls.get(name, 0) + 1
            if self.calls[name] <= self.failures:
                raise StoreTimeout("write", 2000)
            return RemovalResult(True, name, 1)
        finally:
            self.running -= 1


def _processor(store: FlakyStore) -> NamesrvProcessor:
    return NamesrvProcessor(store, Settings(), None)  # type: ignore[arg-type]


def _conn(i: int) -> Connection:
    return Connection(f"c{i}", f"127.0.0.1:{4000 + i}", {("C", f"10.0.0.{i}:10911", f"b{i}")})


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processor_module, "CLOSE_REMOVAL_BACKOFF_S", 0.001)


async def test_a_failed_removal_is_retried() -> None:
    store = FlakyStore(failures=2)
    await _processor(store).connection_closed(_conn(1))
    assert store.calls == {"b1": 3}


async def test_a_removal_redis_keeps_refusing_is_left_to_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore(failures=99)
    with caplog.at_level(logging.WARNING):
        await _processor(store).connection_closed(_conn(1))
    assert store.calls == {"b1": processor_module.CLOSE_REMOVAL_ATTEMPTS}
    assert "heartbeat timeout will remove it" in caplog.text
    assert "Traceback" not in caplog.text


async def test_a_burst_of_closes_is_paced() -> None:
    store = FlakyStore(failures=0, delay_s=0.005)
    p = _processor(store)
    await asyncio.gather(*(p.connection_closed(_conn(i)) for i in range(200)))
    assert len(store.calls) == 200 and set(store.calls.values()) == {1}
    assert store.most_at_once == processor_module.CLOSE_REMOVALS_AT_ONCE
