"""decode_register_table (the registration fast path) against decode_register_body (the
general decoder): the same table for every captured broker body and for generated ones, the
general path for anything unusual, and a clear BodyError for what cannot be stored; and the
diff that a changed registration sends."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from namesrv_redis.domain.registrations import (
    RememberedRegistrations,
    diff_tables,
    entry_hashes,
    remember,
)
from namesrv_redis.rocketmq.register_body import (
    BodyError,
    QueueNums,
    TopicConfig,
    decode_register_body,
    decode_register_table,
    encode_register_body,
)
from tests.test_codec import FRAMES


def general(body: bytes, compressed: bool = False) -> dict[str, tuple[int, ...]]:
    decoded = decode_register_body(body, compressed, 409)
    return {
        tc.topic_name: (tc.read_queue_nums, tc.write_queue_nums, tc.perm, tc.topic_sys_flag)
        for tc in decoded.topic_configs.values()
    }


def fast(body: bytes, compressed: bool = False) -> dict[str, tuple[int, ...]]:
    table = decode_register_table(body, compressed, 409)
    return {
        t: (n.read_queue_nums, n.write_queue_nums, n.perm, n.topic_sys_flag)
        for t, n in table.topics.items()
    }


def test_captured_broker_bodies_give_the_same_table() -> None:
    seen = 0
    for f in FRAMES:
        if f["direction"] == "request" and f["code"] == 103:
            body = base64.b64decode(f["body_b64"])
            compressed = f["header"]["extFields"]["compressed"] == "true"
            assert fast(body, compressed) == general(body, compressed)
            table = decode_register_table(body, compressed, f["header"]["version"])
            assert table.data_version == decode_register_body(body, compressed, 409).data_version
            seen += 1
    assert seen >= 10


names = st.from_regex(r"\A[%|a-zA-Z0-9_-]{1,20}\Z")  # RocketMQ's topic name characters
ints = st.integers(-(2**31), 2**31 - 1)


@given(
    st.dictionaries(names, st.tuples(ints, ints, ints, ints), max_size=20),
    st.booleans(),
)
def test_generated_bodies_give_the_same_table(
    topics: dict[str, tuple[int, int, int, int]], compressed: bool
) -> None:
    configs = [TopicConfig(t, r, w, p, f) for t, (r, w, p, f) in topics.items()]
    body = encode_register_body({"counter": 1, "timestamp": 2}, configs, compressed=compressed)
    assert fast(body, compressed) == general(body, compressed)


def wrapper_body(configs: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps(
        {
            "filterServerList": [],
            "topicConfigSerializeWrapper": {
                "dataVersion": {"counter": 1, "timestamp": 2},
                "topicConfigTable": configs,
                **extra,
            },
        }
    )


@pytest.mark.parametrize(
    "body",
    [
        # pre-4.9 spelling of the sysflag
        wrapper_body({"T": {"topicName": "T", "perm": 6, "topicSynFlag": 3}}),
        # numbers as strings, fastjson's unquoted keys, a bare wrapper, missing fields
        wrapper_body({"T": {"topicName": "T", "perm": "6", "readQueueNums": "4"}}),
        b'{topicConfigSerializeWrapper:{"topicConfigTable":{"T":{"topicName":"T","perm":6}}}}',
        b'{"dataVersion":{"counter":1},"topicConfigTable":{"T":{"perm":2}}}',
        wrapper_body({"T": {}}),
    ],
)
def test_unusual_bodies_take_the_general_path(body: bytes) -> None:
    assert fast(body) == general(body)


@pytest.mark.parametrize(
    "body",
    [
        wrapper_body({"T": {"topicName": "T", "perm": 2**31}}),
        wrapper_body({"T": {"topicName": "T", "perm": "x"}}),
        wrapper_body({"T": 5}),
        b"[1,2]",
        b"not json",
    ],
)
def test_bodies_that_cannot_be_stored_are_refused(body: bytes) -> None:
    with pytest.raises(BodyError):
        decode_register_table(body, False, 409)


def test_static_topic_mappings_are_noticed() -> None:
    body = wrapper_body({}, topicQueueMappingInfoMap={"T": {"topic": "T"}})
    assert decode_register_table(body, False, 409).has_static_topic_mappings
    for empty in ({}, None):
        body = wrapper_body({}, topicQueueMappingInfoMap=empty)
        assert not decode_register_table(body, False, 409).has_static_topic_mappings


def test_diff_sends_changed_and_new_topics_and_counts_the_gone() -> None:
    old = {"A": QueueNums(8, 8, 6, 0), "B": QueueNums(8, 8, 6, 0), "C": QueueNums(1, 1, 6, 0)}
    new = {"A": QueueNums(8, 8, 6, 0), "B": QueueNums(8, 8, 2, 0), "D": QueueNums(4, 4, 6, 0)}
    d = diff_tables(remember("t", "{}", 0, old), new, entry_hashes(new))
    assert [(q.topic, q.perm) for q in d.changed] == [("B", 2), ("D", 6)]
    assert d.removed == 1
    same = diff_tables(remember("t", "{}", 0, new), dict(new), entry_hashes(new))
    assert (same.changed, same.removed) == ([], 0)


def test_diff_without_kept_names_sends_the_same_topics_and_counts_nothing() -> None:
    """Names are kept only for deleteTopicWithBrokerRegistration; the diff is the same."""
    old = {"A": QueueNums(8, 8, 6, 0), "B": QueueNums(8, 8, 6, 0), "C": QueueNums(1, 1, 6, 0)}
    new = {"A": QueueNums(8, 8, 6, 0), "B": QueueNums(8, 8, 2, 0), "D": QueueNums(4, 4, 6, 0)}
    d = diff_tables(remember("t", "{}", 0, old, with_names=False), new, entry_hashes(new))
    assert [(q.topic, q.perm) for q in d.changed] == [("B", 2), ("D", 6)]
    assert d.removed == 0


@pytest.mark.parametrize("with_names", [True, False])
def test_diff_of_many_changes_keeps_the_table_order(with_names: bool) -> None:
    """More than a few changes take the pass over the table; a few are found by position:
    either way the changed topics come in the new table's order."""
    old = {f"T{i}": QueueNums(8, 8, 6, 0) for i in range(100)}
    for changes in (3, 30):
        new = dict(old)
        touched = [f"T{i}" for i in range(0, 100, 100 // changes)][:changes]
        for t in touched:
            new[t] = QueueNums(4, 4, 6, 0)
        del new["T99"]
        new["NEW"] = QueueNums(1, 1, 6, 0)
        d = diff_tables(remember("t", "{}", 0, old, with_names=with_names), new, entry_hashes(new))
        assert [q.topic for q in d.changed] == [*touched, "NEW"]
        assert d.removed == (1 if with_names else 0)


def test_remembered_registrations_are_bounded_by_topic_entries() -> None:
    memory = RememberedRegistrations(max_topic_entries=10)
    table = {f"T{i}": QueueNums() for i in range(4)}
    for b in range(3):
        memory.put(b, remember(f"t{b}", "{}", 0, table))
    assert memory.get(0) is None and memory.topic_entries == 8  # the oldest went
    assert memory.get(1) is not None  # now the most recent
    memory.put(3, remember("t3", "{}", 0, table))
    assert memory.get(2) is None and memory.get(1) is not None
    memory.put(4, remember("t4", "{}", 0, {f"T{i}": QueueNums() for i in range(11)}))
    assert memory.get(4) is None  # larger than the bound: not remembered at all


async def test_pod_sends_everything_when_a_deleting_store_loses_topics(
    redis: Any, namespace: str
) -> None:
    """With deleteTopicWithBrokerRegistration, a body that stops listing a topic is stored in
    full (the diff carries no names of gone topics), so that topic is deleted."""
    from namesrv_redis.domain.registrations import store_registration
    from namesrv_redis.rocketmq.register_body import RegisterTable
    from namesrv_redis.store.route_store import BrokerRegistration, RegisterMode, RouteStore

    store = RouteStore(redis, namespace, delete_topic_with_broker_registration=True)
    await store.load_scripts()
    memory = RememberedRegistrations()
    modes: list[RegisterMode] = []

    async def register(counter: int, topics: list[str]) -> None:
        table = RegisterTable(
            {"counter": counter, "timestamp": 1}, {t: QueueNums() for t in topics}, None, False
        )

        def registration(**fields: Any) -> BrokerRegistration:
            modes.append(fields.get("mode", RegisterMode.FULL))
            return BrokerRegistration("C", "10.0.0.1:10911", "a", 0, **fields)

        result = await store_registration(
            store, memory, "a", f"{counter}:{topics}", lambda: table, registration
        )
        assert result.status.value == "ok"

    await register(1, ["T1", "T2", "T3"])
    await register(2, ["T1", "T2", "T3", "T4"])  # added: a diff
    await register(3, ["T1", "T3", "T4"])  # T2 gone: everything
    assert modes == [RegisterMode.DIFF, RegisterMode.FULL, RegisterMode.DIFF, RegisterMode.FULL]
    assert await store.all_topics() == ["T1", "T3", "T4"]


def compressed_body(*topic_texts: bytes) -> bytes:
    import struct
    import zlib

    def chunk(b: bytes) -> bytes:
        return struct.pack(">i", len(b)) + b

    raw = chunk(b'{"counter":1,"timestamp":2}') + struct.pack(">i", len(topic_texts))
    raw += b"".join(chunk(t) for t in topic_texts) + chunk(b"[]")
    return zlib.compress(raw)


def test_compressed_topic_texts_with_attributes_and_odd_spacing() -> None:
    body = compressed_body(
        b'T1 8 8 6 SINGLE_TAG {"+message.type":"FIFO"}',
        b"T2 4 2 2 SINGLE_TAG",
    )
    assert fast(body, True) == general(body, True) == {"T1": (8, 8, 6, 0), "T2": (4, 2, 2, 0)}


@pytest.mark.parametrize(
    "text",
    [b"T1 8 8", b"T1 x 8 6 SINGLE_TAG", b"T1 8 8 2147483648 SINGLE_TAG", b"\xff 8 8 6 S"],
)
def test_compressed_topic_texts_that_cannot_be_stored_are_refused(text: bytes) -> None:
    with pytest.raises(BodyError):
        decode_register_table(compressed_body(text), True, 409)
