"""Memory given back after bursts (issue 12, point 6): under ``PYTHONMALLOC=malloc`` the
memory a burst freed is held free by glibc, and the trimmer returns it to the system."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from namesrv_redis.process import memtrim
from namesrv_redis.process.memtrim import MemoryTrimmer

PROBE = textwrap.dedent(
    """
    import gc, psutil
    from namesrv_redis.process import memtrim
    from namesrv_redis.process.memtrim import MemoryTrimmer

    def rss():
        return psutil.Process().memory_info().rss / 2**20

    keep = []
    burst = [bytes(1000 + i % 500) for i in range(200_000)]  # ~250 MiB, like frames
    for i in range(0, len(burst), 1000):
        keep.append(burst[i])  # a few survivors scattered through the heap
    del burst
    gc.collect()
    held = memtrim.free_held_bytes() / 2**20
    before = rss()
    trimmed = MemoryTrimmer(32 * 2**20).check_once()
    print(held, before, rss(), trimmed)
    """
)


def _run_under_glibc_malloc(code: str) -> list[str]:
    """``code`` in a fresh interpreter whose objects all come from glibc (its stdout words)."""
    if not memtrim.available():
        import pytest

        pytest.skip("not glibc")
    return subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONMALLOC": "malloc", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        cwd=str(__import__("pathlib").Path(__file__).resolve().parent.parent),
    ).stdout.split()


def test_trimmer_returns_freed_memory_to_the_system() -> None:
    out = _run_under_glibc_malloc(PROBE)
    held, before, after, trimmed = float(out[0]), float(out[1]), float(out[2]), out[3]
    assert held > 100, "glibc should hold the freed burst"
    assert trimmed == "True"
    assert after < before - 100, (before, after)


def test_trimmer_leaves_small_free_lists_alone() -> None:
    assert MemoryTrimmer(2**62).check_once() is False


AGAIN = textwrap.dedent(
    """
    import asyncio, gc
    from namesrv_redis.process import memtrim
    from namesrv_redis.process.memtrim import MemoryTrimmer

    def burst():
        keep, junk = [], [bytes(1000 + i % 500) for i in range(50_000)]  # ~60 MiB
        keep.extend(junk[::1000])  # survivors scattered through the heap
        del junk
        gc.collect()
        return keep

    async def main():
        t = MemoryTrimmer(1 << 20, interval_s=3600, after_burst_s=0.05)
        await t.start()
        kept = burst()
        first = t.check_once()
        again = t.check_once()  # the same free memory: its pages are already gone
        kept += burst()  # a burst the server knows of (a big registration answered)
        t.burst_ended()
        t.burst_ended()  # one trim however many bursts end meanwhile
        await asyncio.sleep(0.3)
        print(first, again, t.trims, round(t.returned_bytes / 2**20))
        await t.stop()

    asyncio.run(main())
    """
)


def test_trims_again_only_after_new_free_memory_or_a_burst() -> None:
    out = _run_under_glibc_malloc(AGAIN)
    first, again, trims, returned_mib = out[0], out[1], int(out[2]), int(out[3])
    assert first == "True" and again == "False"
    assert trims == 2, out  # the first check and the one after the bursts
    assert returned_mib > 50, out


def test_a_disabled_trimmer_ignores_bursts() -> None:
    t = MemoryTrimmer(0)
    t.burst_ended()  # no loop needed, nothing scheduled
    assert not t.enabled and t.trims == 0


async def test_the_server_reports_answered_big_requests_to_its_hook() -> None:
    """A registration body of BIG_REQUEST_BODY bytes (a sixteenth of it compressed) calls the
    pod's trimmer hook once answered; small requests do not."""
    import fakeredis

    from namesrv_redis.domain.route_reader import RouteReader
    from namesrv_redis.remoting.client import RemotingClient
    from namesrv_redis.remoting.processor import NamesrvProcessor
    from namesrv_redis.remoting.server import BIG_REQUEST_BODY, RemotingServer
    from namesrv_redis.settings.config import Settings
    from namesrv_redis.sim.broker import SimBroker
    from namesrv_redis.store.route_store import RouteStore

    store = RouteStore(fakeredis.FakeAsyncRedis(), "big-requests")
    await store.load_scripts()
    calls: list[int] = []
    server = RemotingServer(
        NamesrvProcessor(store, Settings(), RouteReader(store)),
        host="127.0.0.1",
        port=0,
        after_big_request=lambda: calls.append(1),
    )
    await server.start()
    client = await RemotingClient.connect("127.0.0.1", server.bound_port)
    try:
        small = SimBroker("C", "small", "127.0.0.1:10911")
        small.add_topics(["A", "B"])
        assert (await small.register(client)).code == 0
        assert calls == []
        big = SimBroker("C", "big", "127.0.0.1:10912")
        big.add_topics([f"big-topic-{i}" for i in range(2000)])
        assert len(big.register_request()[1]) >= BIG_REQUEST_BODY
        assert (await big.register(client)).code == 0
        assert calls == [1]
        packed = SimBroker("C", "packed", "127.0.0.1:10913", compressed=True)
        packed.add_topics([f"packed-topic-{i}" for i in range(2000)])
        assert BIG_REQUEST_BODY // 16 <= len(packed.register_request()[1]) < BIG_REQUEST_BODY
        assert (await packed.register(client)).code == 0
        assert calls == [1, 1]
    finally:
        await client.close()
        await server.stop(grace_s=1)
