"""The running event loop, found without a system call.

On Python 3.11, ``asyncio.get_running_loop()`` — and every asyncio helper that calls it:
``asyncio.create_task``, ``asyncio.current_task()``, ``asyncio.timeout`` — compares the
thread's running loop with ``getpid()``, and glibc no longer caches the process id: each
call is a ``getpid`` system call (about a microsecond on a virtual machine). A registration
made several of them; sampled with native frames, ``getpid`` was 14% of a pod's busy CPU
under a registration burst. The hot paths ask :func:`running_loop` instead and then use the
loop's own methods (``loop.create_task``, ``loop.create_future``, ``current_task(loop)``).
"""

from __future__ import annotations

import asyncio
import threading

_local = threading.local()


def running_loop() -> asyncio.AbstractEventLoop:
    """``asyncio.get_running_loop()``, remembered per thread while that loop runs. (One loop
    runs in a thread at a time, so a remembered loop that is still running is this thread's
    running loop; a stopped one is asked for again.)"""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or not loop.is_running():
        loop = asyncio.get_running_loop()
        _local.loop = loop
    return loop


class Deadline:
    """``asyncio.timeout(seconds)`` for the current task of ``loop``, without asking for the
    loop (three ``getpid`` calls each) — to be used as::

        deadline = Deadline(loop, seconds)
        try:
            ...  # awaits
        except asyncio.CancelledError:
            if deadline.expired_here():
                raise TimeoutError from None  # or what the caller raises for it
            raise
        finally:
            deadline.close()

    When the deadline passes, the task is cancelled; :meth:`expired_here` tells that
    cancellation from any other (a task cancelled from outside as well stays cancelled), by
    the task's cancel count as ``asyncio.timeout`` does."""

    __slots__ = ("_settled", "_task", "_timer", "expired")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a deadline is kept by a task")
        self._task = task
        self.expired = False
        self._settled = False
        self._timer = loop.call_at(loop.time() + seconds, self._expire)

    def _expire(self) -> None:
        if not self._task.done():
            self.expired = True
            self._task.cancel()

    def expired_here(self) -> bool:
        """Called on CancelledError: whether it is this deadline's cancellation alone."""
        if not self.expired or self._settled:
            return False
        self._settled = True
        return self._task.uncancel() == 0

    def close(self) -> None:
        self._timer.cancel()
        if self.expired and not self._settled:  # passed as the awaited answer came
            self._settled = True
            self._task.uncancel()
