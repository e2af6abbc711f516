"""The limits of the remoting front end, in one place (docs/protocol.md, "Limits").

Every limit bounds memory or waiting, and each says what a client meets when it hits it:
back-pressure (the pod stops reading from that connection until it can take more), or an
answer (``SYSTEM_BUSY``, ``SYSTEM_ERROR``), or a closed connection with a log line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from namesrv_redis.rocketmq.codes import RequestCode

BUSY_REMARK = "[REJECTREQUEST]system busy, start flow control for a while"
"""The Java NameServer's remark when a processor refuses a request (NettyRemotingAbstract)."""

BROKER_CODES = frozenset(
    {
        int(RequestCode.REGISTER_BROKER),
        int(RequestCode.UNREGISTER_BROKER),
        int(RequestCode.BROKER_HEARTBEAT),
        int(RequestCode.QUERY_DATA_VERSION),
    }
)
"""Requests brokers send to stay registered: they have their own admission lane, so that a
flood of client requests can never starve them."""

ROUTE_CODES = frozenset({int(RequestCode.GET_ROUTEINFO_BY_TOPIC)})
"""Route queries the cache could not answer: a lane of their own, as in the Java NameServer
(its clientRequestExecutor), so that admin floods do not starve them nor they the rest."""


@dataclass(frozen=True, slots=True)
class FlowLimits:
    write_buffer_high: int = 256 * 1024
    """A connection whose unsent answers exceed this stops being read from…"""
    write_buffer_low: int = 64 * 1024
    """…until they drain below this."""
    connection_max_pending: int = 32
    """Requests of one connection admitted and not yet answered; past it the connection's
    further requests wait unread (TCP back-pressure), they are not refused. Queued ones do
    not start while the connection's answers do not drain."""
    partial_frame_budget: int = 64 * 1024 * 1024
    """Pod-wide bytes of big frames (≥ 256 KiB) being received or not yet answered; a
    connection whose next big frame does not fit waits unread until it does."""
    partial_frame_timeout_s: float = 60.0
    """A big frame must be complete this long after it started, or its connection is closed
    (a stalled sender must not hold the budget)."""
    route_max_running: int = 16
    route_max_queued: int = 10_000
    client_max_running: int = 16
    client_max_queued: int = 10_000
    broker_max_running: int = 16
    broker_max_queued: int = 10_000
    """Admission lanes (route queries not answered from the cache; broker requests; every
    other request): requests running at once and waiting, pod-wide; a request that finds its
    lane's queue full is answered SYSTEM_BUSY."""
    max_queue_wait_s: float = 3.0
    """A queued request still waiting after this (RocketMQ clients time out after 3 s) is
    answered SYSTEM_BUSY instead of being processed for nobody."""
    offload_min_body: int = 256 * 1024
    """REGISTER_BROKER bodies at least this big (compressed ones from a sixteenth of it) are
    decoded and stored on a worker thread, off the event loop."""

    @classmethod
    def from_settings(cls, settings: Any) -> FlowLimits:
        """The limits from a :class:`~namesrv_redis.settings.config.Settings` (its ``flow_*`` fields
        when present, else the defaults)."""
        kw: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            value = getattr(settings, f"flow_{name}", None)
            if value is not None:
                kw[name] = value
        limits = cls(**kw)
        if limits.write_buffer_low > limits.write_buffer_high:
            raise ValueError("flow_write_buffer_low must not exceed flow_write_buffer_high")
        return limits
