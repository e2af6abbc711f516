"""``GET /v1/events`` (Server-Sent Events) over real sockets: the subscription survives its
keep-alives, the ``?topic=`` filter filters, a client that leaves takes its listener with it,
and nothing is logged as an error — in process with short keep-alives, and against a real pod
left idle for over a minute (``slow``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from namesrv_redis.http import app as http_app
from tests.brokerthread import BrokerThread
from tests.conftest import RedisServerProcess
from tests.serverproc import NamesrvProcess
from tests.test_http import Tier, register, served, sim_broker, tier  # noqa: F401


class Stream:
    """One open event stream, read line by line into ``lines`` by a task (ended by the
    stream's end or by :meth:`close`)."""

    def __init__(self, lines: AsyncIterator[str]) -> None:
        self.lines: list[str] = []
        self.changed = asyncio.Event()
        self._task = asyncio.create_task(self._read(lines))

    async def _read(self, lines: AsyncIterator[str]) -> None:
        async for line in lines:
            self.lines.append(line)
            self.changed.set()

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(x[6:]) for x in self.lines if x.startswith("data: ")]

    @property
    def keepalives(self) -> int:
        return self.lines.count(": keep-alive")

    async def until(self, what: str, check: Any, timeout: float = 20) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not check(self):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0 or self._task.done():
                raise AssertionError(f"never saw {what}; stream: {self.lines}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)


def topics_of(stream: Stream) -> set[str]:
    return {t for e in stream.events for t in (e["topics"] or ["*"])}


async def test_stream_survives_keepalives_filters_and_cleans_up(
    tier: Tier,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(http_app, "KEEPALIVE_S", 0.05)
    caplog.set_level(logging.WARNING)
    async with served(tier.app) as port, httpx.AsyncClient(timeout=30) as http:
        base = f"http://127.0.0.1:{port}/v1/events"
        async with (
            http.stream("GET", base, params={"topic": "Wanted"}) as filtered_response,
            http.stream("GET", base) as all_response,
        ):
            filtered = Stream(filtered_response.aiter_lines())
            everything = Stream(all_response.aiter_lines())
            for s in (filtered, everything):
                await s.until("connected", lambda s: ": connected" in s.lines)
                await s.until("ten keep-alives", lambda s: s.keepalives >= 10)
            assert len(tier.events._queues) == 2  # one subscription per client

            unwanted = sim_broker("broker-x", 10921, topics=("Unwanted", "Unwanted2"))
            c = await register(tier, unwanted)
            await everything.until("Unwanted", lambda s: "Unwanted" in topics_of(s))
            b = sim_broker("broker-w", 10931, topics=("Wanted", "Wanted2"))
            assert (await b.register(c)).code == 0
            await everything.until("Wanted", lambda s: "Wanted" in topics_of(s))
            await filtered.until("Wanted", lambda s: "Wanted" in topics_of(s))
            # the filter: only events naming the topic (or "everything may have changed")
            assert all(e["topics"] is None or "Wanted" in e["topics"] for e in filtered.events)
            assert "Unwanted" not in topics_of(filtered)
            await c.close()
            for s in (filtered, everything):
                await s.close()
        # both clients left: their subscriptions went with them
        for _ in range(200):
            if not tier.events._queues:
                break
            await asyncio.sleep(0.02)
        assert tier.events._queues == set()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == []


@pytest.mark.slow
def test_pod_stream_idle_over_a_minute_still_delivers(tmp_path: Any) -> None:
    """Against a real pod with its real 15 s keep-alive: curl's ``-N`` view of the stream."""
    redis = RedisServerProcess().start()
    pod = NamesrvProcess(redis.url, "sse-idle").start()
    broker: BrokerThread | None = None
    try:
        base = f"http://127.0.0.1:{pod.http_port}/v1/events"
        with (
            httpx.Client(timeout=httpx.Timeout(10, read=30)) as http,
            http.stream("GET", base, params={"topic": "Late"}) as filtered,
            http.stream("GET", base) as everything,
        ):
            assert filtered.status_code == everything.status_code == 200
            lines_f, lines_a = filtered.iter_lines(), everything.iter_lines()
            assert next(lines_f) == next(lines_a) == ": connected"
            idle_until = time.monotonic() + 65
            keepalives = 0
            while time.monotonic() < idle_until:  # ~4 keep-alives each, nothing else
                line_f, line_a = next(lines_f), next(lines_a)
                assert line_f in ("", ": keep-alive") and line_a in ("", ": keep-alive")
                keepalives += line_f == ": keep-alive"
            assert keepalives >= 4

            sim = sim_broker("broker-o", 10941, topics=("Other", "Other2"))
            broker = BrokerThread(pod.port, sim).start()
            assert "Other" in _next_event(lines_a)["topics"]
            sim.add_topics(["Late"])
            broker.register()
            event_a, event_f = _next_event(lines_a), _next_event(lines_f)
            # the filtered stream's first event is this one: "Other" alone never reached it
            assert "Late" in event_a["topics"] and "Late" in event_f["topics"]
    finally:
        if broker is not None:
            broker.stop()
        pod.stop()
        redis.stop()
    log = pod.log_path.read_text(errors="replace")
    assert "Traceback" not in log and not re.search(r"\bERROR\b", log), log[-4000:]


def _next_event(lines: Any) -> dict[str, Any]:
    """The next event naming topics (keep-alives, blank lines and "everything may have
    changed" notices skipped)."""
    for line in lines:
        if line.startswith("data: "):
            event: dict[str, Any] = orjson.loads(line[6:])
            if event["topics"] is not None:
                return event
    raise AssertionError("the stream ended")
