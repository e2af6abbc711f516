"""What only our pods can tell (their HTTP tier): broker liveness and route change events.

A name server is ours when its GET_NAMESRV_CONFIG answer names an ``httpPort`` and a
``routeCacheMaxAgeMs`` (see :func:`namesrv_redis.admin.nameserver.http_base_of`); the Java
NameServer exposes neither, so the admin falls back to what the remoting protocol offers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from namesrv_redis.admin.nameserver import AdminError, NameServers, http_base_of, namesrv_config


@dataclass(frozen=True, slots=True)
class AddressLiveness:
    seconds_left: float | None
    data_version: dict[str, Any] | None
    last_update_ms: int | None


async def http_base(ns: NameServers, addr: str, override: str | None = None) -> str | None:
    """The HTTP tier to ask about ``addr``: ``--http`` when given, else the pod's own."""
    if override:
        return override.rstrip("/")
    try:
        return http_base_of(addr, await namesrv_config(ns, addr))
    except AdminError:
        return None


async def liveness(base: str, timeout: float) -> dict[str, AddressLiveness]:
    """Liveness of every registered broker address, from ``GET /v1/clusters``."""
    async with httpx.AsyncClient(timeout=timeout) as http:
        try:
            r = await http.get(f"{base}/v1/clusters")
            r.raise_for_status()
        except httpx.HTTPError as e:
            raise AdminError(f"{base}/v1/clusters: {e}") from e
    out: dict[str, AddressLiveness] = {}
    for cluster in r.json().get("clusters", []):
        for broker in cluster.get("brokers", []):
            for a in broker.get("addresses", []):
                live = a.get("liveness") or {}
                out[a["address"]] = AddressLiveness(
                    live.get("secondsLeft"),
                    live.get("dataVersion"),
                    live.get("lastUpdateTimestamp"),
                )
    return out


async def route_events(base: str, topic: str, timeout: float) -> AsyncIterator[dict[str, Any]]:
    """Route-change events of ``topic`` from the pod's Server-Sent Events stream; yields
    ``{"connected": True}`` once the stream is open, then each event's data."""
    t = httpx.Timeout(timeout, read=None)
    async with (
        httpx.AsyncClient(timeout=t) as http,
        http.stream("GET", f"{base}/v1/events", params={"topic": topic}) as r,
    ):
        if r.status_code != 200:
            raise AdminError(f"{base}/v1/events answered HTTP {r.status_code}")
        yield {"connected": True}
        async for line in r.aiter_lines():
            if line.startswith("data:"):
                yield orjson.loads(line[5:].strip())
