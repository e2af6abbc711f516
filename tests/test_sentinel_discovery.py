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


class _Conn:
    """A pooled connection as far as the pool's hand-out check goes."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.is_connected = True
        self.disconnects = 0

    async def disconnect(self) -> None:
        self.disconnects += 1
        self.is_connected = False

    async def connect(self) -> None:
        self.is_connected = True

    async def can_read(self) -> bool:
        return False


async def test_the_pool_never_hands_out_a_connection_to_the_old_master() -> None:
    """A connection busy on the old master during the switch comes back to the pool still
    connected to it: handed out again, it is closed first (and reconnects through
    discovery), so no write lands on the demoted master."""
    from namesrv_redis.store.connection import MasterOnlyPool

    pool = MasterOnlyPool("svc", object())
    pool.follow(("127.0.0.1", 6380))
    stale, current = _Conn("127.0.0.1", 6379), _Conn("127.0.0.1", 6380)
    await pool.ensure_connection(stale)
    await pool.ensure_connection(current)
    assert stale.disconnects == 1 and stale.is_connected  # closed, then reconnected
    assert current.disconnects == 0
