"""What the pod can do with the Redis it has, judged by trying it (docs/redis.md).

Readiness tells the truth only if it is based on what Redis actually lets the pod do, not on
what a setting says:

- **Permissions** (:func:`probe_commands`, :func:`probe_subscription`): each command the pod
  needs is run once, harmlessly; a ``NOPERM`` (or ``unknown command``, a command renamed away)
  is a :class:`Refusal` naming the ACL rule that grants it. SCRIPT LOAD, EVALSHA, MGET and SET (the
  route-version and epoch poll), WAIT (unless ``redisWaitReplicas=0``), INFO and SUBSCRIBE on
  the namespace's event channel are required:
  without them the pod is not ready. CONFIG is optional (policy and notifications are read
  otherwise). EVAL is not needed at all: redis-py runs scripts by EVALSHA and reloads them
  with SCRIPT LOAD after NOSCRIPT.
- **Eviction** (:func:`read_memory_policy`, :func:`judge_policy`): ``maxmemory-policy`` from
  ``CONFIG GET``, or ``INFO memory`` where CONFIG is refused. An ``allkeys-*`` policy with a
  memory limit may evict route tables silently: not ready. ``volatile-*`` evicts the liveness
  keys first: ready, with a notice.
- **Expired-key events** (:class:`ExpiryProbe`): judged by observation. A probe key with a
  TTL of a few hundred milliseconds under the namespace's hash tag (so on the node that owns
  the namespace) is written, touched after its TTL (so Redis deletes it now rather than in
  its background cycle), and the cleaner's subscription must see its ``expired`` event. This
  works where CONFIG is renamed away and ``notify-keyspace-events`` was preset by the
  operator (ElastiCache, MemoryDB, Azure), and it notices a server that CONFIG says emits
  events but does not deliver them to this user.

:class:`CapabilityMonitor` runs the permission and eviction checks at start, on every
reconnect of the expiry subscription or failover (:meth:`~CapabilityMonitor.wake`) and every
``interval_s``; the pod's ``/readyz`` reads its cached verdict (:meth:`~CapabilityMonitor.problem`,
:meth:`~CapabilityMonitor.notices`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoPermissionError, NoScriptError, RedisError, ResponseError

from namesrv_redis.store.keys import Keys
from namesrv_redis.telemetry.metrics import set_maxmemory_policy, set_redis_permission

log = logging.getLogger(__name__)

PROBE_TTL_MS = 300
"""The probe key's time to live: short, so a probe takes well under a second."""
PROBE_EVENT_WAIT_S = 2.0
"""How long after touching the expired probe key its event may take to arrive."""
RECHECK_INTERVAL_S = 30.0
SUBSCRIBE_CONFIRM_S = 2.0
PERMISSIONS = ("script", "evalsha", "mget", "set", "wait", "info", "config", "subscribe")
"""The ``permission`` labels of ``namesrv_redis_permission`` the monitor sets (the cleaner sets
``subscribe_expired``)."""


def in_process(client: Any) -> bool:
    """``memory://`` (fakeredis): one process, no replicas, no eviction, no INFO or WAIT."""
    return type(client).__module__.startswith("fakeredis")


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def is_refusal(e: BaseException) -> bool:
    """Whether a Redis error means "not allowed": ``NOPERM`` (ACL), or a command renamed away
    (``rename-command``; managed services answer ``unknown command`` for CONFIG)."""
    if isinstance(e, NoPermissionError):
        return True
    if not isinstance(e, ResponseError):
        return False
    text = str(e).lower()
    return text.startswith("unknown command") or "noperm" in text or "no permissions" in text


@dataclass(frozen=True, slots=True)
class Refusal:
    """One thing the pod's Redis user may not do."""

    what: str
    """The command (``EVALSHA``) or subscription (``SUBSCRIBE nsr:{ns}:events``) refused."""
    grant: str
    """The ACL rule that grants it (``+evalsha``, ``&nsr:{ns}:events``)."""
    error: str
    """What Redis answered."""

    def text(self) -> str:
        return f"Redis refuses {self.what} ({self.error}): grant {self.grant}"


class SubscriptionRefused(RedisError):
    """Redis refused a SUBSCRIBE (ACL: the command or the channel)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.text())
        self.refusal = refusal


def _subscribe_refusal(channel: str, e: BaseException) -> Refusal:
    command = "command" in str(e).lower()  # NOPERM names either the command or the channel
    return Refusal(f"SUBSCRIBE {channel}", "+subscribe" if command else f"&{channel}", str(e))


async def subscribe_confirmed(
    pubsub: Any, channel: str, timeout_s: float = SUBSCRIBE_CONFIRM_S
) -> None:
    """SUBSCRIBE and wait for Redis to confirm it. A refusal raises
    :class:`SubscriptionRefused`; no confirmation within ``timeout_s`` raises TimeoutError.
    (redis-py's ``subscribe()`` returns before Redis has answered: a refused subscription
    would otherwise look like a subscription lost a moment later.) ``pubsub`` must not ignore
    subscribe messages."""
    try:
        await pubsub.subscribe(channel)
        async with asyncio.timeout(timeout_s):
            while True:
                message = await pubsub.get_message(timeout=timeout_s)
                if message is not None and message.get("type") == "subscribe":
                    return
    except ResponseError as e:
        if is_refusal(e):
            raise SubscriptionRefused(_subscribe_refusal(channel, e)) from e
        raise


async def probe_subscription(client: Any, channel: str) -> Refusal | None:
    """Subscribe to ``channel`` on a connection of its own and leave: None if allowed."""
    pubsub = client.pubsub()
    try:
        await subscribe_confirmed(pubsub, channel)
        return None
    except SubscriptionRefused as e:
        return e.refusal
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pubsub.aclose(), 1.0)


async def _attempt(refusals: list[Refusal], what: str, grant: str, call: Callable[[], Any]) -> bool:
    """Run one probe command: True if Redis allowed it, False (and a refusal) if not."""
    try:
        await call()
        return True
    except ResponseError as e:
        if is_refusal(e):
            refusals.append(Refusal(what, grant, str(e)))
            return False
        raise


async def probe_commands(
    client: Any, keys: Keys, script: AsyncScript, *, wait: bool, info: bool = True
) -> tuple[list[Refusal], list[Refusal]]:
    """(required refusals, optional refusals) for the commands the pod sends (WAIT and INFO
    only when ``wait`` and ``info``).

    The script run is ``lua/probe_expiry.lua`` on a probe key of the namespace: it also shows
    that commands called inside scripts, and the namespace's key pattern, are allowed."""
    required: list[Refusal] = []
    optional: list[Refusal] = []
    loaded = await _attempt(
        required, "SCRIPT LOAD", "+script|load", lambda: client.script_load(script.script)
    )
    try:
        await _attempt(
            required,
            "EVALSHA (and the commands and keys its scripts use)",
            "+evalsha, and ~" + keys.prefix + "* with the commands of docs/redis.md",
            lambda: client.evalsha(script.sha, 1, keys.prefix, "caps", PROBE_TTL_MS),
        )
    except NoScriptError:
        if loaded:
            raise
        # SCRIPT LOAD refused and the script not loaded by anyone: EVALSHA cannot be told
    # the route-version and epoch poll (lost events, lost data): MGET, and SET NX of the epoch
    await _attempt(required, "MGET", "+mget", lambda: client.mget(keys.version, keys.probe("caps")))
    await _attempt(
        required, "SET", "+set", lambda: client.set(keys.probe("caps-set"), 1, px=PROBE_TTL_MS)
    )
    if wait:
        await _attempt(required, "WAIT", "+wait", lambda: client.execute_command("WAIT", 0, 0))
    if not info:
        return required, optional
    await _attempt(required, "INFO", "+info", lambda: client.info("memory"))
    await _attempt(
        optional,
        "CONFIG GET",
        "+config|get (CONFIG may be renamed away on managed Redis: then set notify-keyspace-"
        "events and maxmemory-policy in the service's parameters)",
        lambda: client.config_get("maxmemory-policy"),
    )
    return required, optional


# ------------------------------------------------------------------ eviction


@dataclass(frozen=True, slots=True)
class MemoryPolicy:
    """What Redis does when it is full."""

    policy: str
    """``maxmemory-policy`` (``noeviction``, ``allkeys-lru``, …), or ``unknown``"""
    maxmemory: int | None
    """``maxmemory`` in bytes; 0 means no limit (nothing is ever evicted); None: unknown"""
    source: str
    """``config`` (CONFIG GET), ``info`` (INFO memory) or ``none``"""


async def read_memory_policy(client: Any) -> MemoryPolicy:
    """``maxmemory-policy`` and ``maxmemory`` by CONFIG GET, else from ``INFO memory``."""
    try:
        raw = await client.config_get("maxmemory-policy")
        raw.update(await client.config_get("maxmemory"))
        conf = {_text(k): _text(v) for k, v in raw.items()}
        if "maxmemory-policy" in conf:
            return MemoryPolicy(conf["maxmemory-policy"], int(conf.get("maxmemory") or 0), "config")
    except ResponseError as e:
        if not is_refusal(e):
            raise
    try:
        info = await client.info("memory")
    except ResponseError as e:
        if not is_refusal(e):
            raise
        return MemoryPolicy("unknown", None, "none")
    if "maxmemory_policy" not in info:
        return MemoryPolicy("unknown", None, "none")
    limit = info.get("maxmemory")
    return MemoryPolicy(
        _text(info["maxmemory_policy"]), None if limit is None else int(limit), "info"
    )


def judge_policy(p: MemoryPolicy) -> tuple[str | None, str | None]:
    """(why the pod is not ready, what works but degraded) for an eviction policy."""
    where = f"maxmemory-policy {p.policy}, maxmemory {p.maxmemory} (read by {p.source})"
    if p.policy.startswith("allkeys-"):
        if p.maxmemory == 0:
            return None, (
                f"{where}: no memory limit, so nothing is evicted yet, but any maxmemory "
                "would let Redis evict route tables silently; set maxmemory-policy noeviction"
            )
        return (
            f"Redis may evict any key ({where}): route tables and KV config would vanish "
            "silently; set maxmemory-policy noeviction (or volatile-*) on the server",
            None,
        )
    if p.policy.startswith("volatile-") and p.maxmemory != 0:
        return None, (
            f"{where}: under memory pressure Redis evicts keys with a TTL first, and the "
            "brokers' liveness keys are this namespace's only ones; prefer noeviction"
        )
    if p.policy == "unknown":
        return None, "maxmemory-policy cannot be read (CONFIG and INFO refused)"
    return None, None


# ------------------------------------------------------------------ expiry events


class ExpiryProbe:
    """Whether expired-key events reach the cleaner, judged by one probe key's event.

    The cleaner calls :meth:`saw` with every expired key it receives and runs
    :meth:`observe` while subscribed."""

    def __init__(
        self,
        redis: Any,
        keys: Keys,
        script: AsyncScript,
        *,
        ttl_ms: int = PROBE_TTL_MS,
        event_wait_s: float = PROBE_EVENT_WAIT_S,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.script = script
        self.ttl_ms = ttl_ms
        self.event_wait_s = event_wait_s
        self.token = secrets.token_hex(4)
        self._count = 0
        self._pending: dict[str, asyncio.Future[None]] = {}

    def saw(self, key: str) -> bool:
        """Whether an expired ``key`` is a probe key (this pod's or another's)."""
        waiting = self._pending.get(key)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)
        return key.startswith(self.keys.probe_prefix)

    async def observe(self) -> bool:
        """Write a probe key, let it expire, and wait for its event: True if it came."""
        self._count += 1
        name = f"{self.token}-{self._count}"
        key = self.keys.probe(name)
        seen: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[key] = seen
        try:
            await self.script(keys=[self.keys.prefix], args=[name, self.ttl_ms])
            await asyncio.sleep(self.ttl_ms / 1000 + 0.05)
            # Redis deletes an expired key when it is next touched (or in its background
            # cycle, which may take seconds among many keys with a TTL): touch it now.
            await self.redis.exists(key)
            try:
                await asyncio.wait_for(asyncio.shield(seen), self.event_wait_s)
                return True
            except TimeoutError:
                return False
        finally:
            self._pending.pop(key, None)


# ------------------------------------------------------------------ the monitor


class CapabilityMonitor:
    """The permission and eviction verdict of one pod, kept fresh in the background."""

    def __init__(
        self,
        client: Callable[[], Any],
        keys: Keys,
        script: AsyncScript,
        *,
        wait_needed: Callable[[], bool] = lambda: True,
        interval_s: float = RECHECK_INTERVAL_S,
    ) -> None:
        self.client = client
        """The node that holds the namespace (Cluster: the slot owner's client)."""
        self.keys = keys
        self.script = script
        self.wait_needed = wait_needed
        self.interval_s = interval_s
        self.required: list[Refusal] = []
        self.optional: list[Refusal] = []
        self.events_refusal: Refusal | None = None
        self.policy: MemoryPolicy | None = None
        self.checked = False
        """Whether a check has completed (readiness waits for the first)."""
        self._probe_subscription = True
        self._said: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self, *_: Any) -> None:
        """Check again now (the expiry subscription reconnected, or a failover)."""
        self._probe_subscription = True
        self._wake.set()

    async def recheck(self, reason: str = "") -> None:
        """A ``Topology.on_failover`` callback."""
        self.wake()

    async def check(self) -> None:
        client = self.client()
        server = not in_process(client)
        required, optional = await probe_commands(
            client, self.keys, self.script, wait=server and self.wait_needed(), info=server
        )
        if self._probe_subscription or self.events_refusal is not None:
            self.events_refusal = await probe_subscription(client, self.keys.events)
            self._probe_subscription = False
        if self.events_refusal is not None:
            required.append(self.events_refusal)
        policy = (
            await read_memory_policy(client) if server else MemoryPolicy("noeviction", 0, "none")
        )
        self.required, self.optional, self.policy = required, optional, policy
        self.checked = True
        refused = {r.what.split()[0].lower() for r in required + optional}
        for permission in PERMISSIONS:
            set_redis_permission(permission, permission not in refused)
        set_maxmemory_policy(policy.policy, policy.source, policy.maxmemory)
        self._say()

    def problem(self) -> str | None:
        """Why the pod cannot do its job with this Redis, or None."""
        if not self.checked:
            return "Redis permissions not checked yet"
        reasons = [r.text() for r in self.required]
        if self.policy is not None and (bad := judge_policy(self.policy)[0]) is not None:
            reasons.append(bad)
        return "; ".join(reasons) or None

    def notices(self) -> list[str]:
        """What works but is worth knowing (served with /readyz)."""
        out = [f"{r.text()} (optional)" for r in self.optional]
        if self.policy is not None and (notice := judge_policy(self.policy)[1]) is not None:
            out.append(notice)
        return out

    def _say(self) -> None:
        """One log line per new finding (ERROR when it makes the pod unready), and one when it
        is gone."""
        problems = {t for t in (self.problem() or "").split("; ") if t}
        notices = set(self.notices())
        for text in sorted(problems - self._said):
            log.error("pod not ready: %s", text)
        for text in sorted(notices - self._said):
            log.warning("%s", text)
        for text in sorted(self._said - problems - notices):
            log.info("resolved: %s", text)
        self._said = problems | notices

    async def start(self) -> None:
        try:
            await self.check()
        except Exception as e:  # unreachable: the loop tries again
            log.warning("checking what the Redis user may do failed: %s", e)
        self._task = asyncio.create_task(self._run(), name="redis-capabilities")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.debug("capability check failed: %s", e)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=2.0)
            self._task = None


async def load_scripts_unless_refused(store: Any) -> None:
    """SCRIPT LOAD every script at start; a user without ``+script|load`` still starts (not
    ready, and :class:`CapabilityMonitor` says why) rather than exiting."""
    try:
        await store.load_scripts()
    except ResponseError as e:
        if not is_refusal(e):
            raise
        log.debug("scripts not preloaded: %s", e)
