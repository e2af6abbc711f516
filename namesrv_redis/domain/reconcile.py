"""Level-triggered reconciliation: the state in Redis is verified, not trusted (DESIGN.md).

Redis can lose part of what the pods wrote without any event: a ``maxmemory`` policy evicts a
topic hash, an operator deletes a key, a tenant's script removes a set. Registrations are
edge-triggered (a broker's periodic re-registration of an unchanged body only refreshes its
liveness), so nothing would ever write the lost part again, and pods would disagree for good
(those with the route cached answer it, the others TOPIC_NOT_EXIST).

So each pod keeps verifying, for every broker process connected to it, what Redis holds
against the registration it last accepted from it (:class:`~namesrv_redis.domain.rebuild.
AcceptedRegistrations`): the liveness entry, deadline, broker data, cluster sets and every
topic's queue data, topics set and reverse index. ``lua/repair_broker.lua`` does the check
and the repair in one atomic call per chunk of :data:`CHUNK` topics, and writes only what is
missing (or divergent where the stored table token says the queue data must equal that very
body), so the common case writes nothing. Safe against a broker that really left: the script
writes nothing unless the broker is still registered (liveness entry, or addr-names entry with
a deadline ahead), and nothing when the liveness entry belongs to another connection or data
version (the pod holding that registration verifies it) — so the cost does not multiply with
pods. A repair publishes the repaired topics as a route event: every pod's cache drops them.

Pace: every broker is verified once per ``interval_ms`` (30 s, RocketMQ's re-registration
period), the calls spread evenly over it. A liveness refresh that had to recreate an evicted
liveness key, and a data loss (epoch changed), ask for an immediate verification.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redis.exceptions import RedisError

from namesrv_redis.domain.rebuild import (
    AcceptedRegistration,
    AcceptedRegistrations,
    Identity,
    PackedBody,
)
from namesrv_redis.domain.registrations import (
    RememberedRegistrations,
    queue_configs_of,
    registration_identity,
)
from namesrv_redis.rocketmq.model import BadDataVersion, QueueConfig, canonical_data_version
from namesrv_redis.rocketmq.model import state_version as state_version_of
from namesrv_redis.rocketmq.register_body import BodyError, decode_register_table
from namesrv_redis.store.route_store import RepairResult, RepairTarget, RouteStore
from namesrv_redis.telemetry.metrics import REDIS_ERRORS, REPAIRS

log = logging.getLogger(__name__)

CHUNK = 256
"""Topics verified per script call: a few hundred reads, well under a millisecond."""
MIN_PAUSE_S = 0.005
"""Least pause between two brokers' verifications (a pod with thousands of brokers)."""
PARSE_OFF_LOOP_BYTES = 256 * 1024
"""Bodies this big (and every deflated one) are decoded on a worker thread."""


@dataclass(frozen=True, slots=True)
class Expected:
    """What one accepted registration says Redis must hold."""

    target: RepairTarget
    topics: list[QueueConfig]
    """Its topic table when the broker writes queue data (a master), else empty."""


def target_of(reg: AcceptedRegistration, data_version: str, state_version: int) -> RepairTarget:
    """The broker process records one accepted registration says Redis must hold."""
    h = reg.header
    return RepairTarget(
        cluster=h.cluster_name,
        broker_addr=h.broker_addr,
        broker_name=h.broker_name,
        broker_id=h.broker_id,
        data_version=data_version,
        state_version=state_version,
        ha_server_addr=h.ha_server_addr,
        body_token=reg.token,
        heartbeat_timeout_ms=reg.timeout_ms,
        conn_id=reg.conn_id,
        zone_name=h.zone_name,
        enable_acting_master=h.enable_acting_master,
    )


def expected_of(reg: AcceptedRegistration) -> Expected | None:
    """Decode an accepted registration (None when its body cannot be decoded, which an
    accepted one always could)."""
    h = reg.header
    try:
        table = decode_register_table(reg.raw_body(), h.compressed, reg.client_version)
        dv = canonical_data_version(table.data_version)
        sv = state_version_of(table.data_version)
    except (BodyError, BadDataVersion, ValueError):
        return None
    # queue data comes from the master (a 5.x prime slave writes it only while acting)
    topics = queue_configs_of(table.topics) if h.broker_id == 0 else []
    return Expected(target_of(reg, dv, sv), topics)


def _add(total: dict[str, int], more: dict[str, int]) -> None:
    for k, n in more.items():
        total[k] = total.get(k, 0) + n


@dataclass(slots=True)
class Outcome:
    status: str
    repaired: dict[str, int]
    topics: int


class Reconciler:
    """Verifies and repairs, in the background, what Redis holds for this pod's brokers."""

    def __init__(
        self,
        store: RouteStore,
        accepted: AcceptedRegistrations,
        *,
        interval_ms: int = 30_000,
        chunk: int = CHUNK,
        remembered: RememberedRegistrations | None = None,
    ) -> None:
        self.store = store
        self.accepted = accepted
        self.remembered = remembered
        """What this pod stored last per broker (its data version): lets a pod whose
        registration is not the broker's current one skip decoding the body."""
        self.interval_ms = interval_ms
        """Every connected broker is verified once per this; 0 = off."""
        self.chunk = chunk
        self.passes = 0
        """Full passes over the connected brokers completed (tests, status)."""
        self._urgent: dict[Identity, None] = {}
        self._everything = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ requests

    def urgent(self, cluster: str, addr: str) -> None:
        """Verify this broker now (a refresh found part of its state gone)."""
        self._urgent[(cluster, addr)] = None
        self._wake.set()

    def verify_all_soon(self) -> None:
        """Verify every connected broker now, without pacing (after a data loss)."""
        self._everything = True
        self._wake.set()

    # ------------------------------------------------------------------ verification

    async def verify(self, reg: AcceptedRegistration) -> Outcome:
        """Verify (and repair) one accepted registration, a chunk of topics per call.

        When this pod remembers the registration's data version (it stored that very body),
        a first call without topics verifies the broker's own records and says whether this
        registration is the broker's current one: on the pods whose registration is not (every
        broker registers with every pod; the last one holds its liveness entry) the body is
        then neither decoded nor sent."""
        repaired: dict[str, int] = {}
        known = self._known_version(reg)
        if known is not None:
            first = await self.store.repair_broker(target_of(reg, *known), [])
            _add(repaired, first.repaired)
            if first.status != "ok" or reg.header.broker_id != 0:
                return self._outcome(reg, first.status, repaired, 0)
        body = reg.body  # a packed body was at least PACK_MIN_BYTES before deflating
        if isinstance(body, PackedBody) or len(body) >= PARSE_OFF_LOOP_BYTES:
            expected = await asyncio.to_thread(expected_of, reg)
        else:
            expected = expected_of(reg)
        if expected is None:
            return Outcome("undecodable", repaired, 0)
        topics = expected.topics
        chunks: Sequence[Sequence[QueueConfig]] = [
            topics[i : i + self.chunk] for i in range(0, len(topics), self.chunk)
        ] or [[]]
        status = "ok"
        for part in chunks:
            if self.accepted.get(reg.header.cluster_name, reg.header.broker_addr) is not reg:
                status = "replaced"  # re-registered or gone meanwhile: verified next time
                break
            result: RepairResult = await self.store.repair_broker(expected.target, part)
            status = result.status
            _add(repaired, result.repaired)
            if status != "ok":
                break
        return self._outcome(reg, status, repaired, len(topics))

    def _known_version(self, reg: AcceptedRegistration) -> tuple[str, int] | None:
        """(data version, state version) of ``reg`` as this pod stored it, if it remembers."""
        if self.remembered is None:
            return None
        seen = self.remembered.peek(registration_identity(reg.header))
        if seen is None or seen.token != reg.token:
            return None
        return seen.data_version, seen.state_version

    @staticmethod
    def _outcome(
        reg: AcceptedRegistration, status: str, repaired: dict[str, int], topics: int
    ) -> Outcome:
        if repaired:
            for k, n in repaired.items():
                REPAIRS.labels(k).inc(n)
            log.warning(
                "repaired what Redis lost of broker %s (%s, cluster %s): %s; keys are being "
                "evicted or deleted (docs/ha.md, Repair)",
                reg.header.broker_name,
                reg.header.broker_addr,
                reg.header.cluster_name,
                ", ".join(f"{k}={n}" for k, n in sorted(repaired.items())),
            )
        return Outcome(status, repaired, topics)

    async def verify_all(self) -> list[Outcome]:
        """Verify every connected broker now (not paced)."""
        return [await self._verify_safely(r) for r in self.accepted.alive()]

    async def _verify_safely(self, reg: AcceptedRegistration) -> Outcome:
        try:
            return await self.verify(reg)
        except asyncio.CancelledError:
            raise
        except RedisError as e:  # the next pass tries again
            REDIS_ERRORS.labels("reconcile").inc()
            log.warning(
                "verifying broker %s (%s) failed: %s",
                reg.header.broker_name,
                reg.header.broker_addr,
                e,
            )
        except Exception:
            REDIS_ERRORS.labels("reconcile").inc()
            log.exception("verifying broker %s failed", reg.header.broker_addr)
        return Outcome("failed", {}, 0)

    # ------------------------------------------------------------------ the loop

    async def _pause(self, seconds: float) -> None:
        """Sleep, or less when something asks for a verification now; serve those."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left > 0 and not self._wake.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), left)
            self._wake.clear()
            if self._everything:
                self._everything = False
                self._urgent.clear()
                await self.verify_all()
            while self._urgent:
                cluster, addr = next(iter(self._urgent))
                del self._urgent[(cluster, addr)]
                reg = self.accepted.get(cluster, addr)
                if reg is not None:
                    await self._verify_safely(reg)
            if time.monotonic() >= deadline:
                return

    async def run(self) -> None:
        while True:
            try:
                await self._one_pass()
            except asyncio.CancelledError:
                raise
            except Exception:  # never dies silently: logged, and the next pass runs
                log.exception("reconciliation pass failed")
                await asyncio.sleep(1.0)

    async def _one_pass(self) -> None:
        interval_s = self.interval_ms / 1000
        if interval_s <= 0:
            await self._pause(1.0)
            return
        entries = self.accepted.alive()
        if not entries:
            await self._pause(interval_s)
            return
        pause = max(MIN_PAUSE_S, interval_s / len(entries))
        for reg in entries:
            if self.accepted.get(reg.header.cluster_name, reg.header.broker_addr) is reg:
                await self._verify_safely(reg)
            await self._pause(pause)
        self.passes += 1

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="reconcile")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._task, 2.0)
            self._task = None
