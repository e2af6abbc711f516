"""Give memory back to the system after bursts (glibc only).

CPython hands every object larger than 512 bytes (request frames, bodies, encoded answers,
transport buffers) to glibc's malloc. After a burst frees them, glibc keeps the freed chunks
in its arenas: the pod's RSS stays at the burst's peak although Python holds nothing
(scripts/memory_after_burst.py measures it). :class:`MemoryTrimmer` looks every few
seconds at how much memory malloc holds free (``mallinfo2``) and, past a threshold, calls
``malloc_trim(0)``, which returns free pages of every arena (the event loop's and the
offload thread's) to the kernel. Elsewhere (musl, macOS) it does nothing.

A trim does not change what ``mallinfo2`` reports as free (the chunks stay free, only their
pages go), so the periodic check trims again only when malloc holds a threshold more than
after the last trim, or a minute later. The place that knows a burst just ended — the
remoting server, once it answered a big request such as a registration of 10,000 topics
(``after_big_request`` in ``remoting/server.py``) — calls
:meth:`MemoryTrimmer.burst_ended`, which trims a second later (once, however many bursts end
meanwhile): a registration's buffers are given back within about a second rather than a
check interval. A trim takes well under 2 ms on a pod's heap; what it costs later is that the
next burst faults its pages in again (docs/benchmarks.md "Memory" measures both).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
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


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> int:
    """This process's resident set (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


class MemoryTrimmer:
    """Every ``interval_s``, trims when malloc holds more than ``threshold_bytes`` free (and
    more than after the last trim, or ``recheck_s`` passed); ``after_burst_s`` after
    :meth:`burst_ended` whenever it holds more than the threshold."""

    def __init__(
        self,
        threshold_bytes: int,
        interval_s: float = 5.0,
        *,
        after_burst_s: float = 1.0,
        recheck_s: float = 60.0,
    ) -> None:
        self.threshold_bytes = threshold_bytes
        self.interval_s = interval_s
        self.after_burst_s = after_burst_s
        self.recheck_s = recheck_s
        self.trims = 0
        self.returned_bytes = 0
        """RSS given back by all trims so far (as /proc/self/statm saw it)."""
        self._held_after_trim = 0
        self._last_trim = float("-inf")
        self._burst = False
        self._burst_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return available() and self.threshold_bytes > 0

    def check_once(self) -> bool:
        """Trim now if there is enough held free that a trim may return; True if trimmed."""
        held = free_held_bytes()
        if held <= self.threshold_bytes:
            self._burst = False
            return False
        nothing_new = held < self._held_after_trim + self.threshold_bytes
        if not self._burst and nothing_new and time.monotonic() - self._last_trim < self.recheck_s:
            return False  # what is held free was held at the last trim: its pages are gone
        self._burst = False
        rss_before = _rss_bytes()
        started = time.perf_counter()
        trim()
        took_ms = (time.perf_counter() - started) * 1000
        returned = max(0, rss_before - _rss_bytes())
        self.trims += 1
        self.returned_bytes += returned
        self._held_after_trim = free_held_bytes()
        self._last_trim = time.monotonic()
        log.log(
            logging.INFO if returned >= 2**20 else logging.DEBUG,
            "returned %.1f MiB of free memory to the system (malloc held %.1f MiB free), "
            "trim took %.1f ms",
            returned / 2**20,
            held / 2**20,
            took_ms,
        )
        return True

    def burst_ended(self) -> None:
        """A burst's buffers were just freed: trim ``after_burst_s`` from now (event loop)."""
        if not self.enabled:
            return
        self._burst = True
        if self._burst_timer is None and self._task is not None:
            self._burst_timer = asyncio.get_running_loop().call_later(
                self.after_burst_s, self._after_burst
            )

    def _after_burst(self) -> None:
        self._burst_timer = None
        try:
            self.check_once()
        except Exception:  # never let a callback fail the loop (STYLE.md #14)
            log.exception("malloc trim failed")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.check_once()
            except Exception:  # never let the loop die (STYLE.md #14)
                log.exception("malloc trim failed")

    async def start(self) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self.run(), name="malloc-trim")

    async def stop(self) -> None:
        if self._burst_timer is not None:
            self._burst_timer.cancel()
            self._burst_timer = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
