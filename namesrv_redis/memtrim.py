"""Give memory back to the system after bursts (glibc only).

CPython hands every object larger than 512 bytes (request frames, bodies, encoded answers,
transport buffers) to glibc's malloc. After a burst frees them, glibc keeps the freed chunks
in its arenas: the pod's RSS stays at the burst's peak although Python holds nothing
(benchmarks/memory_after_burst.py measures it). :class:`MemoryTrimmer` looks every few
seconds at how much memory malloc holds free (``mallinfo2``) and, past a threshold, calls
``malloc_trim(0)``, which returns free pages of every arena to the kernel. Elsewhere (musl,
macOS) it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import time
from typing import Any

log = logging.getLogger(__name__)


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc() -> Any | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _Mallinfo2
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return libc


_LIBC = _libc()


def available() -> bool:
    return _LIBC is not None


def free_held_bytes() -> int:
    """Bytes malloc holds free in its arenas (0 when unknown)."""
    if _LIBC is None:
        return 0
    return int(_LIBC.mallinfo2().fordblks)


def trim() -> bool:
    """``malloc_trim(0)``: True when memory was returned to the system."""
    return bool(_LIBC.malloc_trim(0)) if _LIBC is not None else False


class MemoryTrimmer:
    """Every ``interval_s``, trims when malloc holds more than ``threshold_bytes`` free."""

    def __init__(self, threshold_bytes: int, interval_s: float = 5.0) -> None:
        self.threshold_bytes = threshold_bytes
        self.interval_s = interval_s
        self.trims = 0
        self._task: asyncio.Task[None] | None = None

    def check_once(self) -> bool:
        held = free_held_bytes()
        if held <= self.threshold_bytes:
            return False
        started = time.perf_counter()
        trim()
        self.trims += 1
        log.info(
            "returned free memory to the system: %.0f MiB held free, trim took %.1f ms",
            held / 2**20,
            (time.perf_counter() - started) * 1000,
        )
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.check_once()
            except Exception:  # never let the loop die (STYLE.md #14)
                log.exception("malloc trim failed")

    async def start(self) -> None:
        if available() and self.threshold_bytes > 0:
            self._task = asyncio.create_task(self.run(), name="malloc-trim")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
