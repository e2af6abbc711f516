"""REGISTER_BROKER bodies (RocketMQ's RegisterBrokerBody), plain JSON or compressed.

JSON form: ``{"filterServerList":[…], "topicConfigSerializeWrapper": {"dataVersion": {…},
"topicConfigTable": {name: TopicConfig}, …}}``.

Compressed form (broker option ``compressedRegister``), a zlib stream of:
int32 length + DataVersion JSON; int32 topic count; per topic int32 length + TopicConfig's text
form ``"name read write perm filterType[ attributesJSON]"``; int32 length + filter server list
JSON; for brokers ≥ V5_0_0, int32 count + per mapping int32 length + TopicQueueMappingInfo
JSON. The text form carries no topicSysFlag, so (as in Java) it is 0 for such registrations.

``bodyCrc32`` is the CRC-32 of the body as sent, masked to 31 bits (RocketMQ's UtilAll.crc32).

Two decoders: :func:`decode_register_body` gives every TopicConfig field (tests, tools, the
simulated broker); :func:`decode_register_table` — what registration uses — keeps only the
QueueNums of each topic and reads the common bodies without an object per topic (msgspec for
JSON, a direct split of the compressed text records), falling back to the first for anything
unusual so that both accept and refuse exactly the same bodies.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import msgspec
import orjson

from namesrv_redis.rocketmq import fastjson
from namesrv_redis.rocketmq.codes import V5_0_0

_I32 = struct.Struct(">i")
DEFAULT_MAX_INFLATED = 16 * 1024 * 1024
"""A compressed body may inflate to what a broker could have sent uncompressed (one frame)."""
INFLATE_STEP = 1024 * 1024
_max_inflated = DEFAULT_MAX_INFLATED


def set_max_inflated(limit: int) -> None:
    """The pod's bound on a compressed register body's inflated size (setting
    ``flow_register_body_max_inflated``)."""
    global _max_inflated
    if limit < INFLATE_STEP:
        raise ValueError(f"inflated body limit {limit} is below {INFLATE_STEP} bytes")
    _max_inflated = limit


def max_inflated() -> int:
    return _max_inflated


class BodyError(ValueError):
    """A register body that cannot be decoded."""


def crc32_masked(data: bytes | bytearray, crc32: int | None = None) -> int:
    """RocketMQ's UtilAll.crc32 (CRC-32 masked to 31 bits); ``crc32`` = the unmasked value if
    already known."""
    return (zlib.crc32(data) if crc32 is None else crc32) & 0x7FFFFFFF


@dataclass(frozen=True, slots=True)
class TopicConfig:
    topic_name: str
    read_queue_nums: int = 16
    write_queue_nums: int = 16
    perm: int = 6
    topic_sys_flag: int = 0
    order: bool = False
    topic_filter_type: str = "SINGLE_TAG"
    attributes: dict[str, str] | None = None

    def encode_text(self) -> str:
        """TopicConfig#encode: the compressed body's per-topic text."""
        s = (
            f"{self.topic_name} {self.read_queue_nums} {self.write_queue_nums} {self.perm} "
            f"{self.topic_filter_type}"
        )
        if self.attributes is not None:
            s += " " + orjson.dumps(self.attributes).decode()
        return s

    def to_wire(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.attributes is not None:
            d["attributes"] = self.attributes
        d.update(
            order=self.order,
            perm=self.perm,
            readQueueNums=self.read_queue_nums,
            topicFilterType=self.topic_filter_type,
            topicName=self.topic_name,
            topicSysFlag=self.topic_sys_flag,
            writeQueueNums=self.write_queue_nums,
        )
        return d


@dataclass(slots=True)
class RegisterBody:
    data_version: dict[str, Any] = field(default_factory=lambda: {"counter": 0, "timestamp": 0})
    topic_configs: dict[str, TopicConfig] = field(default_factory=dict)
    filter_server_list: list[str] | None = None
    topic_queue_mapping_info: dict[str, Any] = field(default_factory=dict)


def _topic_from_json(name: str, d: Any) -> TopicConfig:
    if not isinstance(d, dict):
        raise BodyError(f"topic config {name!r} is not an object")
    attrs = d.get("attributes")
    try:
        return TopicConfig(
            topic_name=str(d.get("topicName") or name),
            read_queue_nums=int(d.get("readQueueNums", 16)),
            write_queue_nums=int(d.get("writeQueueNums", 16)),
            perm=int(d.get("perm", 6)),
            topic_sys_flag=int(d.get("topicSysFlag", d.get("topicSynFlag", 0)) or 0),
            order=bool(d.get("order", False)),
            topic_filter_type=str(d.get("topicFilterType") or "SINGLE_TAG"),
            attributes={str(k): str(v) for k, v in attrs.items()}
            if isinstance(attrs, dict)
            else None,
        )
    except (TypeError, ValueError) as e:
        raise BodyError(f"topic config {name!r}: {e}") from None


def _topic_from_text(text: str) -> TopicConfig:
    parts = text.split(" ", 5)
    if len(parts) < 5:
        raise BodyError(f"topic config text has {len(parts)} fields: {text[:80]!r}")
    attrs = None
    if len(parts) == 6:
        try:
            a = fastjson.loads(parts[5])
        except ValueError as e:
            raise BodyError(f"topic attributes: {e}") from None
        attrs = {str(k): str(v) for k, v in a.items()} if isinstance(a, dict) else None
    try:
        return TopicConfig(
            topic_name=parts[0],
            read_queue_nums=int(parts[1]),
            write_queue_nums=int(parts[2]),
            perm=int(parts[3]),
            topic_filter_type=parts[4],
            attributes=attrs,
        )
    except ValueError as e:
        raise BodyError(f"topic config text {text[:80]!r}: {e}") from None


@dataclass(frozen=True, slots=True)
class _JsonParts:
    data_version: dict[str, Any]
    table: dict[str, Any]
    filter_server_list: list[str] | None
    topic_queue_mapping_info: dict[str, Any]


def _json_parts(body: bytes | bytearray) -> _JsonParts:
    """Parse a JSON register body and check its shape (not yet its topic configs)."""
    try:
        d = fastjson.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BodyError(f"register body is not JSON: {e}") from None
    if not isinstance(d, dict):
        raise BodyError("register body is not an object")
    wrapper = d.get("topicConfigSerializeWrapper")
    if wrapper is None and "topicConfigTable" in d:
        wrapper = d  # a very old broker sends a bare TopicConfigSerializeWrapper
    wrapper = wrapper or {}
    if not isinstance(wrapper, dict):
        raise BodyError("topicConfigSerializeWrapper is not an object")
    dv = wrapper.get("dataVersion") or {"counter": 0, "timestamp": 0}
    if not isinstance(dv, dict):
        raise BodyError("dataVersion is not an object")
    table = wrapper.get("topicConfigTable") or {}
    if not isinstance(table, dict):
        raise BodyError("topicConfigTable is not an object")
    filters = d.get("filterServerList")
    if filters is not None and not isinstance(filters, list):
        raise BodyError("filterServerList is not a list")
    mapping = wrapper.get("topicQueueMappingInfoMap") or {}
    return _JsonParts(
        data_version=dv,
        table=table,
        filter_server_list=[str(f) for f in filters] if filters is not None else None,
        topic_queue_mapping_info=mapping if isinstance(mapping, dict) else {},
    )


def _decode_json(body: bytes | bytearray) -> RegisterBody:
    parts = _json_parts(body)
    return RegisterBody(
        data_version=parts.data_version,
        topic_configs={str(k): _topic_from_json(str(k), v) for k, v in parts.table.items()},
        filter_server_list=parts.filter_server_list,
        topic_queue_mapping_info=parts.topic_queue_mapping_info,
    )


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def int32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise BodyError("compressed register body truncated")
        (v,) = _I32.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(v)

    def chunk(self) -> bytes:
        n = self.int32()
        if n < 0 or self.pos + n > len(self.data):
            raise BodyError("compressed register body: bad length")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b


def _inflate(body: bytes | bytearray, limit: int | None = None) -> bytes:
    """Inflate a step at a time, refusing the body as soon as it passes ``limit`` bytes (a
    few hundred KB of zeros inflate to gigabytes: nothing past the limit is ever held)."""
    limit = _max_inflated if limit is None else limit
    parts: list[bytes] = []
    total = 0
    try:
        inflater = zlib.decompressobj()
        data: bytes | bytearray = body
        while True:
            chunk = inflater.decompress(data, min(INFLATE_STEP, limit + 1 - total))
            total += len(chunk)
            if total > limit:
                parts.clear()  # not kept alive by the traceback's frame
                raise BodyError(
                    f"compressed register body inflates past {limit} bytes "
                    f"(the pod's limit, flow_register_body_max_inflated)"
                )
            parts.append(chunk)
            data = inflater.unconsumed_tail
            if inflater.eof or (not data and not chunk):
                break
    except zlib.error as e:
        raise BodyError(f"compressed register body: {e}") from None
    return parts[0] if len(parts) == 1 else b"".join(parts)


T = TypeVar("T")


def _compressed_parts(
    raw: bytes, broker_version: int, read_topics: Callable[[_Reader, int], T]
) -> tuple[dict[str, Any], T, list[str] | None, dict[str, Any]]:
    """(data version, topics as ``read_topics`` reads them, filter servers, mappings)."""
    r = _Reader(raw)
    try:
        dv = fastjson.loads(r.chunk())
        count = r.int32()
        if count < 0:
            raise BodyError("negative topic count")
        topics = read_topics(r, count)
        filters = fastjson.loads(r.chunk())
        mapping: dict[str, Any] = {}
        if broker_version >= V5_0_0 and r.pos < len(raw):
            for _ in range(r.int32()):
                info = fastjson.loads(r.chunk())
                if isinstance(info, dict):
                    mapping[str(info.get("topic", len(mapping)))] = info
    except (ValueError, UnicodeDecodeError) as e:
        if isinstance(e, BodyError):
            raise
        raise BodyError(f"compressed register body: {e}") from None
    if not isinstance(dv, dict):
        raise BodyError("dataVersion is not an object")
    return dv, topics, [str(f) for f in filters] if isinstance(filters, list) else None, mapping


def _read_topic_configs(r: _Reader, count: int) -> dict[str, TopicConfig]:
    topics: dict[str, TopicConfig] = {}
    for _ in range(count):
        tc = _topic_from_text(r.chunk().decode("utf-8"))
        topics[tc.topic_name] = tc
    return topics


def _read_topic_table(r: _Reader, count: int) -> TopicTable:
    """The common case of :func:`_read_topic_configs` without an object per topic: raises
    ValueError (then the general reader runs) for anything it does not expect."""
    data, pos, unpack = r.data, r.pos, _I32.unpack_from
    table: TopicTable = {}
    shared: dict[bytes, QueueNums] = {}
    try:
        for _ in range(count):
            (n,) = unpack(data, pos)
            end = pos + 4 + n
            if n < 0 or end > len(data):
                raise ValueError("bad length")
            name, rest = data[pos + 4 : end].split(b" ", 1)
            pos = end
            read, write, perm, _ = rest.split(b" ", 3)  # then the filter type, attributes
            key = read + b" " + write + b" " + perm
            nums = shared.get(key)
            if nums is None:
                values = (int(read), int(write), int(perm))
                if not java_ints(values):
                    raise ValueError("outside Java's int")
                nums = shared[key] = QueueNums(*values, 0)
            table[name.decode("utf-8")] = nums
    except (struct.error, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"not the common topic text: {e}") from None
    r.pos = pos
    return table


def _decode_compressed(body: bytes | bytearray, broker_version: int) -> RegisterBody:
    dv, topics, filters, mapping = _compressed_parts(
        _inflate(body), broker_version, _read_topic_configs
    )
    return RegisterBody(
        data_version=dv,
        topic_configs=topics,
        filter_server_list=filters,
        topic_queue_mapping_info=mapping,
    )


def _decode_compressed_table(body: bytes | bytearray, broker_version: int) -> RegisterTable:
    raw = _inflate(body)
    try:
        dv, topics, filters, mapping = _compressed_parts(raw, broker_version, _read_topic_table)
    except BodyError:
        dv, configs, filters, mapping = _compressed_parts(raw, broker_version, _read_topic_configs)
        topics = _table_of(configs.values())
    return RegisterTable(dv, topics, filters, bool(mapping))


def decode_register_body(
    body: bytes | bytearray | None, compressed: bool, broker_version: int
) -> RegisterBody:
    if not body:
        return RegisterBody()
    if compressed:
        return _decode_compressed(body, broker_version)
    return _decode_json(body)


# ------------------------------------------------------------------ topic tables

JAVA_INT_MIN, JAVA_INT_MAX = -(2**31), 2**31 - 1
JavaInt = Annotated[int, msgspec.Meta(ge=JAVA_INT_MIN, le=JAVA_INT_MAX)]


def java_ints(values: Iterable[int]) -> bool:
    """The check JavaInt makes when msgspec decodes, for numbers read another way."""
    return all(JAVA_INT_MIN <= v <= JAVA_INT_MAX for v in values)


class QueueNums(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    """What the name server keeps of one TopicConfig. Compared field by field in C when a
    registration is diffed against the remembered one; 48 bytes each."""

    read_queue_nums: JavaInt = 16
    write_queue_nums: JavaInt = 16
    perm: JavaInt = 6
    topic_sys_flag: JavaInt = 0


TopicTable = dict[str, QueueNums]
"""topic name -> QueueNums, in body order."""


@dataclass(frozen=True, slots=True)
class RegisterTable:
    """A register body reduced to what registration stores: no object graph per topic."""

    data_version: dict[str, Any]
    topics: TopicTable
    filter_server_list: list[str] | None
    has_static_topic_mappings: bool


class _FastWrapper(msgspec.Struct, rename="camel"):
    data_version: dict[str, Any] = {}
    topic_config_table: TopicTable = {}
    topic_queue_mapping_info_map: msgspec.Raw = msgspec.Raw(b"")


class _FastBody(msgspec.Struct, rename="camel"):
    topic_config_serialize_wrapper: _FastWrapper | None = None
    filter_server_list: list[str] | None = None


_FAST_BODY = msgspec.json.Decoder(_FastBody)
_EMPTY_MAPPINGS = {b"", b"null", b"{}"}


class _RawWrapper(msgspec.Struct, rename="camel"):
    data_version: dict[str, Any] = {}
    topic_config_table: msgspec.Raw = msgspec.Raw(b"{}")
    topic_queue_mapping_info_map: msgspec.Raw = msgspec.Raw(b"")


class _RawBody(msgspec.Struct, rename="camel"):
    topic_config_serialize_wrapper: _RawWrapper | None = None
    filter_server_list: list[str] | None = None


_RAW_BODY = msgspec.json.Decoder(_RawBody)
_TABLE = msgspec.json.Decoder(TopicTable)
CHUNKED_DECODE_BYTES = 1024 * 1024
"""A topic table at least this big is decoded about this much at a time (see
:func:`_decode_table_chunked`)."""
_MAX_FALSE_CUTS = 8


def _decode_table_chunked(raw: bytes) -> TopicTable | None:
    """A big ``topicConfigTable`` decoded a piece at a time, so that no single C call holds
    the interpreter lock for long (a 15 MB table would hold it ~60 ms in one call).

    The table is cut after a ``}`` followed by ``,"``; a cut is accepted only if the piece
    up to it, closed with ``}``, decodes as a strict table — impossible when the cut lies
    inside a string or a nested object, so accepted pieces are exactly consecutive entries
    and their union is the table the one-call decode gives. None when a piece cannot be
    validated (then the caller decodes in one call, with that call's exact verdict)."""
    table: TopicTable = {}
    start, n = 1, len(raw)
    while True:
        cut = raw.find(b'},"', start + CHUNKED_DECODE_BYTES)
        false_cuts = 0
        while cut != -1:
            try:
                table.update(_TABLE.decode(b"{" + raw[start : cut + 1] + b"}"))
                break
            except msgspec.MsgspecError:
                false_cuts += 1
                if false_cuts > _MAX_FALSE_CUTS:
                    return None
                cut = raw.find(b'},"', cut + 1)
        if cut == -1:
            try:
                table.update(_TABLE.decode(b"{" + raw[start:n]))
            except msgspec.MsgspecError:
                return None
            return table
        start = cut + 2


def _decode_table_fast(body: bytes | bytearray) -> RegisterTable | None:
    """The common body (strict JSON, every field of the expected type, topics keyed by their
    names) decoded straight into QueueNums, skipping every other field; None for anything else
    (fastjson's dialect, pre-4.9 field names, a bare wrapper, strings for numbers…)."""
    if b'"topicSynFlag"' in body:
        return None
    if len(body) >= 2 * CHUNKED_DECODE_BYTES:
        chunked = _decode_big_table_fast(body)
        if chunked is not None:
            return chunked
    try:
        decoded = _FAST_BODY.decode(body)
    except msgspec.MsgspecError:
        return None
    wrapper = decoded.topic_config_serialize_wrapper
    if wrapper is None:
        return None
    return RegisterTable(
        wrapper.data_version or {"counter": 0, "timestamp": 0},
        wrapper.topic_config_table,
        decoded.filter_server_list,
        bytes(wrapper.topic_queue_mapping_info_map).strip() not in _EMPTY_MAPPINGS,
    )


def _decode_big_table_fast(body: bytes | bytearray) -> RegisterTable | None:
    try:
        decoded = _RAW_BODY.decode(body)
    except msgspec.MsgspecError:
        return None
    wrapper = decoded.topic_config_serialize_wrapper
    if wrapper is None:
        return None
    table = _decode_table_chunked(bytes(wrapper.topic_config_table))
    if table is None:
        return None
    return RegisterTable(
        wrapper.data_version or {"counter": 0, "timestamp": 0},
        table,
        decoded.filter_server_list,
        bytes(wrapper.topic_queue_mapping_info_map).strip() not in _EMPTY_MAPPINGS,
    )


def _table_of(configs: Iterable[TopicConfig]) -> TopicTable:
    table: TopicTable = {}
    for tc in configs:
        nums = (tc.read_queue_nums, tc.write_queue_nums, tc.perm, tc.topic_sys_flag)
        if not java_ints(nums):
            raise BodyError(f"topic config {tc.topic_name!r}: a number outside Java's int")
        table[tc.topic_name] = QueueNums(*nums)
    return table


def decode_register_table(
    body: bytes | bytearray | None, compressed: bool, broker_version: int
) -> RegisterTable:
    """Like :func:`decode_register_body`, but keeps only the topic table (and decodes the
    common JSON body about four times faster)."""
    if body and compressed:
        return _decode_compressed_table(body, broker_version)
    if body:
        fast = _decode_table_fast(body)
        if fast is not None:
            return fast
    full = decode_register_body(body, compressed, broker_version)
    return RegisterTable(
        full.data_version,
        _table_of(full.topic_configs.values()),
        full.filter_server_list,
        bool(full.topic_queue_mapping_info),
    )


def body_token(body: bytes | bytearray, crc: int) -> str:
    """Identifies a register body among the bodies of one broker: its masked CRC-32 (already
    computed for the header check) and its length. A changed body keeps both with a chance
    of 2^-31 (any change confined to 32 bits changes the CRC for certain); another
    checksum pass would cost as much as the CRC again on a megabyte body."""
    return f"{crc:08x}{len(body):x}"


def token_crc32(token: str) -> int:
    """The masked CRC-32 a :func:`body_token` holds (0 for the empty body's)."""
    return int(token[:8], 16) if token else 0


def encode_register_body(
    data_version: dict[str, Any],
    topics: list[TopicConfig],
    filter_servers: list[str] | None = None,
    *,
    compressed: bool = False,
) -> bytes:
    """A broker's REGISTER_BROKER body (test brokers and the benchmark use this)."""
    filters = filter_servers or []
    if not compressed:
        return orjson.dumps(
            {
                "filterServerList": filters,
                "topicConfigSerializeWrapper": {
                    "dataVersion": data_version,
                    "topicConfigTable": {t.topic_name: t.to_wire() for t in topics},
                },
            }
        )
    parts: list[bytes] = []
    dv = orjson.dumps(data_version)
    parts += (_I32.pack(len(dv)), dv, _I32.pack(len(topics)))
    for t in topics:
        b = t.encode_text().encode("utf-8")
        parts += (_I32.pack(len(b)), b)
    fs = orjson.dumps(filters)
    parts += (_I32.pack(len(fs)), fs)
    return zlib.compress(b"".join(parts), 9)
