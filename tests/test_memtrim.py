"""Memory given back after bursts (issue 12, point 6): under ``PYTHONMALLOC=malloc`` the
memory a burst freed is held free by glibc, and the trimmer returns it to the system."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from namesrv_redis import memtrim
from namesrv_redis.memtrim import MemoryTrimmer

PROBE = textwrap.dedent(
    """
    import gc, psutil
    from namesrv_redis import memtrim
    from namesrv_redis.memtrim import MemoryTrimmer

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


def test_trimmer_returns_freed_memory_to_the_system() -> None:
    if not memtrim.available():
        import pytest

        pytest.skip("not glibc")
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={"PYTHONMALLOC": "malloc", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        cwd=str(__import__("pathlib").Path(__file__).resolve().parent.parent),
    ).stdout.split()
    held, before, after, trimmed = float(out[0]), float(out[1]), float(out[2]), out[3]
    assert held > 100, "glibc should hold the freed burst"
    assert trimmed == "True"
    assert after < before - 100, (before, after)


def test_trimmer_leaves_small_free_lists_alone() -> None:
    assert MemoryTrimmer(2**62).check_once() is False
