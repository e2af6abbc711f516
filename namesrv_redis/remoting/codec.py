"""RocketMQ remoting frames: pure functions over bytes, no I/O (STYLE.md #7).

Frame (big-endian)::

    int32 length            of everything after this field
    int32 type_and_len      serializeType << 24 | headerLength
    header                  JSON (type 0) or the binary ROCKETMQ form (type 1)
    body                    the rest (absent when empty)

Binary header: int16 code, int8 language, int16 version, int32 opaque, int32 flag,
int32 remarkLen + UTF-8 remark, int32 extLen + repeated (int16 keyLen + key, int32 valLen +
value); a zero length means null. JSON headers are written as the Java server writes them:
compact, keys in alphabetical order, null ``extFields``/``remark`` left out.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import orjson

from namesrv_redis.rocketmq.codes import LANGUAGE_CODES, LANGUAGES, SERVER_VERSION

JSON = 0
ROCKETMQ = 1
SERIALIZE_NAMES = {JSON: "JSON", ROCKETMQ: "ROCKETMQ"}

FLAG_RESPONSE = 1
FLAG_ONEWAY = 2

DEFAULT_MAX_FRAME = 16 * 1024 * 1024
"""Java's NettyDecoder caps a frame at 16 MiB."""

_I32 = struct.Struct(">i")
_I16 = struct.Struct(">h")
_U16 = struct.Struct(">H")
_PREFIX = struct.Struct(">ii")
_BIN_FIXED = struct.Struct(">hbhii")  # code, language, version, opaque, flag


class FrameError(ValueError):
    """A frame that cannot be decoded: the connection that sent it is closed."""


@dataclass(slots=True)
class RemotingCommand:
    code: int
    language: str = "JAVA"
    version: int = 0
    opaque: int = 0
    flag: int = 0
    remark: str | None = None
    ext_fields: dict[str, str] | None = None
    body: bytes | bytearray | None = None
    """A big request's body is the bytearray it was received into (see FrameDecoder)."""
    serialize_type: int = JSON
    body_crc32: int | None = None
    """zlib CRC-32 of the body when the decoder already computed it (big frames)."""
    reserved: int = 0
    """Bytes of the pod-wide partial-frame budget this frame holds until it is answered
    (see :class:`FrameDecoder`'s ``admit``); 0 for frames received without one."""

    @property
    def is_response(self) -> bool:
        return bool(self.flag & FLAG_RESPONSE)

    @property
    def is_oneway(self) -> bool:
        return bool(self.flag & FLAG_ONEWAY)

    def body_at_least(self, size: int) -> bool:
        """The body is ``size`` bytes or more — a sixteenth of that when it says it is
        compressed (``compressed=true``, a REGISTER_BROKER body inflates about that much)."""
        if not self.body:
            return False
        compressed = (self.ext_fields or {}).get("compressed", "").lower() == "true"
        return len(self.body) >= (size // 16 if compressed else size)


# ---------------------------------------------------------------------- decoding


def _ext_value(v: Any) -> str | None:
    """An extFields value as Java holds it (a String); JSON numbers and booleans, which some
    clients send, become their text."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return orjson.dumps(v).decode()


def _int_field(h: dict[str, Any], name: str, default: int) -> int:
    v = h.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise FrameError(f"header field {name} is not an integer: {v!r}")
    try:
        return int(v)
    except ValueError:
        raise FrameError(f"header field {name} is not an integer: {v!r}") from None


_JsonInt = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""Integers orjson reads as integers (it reads up to 2**64 - 1: the slow path has those;
beyond, floats, which it refuses)."""


class _JavaHeader(msgspec.Struct, forbid_unknown_fields=True):
    """A JSON header as Java clients write it: integers as JSON integers, the language by
    name, extFields values as strings, and no other field (whatever does not fit, the slow
    path reads, so that both accept and refuse exactly the same headers)."""

    code: _JsonInt
    language: str = "JAVA"
    version: _JsonInt = 0
    opaque: _JsonInt = 0
    flag: _JsonInt = 0
    remark: str | None = None
    extFields: dict[str, str] | None = None  # the wire's names, camelCase
    serializeTypeCurrentRPC: str | None = None


_decode_java_header = msgspec.json.Decoder(_JavaHeader).decode


def decode_json_header(data: bytes | memoryview) -> RemotingCommand:
    try:  # fast path: a header in Java's own form, typed straight from the bytes
        h = _decode_java_header(data)
    except msgspec.MsgspecError:  # any other form is normalised (or refused) from a dict
        return _decode_json_fields(data)
    return RemotingCommand(
        h.code, h.language, h.version, h.opaque, h.flag, h.remark, h.extFields, None, JSON
    )


def _decode_json_fields(data: bytes | memoryview) -> RemotingCommand:
    """A JSON header in any form Java accepts: numbers as strings, the language as its
    ordinal, extFields values of any JSON type (as text); null as absent."""
    try:
        h = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise FrameError(f"undecodable JSON header: {e}") from None
    if not isinstance(h, dict):
        raise FrameError("JSON header is not an object")
    if "code" not in h:
        raise FrameError("JSON header has no code")
    language = h.get("language", "JAVA")
    if isinstance(language, int) and not isinstance(language, bool):
        language = LANGUAGES[language] if 0 <= language < len(LANGUAGES) else "OTHER"
    elif not isinstance(language, str):
        raise FrameError(f"bad language {language!r}")
    remark = h.get("remark")
    if remark is not None and not isinstance(remark, str):
        raise FrameError("remark is not a string")
    ext = h.get("extFields")
    ext_fields: dict[str, str] | None = None
    if ext is not None:
        if not isinstance(ext, dict):
            raise FrameError("extFields is not an object")
        ext_fields = {}
        for k, v in ext.items():
            s = _ext_value(v)
            if s is not None:
                ext_fields[k] = s
    return RemotingCommand(
        code=_int_field(h, "code", 0),
        language=language,
        version=_int_field(h, "version", 0),
        opaque=_int_field(h, "opaque", 0),
        flag=_int_field(h, "flag", 0),
        remark=remark,
        ext_fields=ext_fields,
        serialize_type=JSON,
    )


def decode_binary_header(data: bytes) -> RemotingCommand:
    try:
        code, lang, version, opaque, flag = _BIN_FIXED.unpack_from(data, 0)
        pos = _BIN_FIXED.size
        (rlen,) = _I32.unpack_from(data, pos)
        pos += 4
        if rlen < 0 or pos + rlen > len(data):
            raise FrameError("binary header: bad remark length")
        remark = data[pos : pos + rlen].decode("utf-8") if rlen else None
        pos += rlen
        (elen,) = _I32.unpack_from(data, pos)
        pos += 4
        if elen < 0 or pos + elen > len(data):
            raise FrameError("binary header: bad extFields length")
        ext_fields: dict[str, str] | None = None
        if elen:
            ext_fields = {}
            end = pos + elen
            while pos < end:
                (klen,) = _U16.unpack_from(data, pos)
                pos += 2
                key = data[pos : pos + klen].decode("utf-8")
                pos += klen
                (vlen,) = _I32.unpack_from(data, pos)
                pos += 4
                if vlen < 0 or pos + vlen > end:
                    raise FrameError("binary header: bad extFields value length")
                ext_fields[key] = data[pos : pos + vlen].decode("utf-8")
                pos += vlen
            if pos != end:
                raise FrameError("binary header: extFields overrun")
    except struct.error:
        raise FrameError("binary header truncated") from None
    except UnicodeDecodeError:
        raise FrameError("binary header: invalid UTF-8") from None
    language = LANGUAGES[lang] if 0 <= lang < len(LANGUAGES) else "OTHER"
    return RemotingCommand(
        code, language, version, opaque, flag, remark, ext_fields, None, ROCKETMQ
    )


def _header_length(frame: bytes | bytearray | memoryview, frame_length: int) -> tuple[int, int]:
    """(serialize type, header length) from the first word of a frame of ``frame_length``."""
    if frame_length < 4:
        raise FrameError("frame shorter than its header length field")
    (word,) = _I32.unpack_from(frame, 0)
    stype, hlen = (word >> 24) & 0xFF, word & 0xFFFFFF
    if hlen > frame_length - 4:
        raise FrameError(f"header length {hlen} exceeds frame length {frame_length}")
    return stype, hlen


def _decode_header(stype: int, header: bytes | memoryview) -> RemotingCommand:
    if stype == JSON:
        return decode_json_header(header)  # orjson reads a memoryview without a copy
    if stype == ROCKETMQ:
        return decode_binary_header(bytes(header))
    raise FrameError(f"unknown serialize type {stype}")


def decode_frame(frame: bytes | bytearray | memoryview) -> RemotingCommand:
    """Decode one frame without its 4-byte length prefix."""
    stype, hlen = _header_length(frame, len(frame))
    cmd = _decode_header(stype, memoryview(frame)[4 : 4 + hlen])
    if len(frame) > 4 + hlen:
        cmd.body = bytes(frame[4 + hlen :])
    return cmd


BIG_FRAME = 256 * 1024
"""A frame at least this long and not yet complete has its body received straight into its
own buffer (a 10,000-topic REGISTER_BROKER body is 1.6 MB: growing and slicing a shared buffer
would copy it several times). The buffer grows with what arrives, never ahead of it, so that a
declared length costs nothing until the bytes are really sent."""


class _BigFrame:
    __slots__ = ("body", "cmd", "crc", "length")

    def __init__(self, cmd: RemotingCommand, body_length: int) -> None:
        self.cmd = cmd
        self.body = bytearray()
        self.length = body_length
        self.crc = 0

    def fill(self, data: memoryview) -> int:
        """Append what belongs to this body; returns how many bytes of ``data`` were taken.
        The body's CRC-32 is computed as it arrives, while the rest is still on its way."""
        take = min(self.length - len(self.body), len(data))
        chunk = data[:take]
        self.body += chunk
        self.crc = zlib.crc32(chunk, self.crc)
        if len(self.body) == self.length:
            self.cmd.body_crc32 = self.crc
        return take

    @property
    def filled(self) -> int:
        return len(self.body)

    @property
    def complete(self) -> bool:
        return len(self.body) == self.length


class FrameDecoder:
    """Incremental decoder: ``feed(bytes) -> [RemotingCommand]``; buffers partial frames.

    A length prefix is checked against ``max_frame_length`` before any frame is buffered.

    ``admit(length) -> bool``, when given, is asked before a frame of at least
    :data:`BIG_FRAME` bytes is buffered beyond what arrived with its length prefix: True
    reserves ``length`` bytes of a shared budget for it (the reservation travels with the
    decoded command as ``reserved``); False blocks the decoder — it keeps what it holds,
    decodes nothing further and must be unblocked with :meth:`granted` once the caller has
    reserved the bytes.
    """

    __slots__ = ("_big", "_buf", "_reserved", "admit", "blocked", "max_frame_length")

    def __init__(
        self,
        max_frame_length: int = DEFAULT_MAX_FRAME,
        admit: Callable[[int], bool] | None = None,
    ) -> None:
        self.max_frame_length = max_frame_length
        self.admit = admit
        self.blocked = False
        self._buf = bytearray()
        self._big: _BigFrame | None = None
        self._reserved = 0

    @property
    def buffered(self) -> int:
        return len(self._buf) + (self._big.filled if self._big else 0)

    @property
    def reserved(self) -> int:
        """Budget bytes held by the partial frame being received (0 when none)."""
        return self._reserved

    def clear(self) -> None:
        """Drop whatever is buffered and the ``admit`` callback (its owner is going away:
        nothing must keep a partial 16 MiB body alive until the next garbage collection)."""
        self._buf = bytearray()
        self._big = None
        self._reserved = 0
        self.admit = None
        self.blocked = False

    def granted(self, length: int) -> None:
        """The budget the blocked decoder asked for is now reserved: carry on."""
        self._reserved = length
        self.blocked = False

    def _take_reservation(self, cmd: RemotingCommand) -> RemotingCommand:
        cmd.reserved, self._reserved = self._reserved, 0
        return cmd

    def feed(self, data: bytes) -> list[RemotingCommand]:
        out: list[RemotingCommand] = []
        if self.blocked:
            self._buf += data
            return out
        if self._big is not None:
            with memoryview(data) as mv:
                taken = self._big.fill(mv)
            if not self._big.complete:
                return out
            out.append(self._take_reservation(self._big.cmd))
            self._big = None
            data = data[taken:]
        if self._buf:
            self._buf += data
            buf: bytes | bytearray = self._buf
        else:
            buf = data
        pos, n = 0, len(buf)
        mv = memoryview(buf)
        try:
            while n - pos >= 4:
                (length,) = _I32.unpack_from(buf, pos)
                if length < 4 or length > self.max_frame_length:
                    raise FrameError(f"frame length {length} outside 4..{self.max_frame_length}")
                if n - pos - 4 < length:
                    if length >= BIG_FRAME:
                        if not self._reserved and self.admit is not None:
                            if not self.admit(length):
                                self.blocked = True
                                break
                            self._reserved = length
                        if self._start_big(mv[pos + 4 :], length):
                            pos = n
                    break
                start = pos + 4
                (word,) = _I32.unpack_from(buf, start)
                if word == length - 4:  # JSON header, no body: a query (decode_frame inlined)
                    cmd = decode_json_header(mv[start + 4 : start + length])
                else:
                    cmd = decode_frame(mv[start : start + length])
                out.append(self._take_reservation(cmd) if self._reserved else cmd)
                pos += 4 + length
        finally:
            mv.release()
        if buf is self._buf:
            del self._buf[:pos]
        elif pos < n:
            self._buf += data[pos:]
        return out

    def _start_big(self, partial: memoryview, length: int) -> bool:
        """Switch to receiving a big frame's body in place, once its header is in."""
        if len(partial) < 4:
            return False
        stype, hlen = _header_length(partial, length)
        if len(partial) < 4 + hlen:
            return False
        cmd = _decode_header(stype, partial[4 : 4 + hlen])
        self._big = _BigFrame(cmd, length - 4 - hlen)
        cmd.body = self._big.body  # filled in place
        self._big.fill(partial[4 + hlen :])
        return True


# ---------------------------------------------------------------------- encoding


def encode_json_header(cmd: RemotingCommand) -> bytes:
    h: dict[str, Any] = {"code": cmd.code}
    if cmd.ext_fields is not None:
        h["extFields"] = cmd.ext_fields
    h["flag"] = cmd.flag
    h["language"] = cmd.language
    h["opaque"] = cmd.opaque
    if cmd.remark is not None:
        h["remark"] = cmd.remark
    h["serializeTypeCurrentRPC"] = "JSON"
    h["version"] = cmd.version
    return orjson.dumps(h)


def encode_binary_header(cmd: RemotingCommand) -> bytes:
    parts = [
        _BIN_FIXED.pack(
            cmd.code, LANGUAGE_CODES.get(cmd.language, 7), cmd.version, cmd.opaque, cmd.flag
        )
    ]
    remark = cmd.remark.encode("utf-8") if cmd.remark else b""
    parts += (_I32.pack(len(remark)), remark)
    ext = b""
    if cmd.ext_fields:
        items: list[bytes] = []
        for k, v in cmd.ext_fields.items():
            kb, vb = k.encode("utf-8"), v.encode("utf-8")
            items += (_I16.pack(len(kb)), kb, _I32.pack(len(vb)), vb)
        ext = b"".join(items)
    parts += (_I32.pack(len(ext)), ext)
    return b"".join(parts)


def frame(serialize_type: int, header: bytes, body: bytes | bytearray | None) -> bytes:
    blen = len(body) if body else 0
    prefix = _PREFIX.pack(4 + len(header) + blen, (serialize_type << 24) | len(header))
    return b"".join((prefix, header, body)) if body else prefix + header


def encode(cmd: RemotingCommand) -> bytes:
    """A whole frame, length prefix included."""
    if cmd.serialize_type == ROCKETMQ:
        header = encode_binary_header(cmd)
    else:
        header = encode_json_header(cmd)
    return frame(cmd.serialize_type, header, cmd.body)


_RESP_HEAD = b'{"code":'
_RESP_TAIL = b',"serializeTypeCurrentRPC":"JSON","version":%d}' % SERVER_VERSION


def encode_response(
    code: int,
    opaque: int,
    serialize_type: int = JSON,
    *,
    remark: str | None = None,
    ext_fields: dict[str, str] | None = None,
    body: bytes | None = None,
    version: int = SERVER_VERSION,
) -> bytes:
    """The frame of an answer (flag = response), as the Java server encodes it."""
    if serialize_type == JSON and version == SERVER_VERSION:
        parts = [_RESP_HEAD, str(code).encode()]
        if ext_fields is not None:
            parts += (b',"extFields":', orjson.dumps(ext_fields))
        parts += (b',"flag":1,"language":"JAVA","opaque":', str(opaque).encode())
        if remark is not None:
            parts += (b',"remark":', orjson.dumps(remark))
        parts.append(_RESP_TAIL)
        return frame(JSON, b"".join(parts), body)
    return encode(
        RemotingCommand(
            code, "JAVA", version, opaque, FLAG_RESPONSE, remark, ext_fields, body, serialize_type
        )
    )


_OK_HEAD = _RESP_HEAD + b'0,"flag":1,"language":"JAVA","opaque":'
_OK_HEAD_LEN = len(_OK_HEAD) + len(_RESP_TAIL)


def success_head(opaque: int, body_length: int) -> bytes:
    """Everything of a success answer's frame but its body: what
    ``encode_response(0, opaque, JSON, body=body)`` returns up to the body (no remark, no
    extFields), built without a header dict. Writing the body after it as a separate buffer
    saves copying it into the frame."""
    digits = b"%d" % opaque
    hlen = _OK_HEAD_LEN + len(digits)
    return b"".join((_PREFIX.pack(4 + hlen + body_length, hlen), _OK_HEAD, digits, _RESP_TAIL))


def encode_request(
    code: int,
    opaque: int,
    ext_fields: dict[str, str] | None = None,
    body: bytes | None = None,
    *,
    language: str = "JAVA",
    version: int = SERVER_VERSION,
    oneway: bool = False,
    serialize_type: int = JSON,
) -> bytes:
    """A request frame (clients, test brokers and the benchmark use this)."""
    return encode(
        RemotingCommand(
            code,
            language,
            version,
            opaque,
            FLAG_ONEWAY if oneway else 0,
            None,
            ext_fields,
            body,
            serialize_type,
        )
    )
