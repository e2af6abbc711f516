"""JSON as RocketMQ's Java side writes and reads it (Alibaba fastjson).

- :func:`dumps_fastjson` — fastjson's default form: compact, map keys that are numbers
  written without quotes (``{"brokerAddrs":{0:"127.0.0.1:10911"}}``), non-ASCII as raw UTF-8.
  Dicts are written in the order given (bean fields are already alphabetical).
- :func:`dumps_standard` — what the Java NameServer writes with ``BrowserCompatible,
  QuoteFieldNames, MapSortField``: strict JSON, every map's keys sorted (numbers
  numerically), non-ASCII escaped as ``\\uXXXX``.
- :func:`loads` — strict JSON through orjson, and fastjson's quirks (unquoted numeric or
  identifier keys) through a string-aware rewrite when orjson refuses the input.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_QUIRK = re.compile(
    r'"(?:[^"\\]|\\.)*"'  # a string literal: left alone
    r"|([{,]\s*)(-?\d+|[A-Za-z_$][\w$]*)(\s*:)"  # an unquoted key
)


def _quote_key(m: re.Match[str]) -> str:
    if m.group(1) is None:
        return m.group(0)
    return f'{m.group(1)}"{m.group(2)}"{m.group(3)}'


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse strict JSON or fastjson's dialect. Raises ValueError on anything else."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    text = data if isinstance(data, str) else bytes(data).decode("utf-8")
    try:
        return orjson.loads(_QUIRK.sub(_quote_key, text))
    except orjson.JSONDecodeError as e:
        raise ValueError(f"invalid JSON: {e}") from None


def _key_fastjson(k: Any) -> bytes:
    if isinstance(k, int) and not isinstance(k, bool):
        return str(k).encode()
    return orjson.dumps(str(k))


def _enc_fastjson(o: Any, out: list[bytes]) -> None:
    if isinstance(o, dict):
        if not o:
            out.append(b"{}")
            return
        if all(type(k) is str for k in o) and not any(
            isinstance(v, (dict, list, tuple)) for v in o.values()
        ):
            out.append(orjson.dumps(o))
            return
        sep = b"{"
        for k, v in o.items():
            out += (sep, _key_fastjson(k), b":")
            _enc_fastjson(v, out)
            sep = b","
        out.append(b"}")
    elif isinstance(o, (list, tuple)):
        if all(type(v) is str or type(v) is int for v in o):
            out.append(orjson.dumps(list(o)))
            return
        sep = b"["
        for v in o:
            out.append(sep)
            _enc_fastjson(v, out)
            sep = b","
        out.append(b"]" if o else b"[]")
    else:
        out.append(orjson.dumps(o))


def dumps_fastjson(obj: Any) -> bytes:
    out: list[bytes] = []
    _enc_fastjson(obj, out)
    return b"".join(out)


def _sort_key(k: Any) -> tuple[int, Any]:
    if isinstance(k, (int, float)) and not isinstance(k, bool):
        return (0, k)
    return (1, str(k))


def _sorted_maps(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _sorted_maps(o[k]) for k in sorted(o, key=_sort_key)}
    if isinstance(o, (list, tuple)):
        return [_sorted_maps(v) for v in o]
    return o


def dumps_standard(obj: Any) -> bytes:
    out = orjson.dumps(_sorted_maps(obj))
    if out.isascii():
        return out
    return json.dumps(orjson.loads(out), ensure_ascii=True, separators=(",", ":")).encode("ascii")
