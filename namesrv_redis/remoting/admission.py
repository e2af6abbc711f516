"""Admission control: how many requests a pod runs at once and lets wait, per lane.

Like the Java NameServer's executors (a bounded queue in front of a fixed pool of threads),
each lane runs at most ``max_running`` requests and queues at most ``max_queued`` more; a
request that finds the queue full, or that waited longer than ``max_wait_s`` for its turn,
is answered ``SYSTEM_BUSY`` with RocketMQ's ``[REJECTREQUEST]`` remark instead of piling up.
Broker requests (registration, heartbeat, data version, unregistration) have a lane of their
own, so a flood of client requests cannot starve them; route queries have another (as the
Java NameServer's clientRequestExecutor), and every other request shares the third. Cached
route answers need no lane: they are written without waiting for anything.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Protocol

from namesrv_redis.remoting.codec import RemotingCommand
from namesrv_redis.remoting.limits import BROKER_CODES, ROUTE_CODES, FlowLimits

log = logging.getLogger(__name__)


class Admittee(Protocol):
    """What a lane calls back: the connection a request came on."""

    def start_admitted(self, cmd: RemotingCommand, lane: Lane) -> bool:
        """Start ``cmd`` (True), or decline for now (False: the connection cannot take an
        answer yet and keeps the request; the lane's slot goes to the next one)."""
        ...

    def refuse_admitted(self, cmd: RemotingCommand, waited_s: float) -> None: ...


class Lane:
    def __init__(self, name: str, max_running: int, max_queued: int, max_wait_s: float) -> None:
        self.name = name
        self.max_running = max_running
        self.max_queued = max_queued
        self.max_wait_s = max_wait_s
        self.running = 0
        self.rejected = 0
        self._queue: deque[tuple[float, Admittee, RemotingCommand]] = deque()
        self._warned_at = 0.0

    @property
    def queued(self) -> int:
        return len(self._queue)

    def offer(self, who: Admittee, cmd: RemotingCommand) -> bool:
        """Start ``cmd`` now, or queue it; False when the lane is full (answer busy)."""
        if self.running < self.max_running and not self._queue:
            self.running += 1
            if not who.start_admitted(cmd, self):
                self.running -= 1
            return True
        if len(self._queue) < self.max_queued:
            self._queue.append((time.monotonic(), who, cmd))
            return True
        self._reject()
        return False

    def done(self) -> None:
        """A request of this lane finished: start the next ones that still have a client."""
        self.running -= 1
        now = time.monotonic()
        while self._queue and self.running < self.max_running:
            queued_at, who, cmd = self._queue.popleft()
            waited = now - queued_at
            if waited > self.max_wait_s:
                self._reject()
                who.refuse_admitted(cmd, waited)
                continue
            self.running += 1
            if not who.start_admitted(cmd, self):
                self.running -= 1

    def _reject(self) -> None:
        self.rejected += 1
        now = time.monotonic()
        if now - self._warned_at >= 10.0:
            self._warned_at = now
            log.warning(
                "pod overloaded: %s lane has %d running and %d queued; answering SYSTEM_BUSY "
                "(%d refused so far)",
                self.name,
                self.running,
                len(self._queue),
                self.rejected,
            )


class Admission:
    """The three lanes of a pod: broker requests, route queries, everything else."""

    def __init__(self, limits: FlowLimits) -> None:
        wait = limits.max_queue_wait_s
        self.broker = Lane("broker", limits.broker_max_running, limits.broker_max_queued, wait)
        self.route = Lane("route", limits.route_max_running, limits.route_max_queued, wait)
        self.client = Lane("client", limits.client_max_running, limits.client_max_queued, wait)
        self.lanes = (self.broker, self.route, self.client)

    def lane_for(self, code: int) -> Lane:
        if code in BROKER_CODES:
            return self.broker
        return self.route if code in ROUTE_CODES else self.client
