"""Master discovery under Sentinel (no servers needed): the newest configuration epoch wins,
an answer from an older epoch never moves the pod back, and for a while after
``+switch-master`` the master that event named wins over whatever the sentinels answer
(a sentinel publishes the event just before it changes the address it reports)."""

from __future__ import annotations

from typing import Any

from namesrv_redis.store.connection import EpochSentinel


class FakeSentinel:
    def __init__(self, ip: str, port: int, epoch: int) -> None:
        self.state = {"ip": ip, "port": port, "config-epoch": epoch}

    async def sentinel_masters(self) -> dict[str, Any]:
        return {
            "svc": {
                **self.state,
                "is_master": True,
                "is_sdown": False,
                "is_odown": False,
                "num-other-sentinels": 2,
            }
        }


def manager(*answers: tuple[str, int, int]) -> EpochSentinel:
    m = EpochSentinel([])  # type: ignore[no-untyped-call]
    m.sentinels = [FakeSentinel(*a) for a in answers]
    return m


async def test_the_newest_epoch_wins_and_never_goes_back() -> None:
    m = manager(("10.0.0.1", 6379, 3), ("10.0.0.2", 6379, 4), ("10.0.0.1", 6379, 3))
    assert await m.discover_master("svc") == ("10.0.0.2", 6379)
    for s in m.sentinels:  # the sentinel that knew of the failover stops answering
        s.state.update(ip="10.0.0.1", port=6379)
    m.sentinels[1].state["config-epoch"] = 3
    assert await m.discover_master("svc") == ("10.0.0.2", 6379)


async def test_a_switch_pins_the_new_master_for_a_while() -> None:
    m = manager(("10.0.0.1", 6379, 7))
    m.pin(("10.0.0.9", 6380), seconds=60)
    assert m.is_pinned()
    assert await m.discover_master("svc") == ("10.0.0.9", 6380)
    m.pin(("10.0.0.9", 6380), seconds=-1)  # the pin has run out: the sentinels decide again
    assert not m.is_pinned()
    assert await m.discover_master("svc") == ("10.0.0.1", 6379)
