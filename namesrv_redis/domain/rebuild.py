"""Pods rebuild what Redis forgot: the last registration of every broker connected here.

When Redis loses a namespace's data — restarted empty, flushed, or failed over to a replica
that missed acknowledged writes — RocketMQ brokers would not notice: they re-register every
30 s, and until then every topic answers TOPIC_NOT_EXIST (the Java NameServer's restart
blackout). But the pod still holds a connection to each of its brokers and has seen each
one's last registration, so it keeps that registration (header fields and the raw body, as
received) and re-applies it through the ordinary registration path as soon as the loss is
detected (:mod:`namesrv_redis.store.events`, :mod:`namesrv_redis.store.topology`).

Safe against a broker that really left: an entry is dropped when the broker unregisters or
its connection closes, and is not re-applied once the broker has been silent on this pod for
longer than its heartbeat timeout (it would have expired anyway). Idempotent across pods: a
broker registered through several pods is re-applied by each, with the same data version,
which is what its own next registration would do. KV config and order-topic config are not
derivable from registrations: persistence protects those (docs/persistence.md).

Memory: a body of :data:`PACK_MIN_BYTES` or more that arrived uncompressed is kept deflated
(zlib level 1; JSON register bodies shrink about 25 times, a 10,000-topic body from 1.6 MB to
60 KB). Deflating takes about 4 ms per MB, so it is not done on the registration's way: the
entry holds the body as received, and the loop that accepted it (the pod's, or the offload
thread's for big bodies) deflates it 64 KiB per iteration from the next one on, so the answer
and other work interleave with it. A rebuild inflates it again (rare: after a data loss).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from namesrv_redis.rocketmq.headers import RegisterBrokerHeader
from namesrv_redis.rocketmq.register_body import token_crc32
from namesrv_redis.telemetry.metrics import REBUILT_REGISTRATIONS

log = logging.getLogger(__name__)

CONCURRENCY = 16
ATTEMPTS = 4
RETRY_DELAY_S = 0.5
"""A failover's new master may refuse or hang for a moment: each entry is tried up to
ATTEMPTS times, RETRY_DELAY_S apart."""

PACK_MIN_BYTES = 64 * 1024
"""Bodies at least this long (and not compressed by the broker) are kept deflated."""
PACK_SLICE_BYTES = 64 * 1024
"""Deflated per loop iteration (about a quarter of a millisecond)."""


def packable(body: bytes | bytearray, compressed: bool) -> bool:
    """Whether an accepted body is kept deflated (then it is kept without a copy until then)."""
    return len(body) >= PACK_MIN_BYTES and not compressed


Identity = tuple[str, str]
"""(cluster, broker address): one broker process (RocketMQ 5's BrokerAddrInfo)."""


class PackedBody:
    """A registration body kept deflated (``zlib.compress(body, 1)``)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


@dataclass(slots=True)
class AcceptedRegistration:
    header: RegisterBrokerHeader
    body: bytes | bytearray | PackedBody
    """As received (the very buffer, not a copy, when it is to be packed), or deflated once
    the registration is answered (see the module's doc)."""
    token: str
    """:func:`~namesrv_redis.rocketmq.register_body.body_token` of ``body``."""
    client_version: int
    conn_id: str
    timeout_ms: int
    last_seen: float
    """time.monotonic() of its last registration or heartbeat on this pod."""

    @property
    def crc32(self) -> int:
        """The body's masked CRC-32 (part of its token)."""
        return token_crc32(self.token)

    def same_body(self, body: bytes | bytearray) -> bool:
        """Whether ``body`` is byte for byte the one kept (not when kept deflated: comparing
        would cost more than the CRC it saves)."""
        kept = self.body
        return not isinstance(kept, PackedBody) and len(kept) == len(body) and kept == body

    def raw_body(self) -> bytes:
        """The body as the broker sent it."""
        body = self.body  # read once: the accepting loop may pack it meanwhile
        if isinstance(body, PackedBody):
            return zlib.decompress(body.data)
        return bytes(body)


Reapply = Callable[[AcceptedRegistration], Awaitable[bool]]


class AcceptedRegistrations:
    """The last accepted registration of each broker process connected to this pod."""

    def __init__(self) -> None:
        self._by_identity: dict[Identity, AcceptedRegistration] = {}
        self._running: asyncio.Task[tuple[int, int]] | None = None

    def __len__(self) -> int:
        return len(self._by_identity)

    def get(self, cluster: str, addr: str) -> AcceptedRegistration | None:
        return self._by_identity.get((cluster, addr))

    def accepted(self, reg: AcceptedRegistration) -> None:
        self._by_identity[(reg.header.cluster_name, reg.header.broker_addr)] = reg
        body = reg.body
        if not isinstance(body, PackedBody) and packable(body, reg.header.compressed):
            with contextlib.suppress(RuntimeError):  # no running loop: kept as received
                asyncio.get_running_loop().call_soon(self._pack, reg)

    def _pack(self, reg: AcceptedRegistration) -> None:
        """Deflate ``reg``'s body a slice per loop iteration, so that neither this loop nor
        the answer waiting behind this callback is held up for the whole body."""
        body = reg.body
        if isinstance(body, PackedBody):
            return
        loop = asyncio.get_running_loop()
        identity = (reg.header.cluster_name, reg.header.broker_addr)
        packer = zlib.compressobj(1)
        parts: list[bytes] = []
        view = memoryview(body)

        def step(offset: int) -> None:
            if self._by_identity.get(identity) is not reg:
                view.release()  # replaced or forgotten meanwhile
                return
            end = offset + PACK_SLICE_BYTES
            parts.append(packer.compress(view[offset:end]))
            if end < len(view):
                loop.call_soon(step, end)
                return
            parts.append(packer.flush())
            view.release()
            reg.body = PackedBody(b"".join(parts))

        step(0)

    def seen(self, cluster: str, addr: str) -> None:
        """A heartbeat (or data-version query) from the broker: it is still alive."""
        reg = self._by_identity.get((cluster, addr))
        if reg is not None:
            reg.last_seen = time.monotonic()

    def forget(self, cluster: str, addr: str) -> None:
        self._by_identity.pop((cluster, addr), None)

    def forget_connection(self, conn_id: str) -> None:
        for identity in [i for i, r in self._by_identity.items() if r.conn_id == conn_id]:
            del self._by_identity[identity]

    def alive(self, now: float | None = None) -> list[AcceptedRegistration]:
        t = time.monotonic() if now is None else now
        return [r for r in self._by_identity.values() if t - r.last_seen < r.timeout_ms / 1000]

    async def reapply_all(self, reapply: Reapply, reason: str) -> tuple[int, int]:
        """Re-apply every live entry (at most one run at a time: a second call joins it)."""
        if self._running is not None and not self._running.done():
            return await asyncio.shield(self._running)
        self._running = asyncio.ensure_future(self._reapply_all(reapply, reason))
        return await asyncio.shield(self._running)

    async def _reapply_all(self, reapply: Reapply, reason: str) -> tuple[int, int]:
        entries = self.alive()
        if not entries:
            return 0, 0
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(reg: AcceptedRegistration) -> bool:
            for attempt in range(1, ATTEMPTS + 1):
                async with gate:
                    try:
                        return await reapply(reg)
                    except Exception as e:
                        if attempt == ATTEMPTS:
                            log.warning(
                                "re-applying the registration of %s@%s failed: %s",
                                reg.header.cluster_name,
                                reg.header.broker_addr,
                                e,
                            )
                await asyncio.sleep(RETRY_DELAY_S)
            return False

        results = await asyncio.gather(*(one(r) for r in entries))
        ok = sum(results)
        failed = len(results) - ok
        REBUILT_REGISTRATIONS.labels("ok").inc(ok)
        REBUILT_REGISTRATIONS.labels("failed").inc(failed)
        log.warning(
            "re-applied %d of %d connected brokers' registrations (%s)", ok, len(entries), reason
        )
        return ok, failed
