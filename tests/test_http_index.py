"""``X-Namesrv-Index``: the route version of the very answer it comes with, read together with
it (``RouteReader.route_answer`` / ``cached_answer``), whatever the pod's route events have
reached — they lag the writes they announce, most of all on a busy machine. Here the events'
version is a plain number the test moves by hand, so every lag is exact."""

from __future__ import annotations

import dataclasses
from typing import Any

from namesrv_redis.domain.route_reader import RouteReader
from namesrv_redis.store.route_store import RouteStore
from tests.test_route_reader import make_store, registration


class Events:
    """Stands for ``RouteEvents.latest_version``: how far the pod's events have come."""

    def __init__(self) -> None:
        self.version = 0

    def latest(self) -> int:
        return self.version


async def test_a_miss_carries_the_version_it_was_read_at(real_redis: Any, namespace: str) -> None:
    store = await make_store(real_redis, namespace)
    await store.register_broker(registration(["T1", "T2"]))
    written = await store.route_version()
    events = Events()  # the registration's event has not arrived
    reader = RouteReader(store)
    body, version = await reader.route_answer("T1", standard=True, latest=events.latest)
    assert body is not None and version == written
    # a hit while the event is still on its way: still the version it was read at
    assert await reader.route_answer("T1", standard=True, latest=events.latest) == (body, written)
    assert reader.cached_answer("T1", standard=True) == (True, body, written)
    # events of later writes that did not drop it: the answer is current up to them
    events.version = written + 5
    assert await reader.route_answer("T1", standard=True, latest=events.latest) == (
        body,
        written + 5,
    )


async def test_no_route_answers_at_the_version_before_its_read(
    real_redis: Any, namespace: str
) -> None:
    store = await make_store(real_redis, namespace)
    await store.register_broker(registration(["T1", "T2"]))
    events = Events()
    events.version = 1  # behind the store: never ahead of what the read saw
    reader = RouteReader(store)
    assert await reader.route_answer("nope", standard=True, latest=events.latest) == (None, 1)
    events.version = 7
    assert await reader.route_answer("nope", standard=True, latest=events.latest) == (None, 7)


class OlderReadStore(RouteStore):
    """Answers topic ``Late`` as if its read had run at version 1 (a read that was overtaken
    by later writes and other topics' reads before its answer arrived)."""

    async def get_route_raw(self, topic: str, *, with_order_conf: bool = False) -> Any:
        route = await super().get_route_raw(topic, with_order_conf=with_order_conf)
        if topic == "Late" and route is not None:
            return dataclasses.replace(route, version=1)
        return route


async def test_a_shared_answer_read_later_never_dates_an_earlier_read(
    real_redis: Any, namespace: str
) -> None:
    """Topics with byte-identical answers share one cache entry; an entry made by a later read
    must not lend its (later) version to a topic read earlier, whose answer it may not be at
    that version."""
    store = OlderReadStore(real_redis, namespace)
    await store.load_scripts()
    await store.register_broker(registration(["Early", "Late"]))
    await store.register_broker(registration(["Other", "Other2"], name="broker-b"))
    written = await store.route_version()
    assert written > 1
    events = Events()
    reader = RouteReader(store)
    early, early_version = await reader.route_answer("Early", standard=True, latest=events.latest)
    late, late_version = await reader.route_answer("Late", standard=True, latest=events.latest)
    assert early == late and (early_version, late_version) == (written, 1)
    assert reader.cached_answer("Late", standard=True) == (True, late, 1)
    assert reader.cached_answer("Early", standard=True) == (True, early, written)
