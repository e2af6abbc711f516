"""The cached route answer's fast path: the codec's Java-form JSON header decoding agrees with
the general one on every header (accepted or refused alike), a success answer's head is the
same bytes ``encode_response`` writes, and a read's pipelined cached answers are byte-identical
to the encoded ones and counted one by one in every metric although recorded once per read."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from namesrv_redis.remoting.codec import (
    JSON,
    FrameDecoder,
    _decode_json_fields,
    decode_json_header,
    encode_request,
    encode_response,
    success_head,
)
from namesrv_redis.remoting.server import observe_many
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.telemetry.metrics import REGISTRY
from tests.test_remoting_server import Running, broker, running

__all__ = ["running"]  # the fixture, shared with test_remoting_server


def _outcome(f: Any, data: bytes) -> Any:
    try:
        return f(data)
    except Exception as e:  # the refusal itself must be the same
        return (type(e), str(e))


EDGE_HEADERS = [
    b'{"code":105,"extFields":{"topic":"T"},"flag":0,"language":"JAVA","opaque":7,'
    b'"serializeTypeCurrentRPC":"JSON","version":409}',
    b'{"code":1,"code":105}',
    b'{"code":105,"extFields":{"topic":"a\\ud800"}}',
    b'{"code":99999999999999999999999}',
    b'{"code":18446744073709551615}',
    b'{"code":-9223372036854775808}',
    b'{"code":-9223372036854775809}',
    b'{"code":105,"x":"\xff\xfe"}',
    b'{"code":105,"extFields":{"topic":"\xff\xfe"}}',
    b'{"code":105,"serializeTypeCurrentRPC":"\xff\xfe"}',
    b'{"code":105,"x":1e999}',
    b'{"code":105,"extFields":{"topic":"a","topic":"b"}}',
    b'{"code":1,"extFields":{"a":null,"b":1,"c":true,"d":[1]}}',
    b'{"code":"105","opaque":"7","flag":"0","version":"409"}',
    b'{"code":1,"language":3}',
    b'{"code":1,"language":null,"remark":null,"extFields":null,"opaque":null}',
    b'{"code":true}',
    b'{"code":1.0}',
    b'{"opaque":1}',
    b"[]",
    b'"code"',
    b'{"code":1',
    b' {"code":1} ',
    b'{"code":1,"remark":"\\u0000\xc3\xa9"}',
    b'{"code":1,"serializeTypeCurrentRPC":1}',
]


@pytest.mark.parametrize("header", EDGE_HEADERS)
def test_java_form_fast_path_decodes_or_refuses_like_the_general_path(header: bytes) -> None:
    assert _outcome(decode_json_header, header) == _outcome(_decode_json_fields, header)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
_fields = st.sampled_from(
    ["code", "language", "version", "opaque", "flag", "remark", "extFields",
     "serializeTypeCurrentRPC", "other"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        _fields,
        st.integers(-(2**65), 2**65)
        | st.text()
        | st.dictionaries(st.text(max_size=5), st.text(max_size=5) | _json_values, max_size=3)
        | _json_values,
    )
)
def test_any_json_header_decodes_or_is_refused_the_same_on_both_paths(h: dict[str, Any]) -> None:
    try:
        data = orjson.dumps(h)
    except orjson.JSONEncodeError:  # integers orjson cannot write: the raw text instead
        data = repr(h).replace("'", '"').replace("None", "null").encode()
    assert _outcome(decode_json_header, data) == _outcome(_decode_json_fields, data)


@pytest.mark.parametrize("opaque", [0, 1, 9, 10, 123456, -1, 2**31 - 1, -(2**31)])
@pytest.mark.parametrize("body", [b"{}", b'{"queueDatas":[]}' * 150])
def test_success_head_and_body_are_the_encoded_answer(opaque: int, body: bytes) -> None:
    assert success_head(opaque, len(body)) + body == encode_response(0, opaque, JSON, body=body)


def test_observe_many_records_what_n_observations_record() -> None:
    def histogram() -> tuple[CollectorRegistry, Any]:
        registry = CollectorRegistry()
        h = Histogram("t_seconds", "t", ["x"], buckets=(0.0001, 0.001, 1), registry=registry)
        return registry, h.labels("a")

    def samples(registry: CollectorRegistry) -> dict[str, float]:
        return {
            f"{s.name}{sorted(s.labels.items())}": s.value
            for m in registry.collect()
            for s in m.samples
            if not s.name.endswith("_created")
        }

    for n, total in ((16, 0.00004), (3, 0.0009), (5, 0.5)):
        batched, one_by_one = histogram(), histogram()
        observe_many(batched[1], n, total)
        for _ in range(n):
            one_by_one[1].observe(total / n)
        got, want = samples(batched[0]), samples(one_by_one[0])
        assert got.keys() == want.keys()
        for k in want:
            assert got[k] == pytest.approx(want[k]), k


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_pipelined_cached_answers_are_the_encoded_answers_counted_one_by_one(
    running: Running,
) -> None:
    c = await running.client()
    await broker().register(c)
    first = await c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T1"}, version=409)
    fast = await c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T1"}, version=63)
    assert first and first.code == 0 and first.body and fast and fast.body
    await c.close()
    code = str(int(RequestCode.GET_ROUTEINFO_BY_TOPIC))
    before = (
        _metric("namesrv_requests_total", frontend="remoting", code=code),
        _metric("namesrv_request_seconds_count", frontend="remoting", code=code),
        _metric("namesrv_responses_total", frontend="remoting", response_code="0"),
        _metric("namesrv_route_cache_total", result="hit"),
    )
    n = 40
    requests = [  # both flavours, a oneway one (no answer) and a large opaque
        encode_request(
            RequestCode.GET_ROUTEINFO_BY_TOPIC,
            1000 + i if i != 5 else 2**31 - 1,
            {"topic": "T1"},
            version=409 if i % 2 else 63,
            oneway=i == 7,
        )
        for i in range(n)
    ]
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(b"".join(requests))
    expected = {
        (1000 + i if i != 5 else 2**31 - 1): encode_response(
            0,
            1000 + i if i != 5 else 2**31 - 1,
            JSON,
            body=bytes(first.body if i % 2 else fast.body),
        )
        for i in range(n)
        if i != 7
    }
    raw = b""
    while len(raw) < sum(map(len, expected.values())):
        chunk = await asyncio.wait_for(reader.read(1 << 20), 10)
        assert chunk, "the server closed the connection"
        raw += chunk
    writer.close()
    frames: dict[int, bytes] = {}
    pos = 0
    while pos < len(raw):
        (length,) = struct.unpack_from(">i", raw, pos)
        frame = raw[pos : pos + 4 + length]
        (cmd,) = FrameDecoder().feed(frame)
        frames[cmd.opaque] = frame
        pos += 4 + length
    assert frames == expected
    after = (
        _metric("namesrv_requests_total", frontend="remoting", code=code),
        _metric("namesrv_request_seconds_count", frontend="remoting", code=code),
        _metric("namesrv_responses_total", frontend="remoting", response_code="0"),
        _metric("namesrv_route_cache_total", result="hit"),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [n] * 4
