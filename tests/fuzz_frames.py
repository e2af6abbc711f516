"""Structure-aware hostile frames for the remoting fuzzer (tests/test_fuzz.py drives it with
Hypothesis, scripts/fuzz.py with a seeded random generator for millions of frames).

A frame generator draws through :class:`Draw`, so the same code serves both drivers: every
request code the name server answers (and unknown ones), JSON and ROCKETMQ binary headers,
the header fields each handler reads filled with plausible or hostile values, and bodies of
the right shape (register bodies, plain or compressed, DataVersions, TopicRouteData,
properties text) or garbage; plus malformed frames (bad lengths, undecodable headers).
Also a blocking client and a one-round-trip digest of a namespace, to tell whether a refused
request changed anything.
"""

from __future__ import annotations

import itertools
import random
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson

from namesrv_redis.remoting.codec import (
    JSON,
    ROCKETMQ,
    FrameDecoder,
    FrameError,
    RemotingCommand,
    encode_request,
)
from namesrv_redis.rocketmq.codes import LANGUAGES, RequestCode
from namesrv_redis.rocketmq.register_body import (
    TopicConfig,
    crc32_masked,
    encode_register_body,
)

T = TypeVar("T")


class Draw(Protocol):
    def choice(self, options: Sequence[T]) -> T: ...
    def integer(self, lo: int, hi: int) -> int: ...
    def blob(self, max_len: int) -> bytes: ...


class RandomDraw:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def choice(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def blob(self, max_len: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, max_len))


HOSTILE_STRINGS = [
    "",
    " ",
    "@",
    "%",
    "%40",
    "a@b%25c",
    "{",
    "}",
    "{ns}",
    "*",
    "\x00",
    "\n",
    "é中文🙂",
    "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    "x" * 300,
    "null",
    "true",
    "-1",
    "0",
    "1.5",
    "1e9",
    "NaN",
    str(2**31),
    str(2**63 - 1),
    str(2**63),
    str(2**64),
    str(-(2**63) - 1),
    "1" * 25,
    " 5",
    "1_000",
    "0x10",
]
NAMES = ["C1", "C2", "C@x", "broker-a", "broker-b", "b%40", "10.0.0.1:10911", "10.0.0.2:1@x"]
NUMBERS = ["0", "1", "2", "100", "120000", "600000", "3600000", "-5"]
TOPICS = ["T1", "T2", "a/b", "%DLQ%g", "TBW102", "SELF_TEST_TOPIC", "t@x"]

REQUEST_CODES = [int(c) for c in RequestCode]
WRITE_CODES = [
    int(c)
    for c in (
        RequestCode.REGISTER_BROKER,
        RequestCode.REGISTER_BROKER,
        RequestCode.REGISTER_BROKER,
        RequestCode.UNREGISTER_BROKER,
        RequestCode.BROKER_HEARTBEAT,
        RequestCode.QUERY_DATA_VERSION,
        RequestCode.REGISTER_TOPIC_IN_NAMESRV,
        RequestCode.DELETE_TOPIC_IN_NAMESRV,
        RequestCode.WIPE_WRITE_PERM_OF_BROKER,
        RequestCode.ADD_WRITE_PERM_OF_BROKER,
        RequestCode.PUT_KV_CONFIG,
        RequestCode.DELETE_KV_CONFIG,
        RequestCode.UPDATE_NAMESRV_CONFIG,
    )
]
"""Requests that write, drawn more often: they are where a refusal could leave state."""

FIELDS: dict[int, list[str]] = {
    RequestCode.PUT_KV_CONFIG: ["namespace", "key", "value"],
    RequestCode.GET_KV_CONFIG: ["namespace", "key"],
    RequestCode.DELETE_KV_CONFIG: ["namespace", "key"],
    RequestCode.GET_KVLIST_BY_NAMESPACE: ["namespace"],
    RequestCode.REGISTER_BROKER: [
        "brokerName",
        "brokerAddr",
        "clusterName",
        "haServerAddr",
        "brokerId",
        "heartbeatTimeoutMillis",
        "enableActingMaster",
        "compressed",
        "bodyCrc32",
        "__ZONE_NAME",
    ],
    RequestCode.UNREGISTER_BROKER: ["brokerName", "brokerAddr", "clusterName", "brokerId"],
    RequestCode.BROKER_HEARTBEAT: ["brokerName", "brokerAddr", "clusterName", "brokerId"],
    RequestCode.QUERY_DATA_VERSION: ["brokerName", "brokerAddr", "clusterName", "brokerId"],
    RequestCode.GET_ROUTEINFO_BY_TOPIC: [
        "topic",
        "acceptStandardJsonOnly",
        "__ZONE_MODE",
        "__ZONE_NAME",
    ],
    RequestCode.GET_BROKER_MEMBER_GROUP: ["clusterName", "brokerName", "brokerId"],
    RequestCode.WIPE_WRITE_PERM_OF_BROKER: ["brokerName"],
    RequestCode.ADD_WRITE_PERM_OF_BROKER: ["brokerName"],
    RequestCode.DELETE_TOPIC_IN_NAMESRV: ["topic", "clusterName"],
    RequestCode.REGISTER_TOPIC_IN_NAMESRV: ["topic"],
    RequestCode.GET_TOPICS_BY_CLUSTER: ["cluster"],
}

OPAQUES = itertools.count(1)


@dataclass(frozen=True, slots=True)
class FuzzFrame:
    data: bytes
    code: int
    opaque: int
    oneway: bool
    malformed: bool
    """The frame itself is broken: the server must close the connection (or wait)."""
    kind: str


PLAUSIBLE: dict[str, list[str]] = {
    "brokerId": ["0", "1", "2"],
    "heartbeatTimeoutMillis": ["86400000", "604800000"],  # no broker expires during a run
    "bodyCrc32": ["0"],
    "enableActingMaster": ["true", "false"],
    "compressed": ["false"],
    "acceptStandardJsonOnly": ["true", "false"],
    "__ZONE_MODE": ["true", "false"],
    "topic": TOPICS,
    "brokerAddr": ["10.0.0.1:10911", "10.0.0.2:1@x", "10.0.0.3:1%40"],
    "haServerAddr": ["10.0.0.1:10912", ""],
}


NUMERIC_FIELDS = frozenset({"brokerId", "heartbeatTimeoutMillis", "bodyCrc32"})
HOSTILE_NUMBERS = [
    "-1",
    "0",
    "99",
    str(2**31),
    str(2**53 + 1),
    str(2**63 - 1),
    str(2**63),
    str(-(2**63)),
    "1" * 25,
    "",
    " 5",
    "1_000",
    "1.5",
    "x",
]


def _field_value(d: Draw, field: str, hostile: bool) -> str:
    if hostile:
        return d.choice(HOSTILE_NUMBERS if field in NUMERIC_FIELDS else HOSTILE_STRINGS)
    return d.choice(PLAUSIBLE.get(field, NAMES))


def _ext_fields(d: Draw, code: int) -> dict[str, str] | None:
    """Usually every field plausible but one hostile (a targeted mutation); sometimes any mix,
    missing fields, extra fields or no extFields at all."""
    if d.integer(0, 30) == 0:
        return None
    fields = FIELDS.get(code, [])
    mode = d.choice(["one_hostile", "one_hostile", "plausible", "mixed"])
    target = d.choice(fields) if fields and mode == "one_hostile" else None
    ext: dict[str, str] = {}
    for f in fields:
        if mode == "mixed" and d.integer(0, 9) == 0:
            continue  # a missing field
        hostile = f == target or (mode == "mixed" and d.integer(0, 2) == 0)
        ext[f] = _field_value(d, f, hostile)
    for _ in range(d.integer(0, 1)):
        ext[d.choice(["AccessKey", "x", "", "zz" * 40])] = d.choice(HOSTILE_STRINGS)
    return ext


def _number(d: Draw) -> Any:
    return d.choice(
        [0, 1, -1, 16, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 1.5, "7", None, True]
    )


def _json_bytes(v: Any) -> bytes:
    """JSON text of ``v``, integers of any size included (orjson stops at 64 bits)."""
    if isinstance(v, bool) or v is None or not isinstance(v, int | dict | list):
        return orjson.dumps(v)
    if isinstance(v, int):
        return str(v).encode()
    if isinstance(v, list):
        return b"[" + b",".join(_json_bytes(x) for x in v) + b"]"
    return (
        b"{" + b",".join(orjson.dumps(str(k)) + b":" + _json_bytes(x) for k, x in v.items()) + b"}"
    )


def _register_body(d: Draw, ext: dict[str, str]) -> bytes:
    shape = d.choice(["valid", "valid", "valid", "compressed", "json", "garbage"])
    if shape == "garbage":
        return d.blob(200)
    if shape == "json":
        dv = {"counter": _number(d), "timestamp": _number(d), "stateVersion": _number(d)}
        table = {
            d.choice(TOPICS + HOSTILE_STRINGS[:6]): {
                "topicName": d.choice(TOPICS),
                "readQueueNums": _number(d),
                "writeQueueNums": _number(d),
                "perm": _number(d),
            }
            for _ in range(d.integer(0, 3))
        }
        return _json_bytes(
            {
                "topicConfigSerializeWrapper": {"dataVersion": dv, "topicConfigTable": table},
                "filterServerList": d.choice([[], ["f:1"], [1], None]),
            }
        )
    topics = [
        TopicConfig(
            d.choice([*TOPICS, "q" + str(d.integer(0, 50))]),
            d.choice([0, 1, 8, 16, 2**31 - 1]),
            d.choice([0, 4, 16]),
            d.choice([0, 2, 4, 6, 7]),
            d.choice([0, 1, 2, 3]),
        )
        for _ in range(d.integer(0, 4))
    ]
    compressed = shape == "compressed"
    ext["compressed"] = "true" if compressed else "false"
    body = encode_register_body(
        {"counter": d.integer(0, 5), "timestamp": d.integer(0, 3)},
        topics,
        d.choice([[], ["10.0.0.9:1"]]),
        compressed=compressed,
    )
    if d.integer(0, 5) == 0:
        body = body[: d.integer(0, len(body))]  # truncated
    return body


def _body(d: Draw, code: int, ext: dict[str, str] | None) -> bytes | None:
    if d.integer(0, 6) == 0:
        return d.choice([None, b"", d.blob(64)])
    if code == RequestCode.REGISTER_BROKER and ext is not None:
        body = _register_body(d, ext)
        if d.integer(0, 4) > 0:  # usually a correct CRC, so the body is really decoded
            ext["bodyCrc32"] = str(crc32_masked(body))
        return body
    if code == RequestCode.QUERY_DATA_VERSION:
        return _json_bytes({"counter": _number(d), "timestamp": _number(d)})
    if code == RequestCode.REGISTER_TOPIC_IN_NAMESRV:
        qd = {
            "brokerName": d.choice(NAMES),
            "readQueueNums": _number(d),
            "writeQueueNums": _number(d),
            "perm": _number(d),
            "topicSysFlag": _number(d),
        }
        return _json_bytes({"queueDatas": d.choice([[qd], [], [1], "x"])})
    if code == RequestCode.UPDATE_NAMESRV_CONFIG:
        key = d.choice(
            [
                "orderMessageEnable",
                "brokerChannelExpiredTime",
                "serverChannelMaxIdleTimeSeconds",
                "waitSecondsForService",
                "listenPort",
                "configBlackList",
                "nope",
                "clusterTest",
            ]
        )
        # values that keep the pod usable when accepted: never a tiny idle timeout
        value = d.choice(["true", "false", "maybe", "abc", "-1", "0", "3600", str(2**40)])
        return f"{key}={value}\n".encode()
    return None


def fuzz_frame(d: Draw) -> FuzzFrame:
    if d.integer(0, 30) == 0:
        return malformed_frame(d)
    pick = d.integer(0, 9)
    if pick < 5:
        code = d.choice(WRITE_CODES)
    elif pick < 9:
        code = d.choice(REQUEST_CODES)
    else:
        code = d.integer(-(2**15), 2**15 - 1)
    ext = _ext_fields(d, code)
    body = _body(d, code, ext)
    if code == RequestCode.UPDATE_NAMESRV_CONFIG and body and b"IdleTimeSeconds=0" in body:
        body = None
    oneway = d.integer(0, 30) == 0
    stype = d.choice([JSON, ROCKETMQ])
    opaque = next(OPAQUES) & 0x7FFFFFFF
    data = encode_request(
        code,
        opaque,
        ext,
        body,
        language=d.choice(LANGUAGES),
        version=d.choice([0, 317, 401, 409, 453, 32767]),
        oneway=oneway,
        serialize_type=stype,
    )
    return FuzzFrame(data, code, opaque, oneway, False, "request")


def malformed_frame(d: Draw) -> FuzzFrame:
    kind = d.choice(
        ["length_too_big", "length_negative", "header_overrun", "bad_json", "bad_type", "garbage"]
    )
    if kind == "length_too_big":
        data = struct.pack(">ii", 2**31 - 1, 4)
    elif kind == "length_negative":
        data = struct.pack(">ii", -5, 0)
    elif kind == "header_overrun":
        data = struct.pack(">ii", 8, 1000) + b"\0" * 4
    elif kind == "bad_json":
        header = d.choice([b"{", b"[]", b'{"code":"x"}', b'{"code":1e99}', b"\xff\xfe", b"{}"])
        data = struct.pack(">ii", 4 + len(header), len(header)) + header
    elif kind == "bad_type":
        header = b'{"code":105}'
        data = struct.pack(">ii", 4 + len(header), (7 << 24) | len(header)) + header
    else:
        raw = d.blob(64)
        data = struct.pack(">ii", 4 + len(raw), min(len(raw), d.integer(0, 80))) + raw
    return FuzzFrame(data, -1, -1, True, True, f"malformed:{kind}")


class BlockingClient:
    """One remoting connection with blocking sockets (the fuzz drivers are synchronous)."""

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = FrameDecoder()
        self.pending: list[RemotingCommand] = []
        self.closed = False

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def response(self, opaque: int, timeout: float = 5.0) -> RemotingCommand | None:
        """The answer to ``opaque``, or None when the server closed the connection."""
        self.sock.settimeout(timeout)
        while True:
            for i, cmd in enumerate(self.pending):
                if cmd.opaque == opaque:
                    return self.pending.pop(i)
            if self.closed:
                return None
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise
            except OSError:
                data = b""
            if not data:
                self.closed = True
                return None
            try:
                self.pending.extend(self.decoder.feed(data))
            except FrameError:
                self.closed = True
                return None

    def wait_closed(self, timeout: float) -> bool:
        """True when the server closes the connection within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except TimeoutError:
            return False
        except OSError:
            pass
        self.closed = True
        return True

    def request(
        self, code: int, ext: dict[str, str] | None = None, body: bytes | None = None
    ) -> RemotingCommand | None:
        opaque = next(OPAQUES) & 0x7FFFFFFF
        self.send(encode_request(code, opaque, ext, body))
        return self.response(opaque, timeout=10)

    def close(self) -> None:
        self.closed = True
        self.sock.close()


DIGEST_LUA = """
local cursor, keys = '0', {}
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = r[1]
  for _, k in ipairs(r[2]) do keys[#keys + 1] = k end
until cursor == '0'
table.sort(keys)
local skip = {}
for i = 2, #ARGV do skip[ARGV[i]] = true end
local function pairs_sorted(flat)
  local out = {}
  for i = 1, #flat, 2 do out[#out + 1] = flat[i] .. '\\1' .. flat[i + 1] end
  table.sort(out)
  return table.concat(out, '\\2')
end
local parts = {}
for _, k in ipairs(keys) do
  -- keys with a TTL (liveness) may expire at any moment: left out
  if redis.call('PTTL', k) == -1 and not skip[k] then
    local t = redis.call('TYPE', k).ok
    local v
    if t == 'hash' then v = pairs_sorted(redis.call('HGETALL', k))
    elseif t == 'set' then
      v = redis.call('SMEMBERS', k); table.sort(v); v = table.concat(v, '\\2')
    elseif t == 'zset' then v = table.concat(redis.call('ZRANGE', k, 0, -1, 'WITHSCORES'), '\\2')
    elseif t == 'string' then v = redis.call('GET', k)
    else v = t end
    parts[#parts + 1] = k .. '\\3' .. t .. '\\3' .. v
  end
end
return redis.sha1hex(table.concat(parts, '\\4'))
"""
"""One round trip: a SHA-1 of the contents of every key of a namespace without a TTL
(ARGV[1] = the SCAN pattern; ARGV[2..] = keys left out, such as the pods' heartbeats)."""


def scan_pattern(prefix: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
