"""One memory budget for the big frames of all connections of a pod.

A frame of at least 256 KiB reserves its declared length when it starts to arrive and keeps
it until it has been answered, so that N connections each sending most of a 16 MiB frame
cost at most the budget, not N × 16 MiB. Reserving the declared length (rather than what has
arrived) means a frame that got its reservation can always complete: waiting connections
hold nothing, so the budget cannot deadlock. A connection whose frame does not fit stops
being read (it is not closed: closing a broker's connection would unregister it) and is
granted the bytes, first come first served, as other frames are answered.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

Grant = Callable[[int], None]


class FrameBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.waits = 0
        """How many frames had to wait (a counter for tests and benchmarks)."""
        self._waiters: deque[tuple[int, Grant]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_reserve(self, n: int) -> bool:
        """Reserve ``n`` bytes now if they fit and nobody is waiting before us."""
        if self._waiters or self.used + n > self.limit:
            return False
        self.used += n
        return True

    def wait(self, n: int, grant: Grant) -> None:
        """Call ``grant(n)`` (soon, from the event loop) once ``n`` bytes are reserved."""
        self.waits += 1
        self._waiters.append((n, grant))
        self._grant_waiters()

    def cancel(self, grant: Grant) -> None:
        for item in list(self._waiters):
            if item[1] == grant:
                self._waiters.remove(item)

    def release(self, n: int) -> None:
        if n:
            self.used -= n
            self._grant_waiters()

    def _grant_waiters(self) -> None:
        while self._waiters and self.used + self._waiters[0][0] <= self.limit:
            n, grant = self._waiters.popleft()
            self.used += n
            asyncio.get_running_loop().call_soon(grant, n)
