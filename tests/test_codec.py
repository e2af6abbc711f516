"""The remoting codec on its own (no sockets): byte-exact frames, every captured frame,
round trips of both header serializations, incremental decoding and malformed input."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from namesrv_redis.remoting.codec import (
    BIG_FRAME,
    JSON,
    ROCKETMQ,
    FrameDecoder,
    FrameError,
    RemotingCommand,
    encode,
    encode_request,
    encode_response,
)
from namesrv_redis.rocketmq import fastjson
from namesrv_redis.rocketmq.codes import LANGUAGES
from namesrv_redis.rocketmq.register_body import (
    TopicConfig,
    crc32_masked,
    decode_register_body,
    encode_register_body,
)

FIXTURES = Path(__file__).parent / "fixtures"
FRAMES = [
    json.loads(line)
    for name in (
        "frames.jsonl",
        "frames-compressed.jsonl",
        "frames-cpp.jsonl",
        "frames-probe.jsonl",
    )
    for line in (FIXTURES / name).read_text().splitlines()
]


def captured_frame(f: dict[str, Any]) -> bytes:
    """The frame's bytes: its header as the sender wrote it (compact JSON, in the captured
    key order), its body as captured."""
    header = orjson.dumps(f["header"])
    body = base64.b64decode(f["body_b64"]) if f.get("body_b64") else b""
    return struct.pack(">ii", 4 + len(header) + len(body), len(header)) + header + body


def test_byte_exact_json_response() -> None:
    frame = encode_response(17, 5, JSON, remark="no")
    header = b'{"code":17,"flag":1,"language":"JAVA","opaque":5,"remark":"no","serializeTypeCurrentRPC":"JSON","version":409}'  # noqa: E501
    assert frame == (
        struct.pack(">i", 4 + len(header))  # length of everything after this field
        + struct.pack(">i", (0 << 24) | len(header))  # serialize type JSON, header length
        + header
    )


def test_byte_exact_binary_request() -> None:
    cmd = RemotingCommand(105, "CPP", 63, 7, 0, None, {"topic": "T"}, None, ROCKETMQ)
    ext = struct.pack(">h", 5) + b"topic" + struct.pack(">i", 1) + b"T"
    header = (
        struct.pack(">h", 105)  # code
        + struct.pack(">b", 1)  # language CPP
        + struct.pack(">h", 63)  # version
        + struct.pack(">i", 7)  # opaque
        + struct.pack(">i", 0)  # flag
        + struct.pack(">i", 0)  # remark length (null)
        + struct.pack(">i", len(ext))
        + ext  # ext fields
    )
    assert encode(cmd) == struct.pack(">ii", 4 + len(header), (1 << 24) | len(header)) + header


@pytest.mark.parametrize(
    "f", FRAMES, ids=lambda f: f"{f['direction']}-{f['code_name']}-{f['opaque']}"
)
def test_every_captured_frame_decodes(f: dict[str, Any]) -> None:
    [cmd] = FrameDecoder().feed(captured_frame(f))
    assert cmd.code == f["header"]["code"]
    assert cmd.opaque == f["header"]["opaque"]
    assert cmd.flag == f["header"]["flag"]
    assert cmd.version == f["header"]["version"]
    assert cmd.remark == f["header"].get("remark")
    assert cmd.ext_fields == f["header"].get("extFields")
    assert (cmd.body or b"") == (base64.b64decode(f["body_b64"]) if f.get("body_b64") else b"")


@pytest.mark.parametrize(
    "f",
    [f for f in FRAMES if f["direction"] == "response"],
    ids=lambda f: f"{f['request_code_name']}-{f['code']}-{f['opaque']}",
)
def test_response_headers_are_written_like_java(f: dict[str, Any]) -> None:
    """Re-encoding a captured answer gives the Java server's header bytes exactly."""
    h = f["header"]
    body = base64.b64decode(f["body_b64"]) if f.get("body_b64") else None
    ours = encode_response(
        h["code"],
        h["opaque"],
        JSON,
        remark=h.get("remark"),
        ext_fields=h.get("extFields"),
        body=body,
    )
    java = orjson.dumps(h)  # captured headers are compact JSON with keys in alphabetical order
    assert list(h) == sorted(h)
    assert ours[8 : 8 + len(java)] == java


def test_register_bodies_decode_and_crc_matches() -> None:
    seen = 0
    for f in FRAMES:
        if f["direction"] == "request" and f["code"] == 103:
            body = base64.b64decode(f["body_b64"])
            ext = f["header"]["extFields"]
            decoded = decode_register_body(
                body, ext["compressed"] == "true", f["header"]["version"]
            )
            assert crc32_masked(body) == int(ext["bodyCrc32"])
            assert decoded.topic_configs and decoded.data_version["counter"] > 0
            seen += 1
    assert seen >= 10


def test_compressed_body_round_trip() -> None:
    topics = [TopicConfig(f"T{i}", 8, 4, 6) for i in range(50)]
    dv = {"counter": 3, "timestamp": 1700000000000}
    for compressed in (False, True):
        body = encode_register_body(dv, topics, ["10.0.0.1:1"], compressed=compressed)
        decoded = decode_register_body(body, compressed, 409)
        assert decoded.data_version == dv
        assert [
            (t.topic_name, t.read_queue_nums, t.write_queue_nums, t.perm)
            for t in decoded.topic_configs.values()
        ] == [(t.topic_name, 8, 4, 6) for t in topics]
        assert decoded.filter_server_list == ["10.0.0.1:1"]


def test_captured_json_bodies_round_trip_in_their_dialect() -> None:
    for f in FRAMES:
        if f["direction"] != "response" or not f.get("body_b64") or f["code"] != 0:
            continue
        body = base64.b64decode(f["body_b64"])
        if f["request_code_name"] in ("GET_BROKER_CLUSTER_INFO", "GET_ROUTEINFO_BY_TOPIC"):
            decoded = fastjson.loads(body)
            strict = f.get("body_json_strict", True)
            again = (
                fastjson.dumps_standard(decoded)
                if strict
                else fastjson.dumps_fastjson(_int_keys(decoded))
            )
            assert again == body, f["request_code_name"]


def _int_keys(o: Any) -> Any:
    if isinstance(o, dict):
        return {
            (int(k) if isinstance(k, str) and k.isdigit() else k): _int_keys(v)
            for k, v in o.items()
        }
    if isinstance(o, list):
        return [_int_keys(v) for v in o]
    return o


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
commands = st.builds(
    RemotingCommand,
    code=st.integers(-(2**15), 2**15 - 1),
    language=st.sampled_from(LANGUAGES),
    version=st.integers(-(2**15), 2**15 - 1),
    opaque=st.integers(-(2**31), 2**31 - 1),
    flag=st.integers(0, 3),
    remark=st.none() | texts.filter(bool),
    ext_fields=st.none() | st.dictionaries(texts.filter(bool), texts, max_size=5).filter(bool),
    body=st.none() | st.binary(min_size=1, max_size=300),
    serialize_type=st.sampled_from([JSON, ROCKETMQ]),
)


@settings(max_examples=300, deadline=None)
@given(cmd=commands, chunk=st.integers(1, 64))
def test_round_trip_both_serializations(cmd: RemotingCommand, chunk: int) -> None:
    data = encode(cmd) * 2
    decoder = FrameDecoder()
    out: list[RemotingCommand] = []
    for i in range(0, len(data), chunk):  # fed in arbitrary pieces
        out += decoder.feed(data[i : i + chunk])
    assert out == [cmd, cmd]
    assert decoder.buffered == 0


def test_feeding_byte_by_byte() -> None:
    data = encode(RemotingCommand(105, ext_fields={"topic": "T"}, opaque=9))
    decoder = FrameDecoder()
    got = [c for b in data for c in decoder.feed(bytes([b]))]
    assert len(got) == 1 and got[0].ext_fields == {"topic": "T"}


@pytest.mark.parametrize(
    "data",
    [
        struct.pack(">i", 2**31 - 1),  # far over the limit: refused before buffering the frame
        struct.pack(">i", 17 * 1024 * 1024),
        struct.pack(">i", 3),
        struct.pack(">ii", 12, 8) + b"not json",
        struct.pack(">ii", 8, 4) + b"[1,]",
        struct.pack(">ii", 8, 4) + b"[12]",  # JSON but not an object
        struct.pack(">ii", 12, (2 << 24) | 8) + b"{}{}{}{}",  # unknown serialize type
        struct.pack(">ii", 8, 100) + b"{}{}",  # header longer than the frame
        struct.pack(">ii", 9, (1 << 24) | 5) + b"\x00\x01\x02\x03\x04",  # truncated binary header
        struct.pack(">ii", 20, 16) + b'{"code":"x","a":1}'[:16],
    ],
)
def test_malformed_frames_raise_frame_error(data: bytes) -> None:
    decoder = FrameDecoder()
    with pytest.raises(FrameError):
        decoder.feed(data + b"\x00" * 32)
    assert decoder.buffered < 1024


def test_ext_values_sent_as_numbers_and_booleans_become_strings() -> None:
    header = b'{"code":105,"extFields":{"topic":"T","n":5,"b":true},"flag":0,"language":"NODE_JS","opaque":1,"version":121}'  # noqa: E501
    [cmd] = FrameDecoder().feed(struct.pack(">ii", 4 + len(header), len(header)) + header)
    assert cmd.ext_fields == {"topic": "T", "n": "5", "b": "true"}
    assert cmd.language == "NODE_JS"


@pytest.mark.parametrize("chunk", [1, 7, 4096, 65536, 10**7])
def test_big_frames_are_received_in_place_in_any_chunking(chunk: int) -> None:
    """A frame past BIG_FRAME is received into one buffer of its final size; frames before and
    after it in the same stream decode as usual, whatever the read sizes."""
    big_body = bytes(range(256)) * (BIG_FRAME // 256 + 3)
    stream = b"".join(
        encode_request(code, code, {"k": str(code)}, body)
        for code, body in ((1, b"small"), (2, big_body), (3, None), (4, big_body[:100]))
    )
    decoder = FrameDecoder()
    got = []
    for i in range(0, len(stream), chunk):
        got += decoder.feed(stream[i : i + chunk])
    assert [c.opaque for c in got] == [1, 2, 3, 4]
    assert [bytes(c.body) if c.body else None for c in got] == [
        b"small",
        big_body,
        None,
        big_body[:100],
    ]
    assert decoder.buffered == 0
    # the big body's CRC-32 was computed while it arrived; small frames leave it to the reader
    expected_crc = zlib.crc32(big_body) if chunk < len(stream) else None  # else never partial
    assert [c.body_crc32 for c in got] == [None, expected_crc, None, None]


def test_big_frame_with_a_bad_header_is_refused() -> None:
    bad = struct.pack(">ii", BIG_FRAME + 10, (9 << 24) | 2) + b"{}" + b"x" * 100
    with pytest.raises(FrameError):
        FrameDecoder().feed(bad)
