"""``admin watch -t TOPIC``: a line each time a name server's route of the topic changes.

Each name server of ``-n`` is watched on its own, so during a migration the Java and our
servers can be compared side by side. Our pods push changes over their HTTP event stream
(``/v1/events``; a re-read every ``recheck`` seconds covers a lost event); any other name
server is polled every ``interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from namesrv_redis.admin import render, routes
from namesrv_redis.admin.nameserver import AdminError, NameServers, Refused, topic_route
from namesrv_redis.admin.ours import http_base, route_events
from namesrv_redis.rocketmq.codes import ResponseCode


@dataclass
class WatchOptions:
    topic: str
    interval: float = 2.0
    recheck: float = 30.0
    count: int | None = None
    """Stop after this many changes (the first state shown is not a change)."""
    duration: float | None = None
    http: str | None = None
    json: bool = False


@dataclass
class _State:
    changes: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    last: dict[str, Any] = field(default_factory=dict)


async def _read(ns: NameServers, addr: str, topic: str) -> dict[str, Any] | None:
    try:
        _, route = await topic_route(ns, topic, addr)
    except Refused as e:
        if e.code == ResponseCode.TOPIC_NOT_EXIST:
            return None
        raise
    return route


def _emit(
    opts: WatchOptions, addr: str, via: str, route: dict[str, Any] | None, first: bool
) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if opts.json:
        render.json_line(
            {
                "time": stamp,
                "nameServer": addr,
                "via": via,
                "topic": opts.topic,
                "initial": first,
                "route": route,
            }
        )
        return
    what = "now" if first else "changed"
    print(f"{stamp}  {addr}  {via:<4}  {opts.topic}  {what}: {routes.summary(route)}", flush=True)


async def _watch_one(ns: NameServers, addr: str, opts: WatchOptions, state: _State) -> None:
    base = await http_base(ns, addr, opts.http)
    via = "sse" if base else "poll"

    async def observe(first: bool = False) -> None:
        route = await _read(ns, addr, opts.topic)
        key = routes.normalised(route)
        if not first and state.last.get(addr) == key:
            return
        state.last[addr] = key
        _emit(opts, addr, via, route, first)
        if not first:
            state.changes += 1
            if opts.count is not None and state.changes >= opts.count:
                state.done.set()

    if base is None:
        await observe(first=True)
        while True:
            await asyncio.sleep(opts.interval)
            await observe()

    first = True
    while True:
        try:
            events = route_events(base, opts.topic, ns.timeout)
            async for event in events:
                if event.get("connected"):
                    # Read after subscribing, so nothing between the read and the stream is lost.
                    await observe(first)
                    first = False
                    continue
                await observe()
        except (httpx.HTTPError, AdminError) as e:
            print(f"{addr}: event stream: {e}; polling instead", file=sys.stderr)
            via = "poll"
            if first:
                await observe(first=True)
                first = False
            while True:
                await asyncio.sleep(opts.interval)
                await observe()


async def _rechecks(ns: NameServers, addr: str, opts: WatchOptions, state: _State) -> None:
    """Our pods: re-read now and then in case an event was lost."""
    while True:
        await asyncio.sleep(opts.recheck)
        with contextlib.suppress(AdminError):
            route = await _read(ns, addr, opts.topic)
            key = routes.normalised(route)
            if addr in state.last and state.last[addr] != key:
                state.last[addr] = key
                _emit(opts, addr, "poll", route, False)
                state.changes += 1
                if opts.count is not None and state.changes >= opts.count:
                    state.done.set()


async def watch(ns: NameServers, opts: WatchOptions) -> int:
    """Run until ``count`` changes were seen, ``duration`` passed or every watcher failed.
    Returns the number of watchers that failed."""
    state = _State()
    failures: list[str] = []

    async def guarded(addr: str) -> None:
        try:
            await _watch_one(ns, addr, opts, state)
        except AdminError as e:
            failures.append(str(e))
            print(f"{addr}: {e}", file=sys.stderr)

    tasks = [asyncio.create_task(guarded(a)) for a in ns.addrs]
    tasks += [asyncio.create_task(_rechecks(ns, a, opts, state)) for a in ns.addrs]
    done_wait = asyncio.create_task(state.done.wait())

    async def all_watchers() -> None:
        await asyncio.gather(*tasks[: len(ns.addrs)], return_exceptions=True)

    watchers = asyncio.create_task(all_watchers())
    try:
        await asyncio.wait(
            [watchers, done_wait], timeout=opts.duration, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for t in [*tasks, done_wait, watchers]:
            t.cancel()
        await asyncio.gather(*tasks, done_wait, watchers, return_exceptions=True)
    return len(failures)
