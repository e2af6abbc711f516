"""Bounds on what a client may send: Java's integer ranges and the name server's own limits.

The remoting front end refuses what the Java NameServer refuses (a header value that does not
parse as Java's ``int``/``long``) plus values no sane broker sends (a heartbeat timeout of
292 million years). The Lua scripts check the same bounds again before their first write
(``lua/_common.lua``), so a refused request never leaves partial state. docs/protocol.md
lists every limit and the answer a client gets.
"""

from __future__ import annotations

JAVA_INT_MIN, JAVA_INT_MAX = -(2**31), 2**31 - 1
JAVA_LONG_MIN, JAVA_LONG_MAX = -(2**63), 2**63 - 1

HEARTBEAT_TIMEOUT_MIN_MS = 100
HEARTBEAT_TIMEOUT_MAX_MS = 7 * 24 * 3600 * 1000
"""A broker's ``heartbeatTimeoutMillis`` (the TTL of its liveness key) must lie in this range."""


def java_int(v: int) -> bool:
    return JAVA_INT_MIN <= v <= JAVA_INT_MAX


def java_long(v: int) -> bool:
    return JAVA_LONG_MIN <= v <= JAVA_LONG_MAX


def parse_java_integer(text: str, *, bits: int) -> int:
    """``Integer.parseInt`` (bits=32) / ``Long.parseLong`` (bits=64): an optional sign and
    decimal digits, no spaces, no underscores, within range. Raises ValueError otherwise."""
    if not text or text != text.strip() or "_" in text:
        raise ValueError(f'For input string: "{text}"')
    try:
        v = int(text, 10)
    except ValueError:
        raise ValueError(f'For input string: "{text}"') from None
    lo, hi = (JAVA_INT_MIN, JAVA_INT_MAX) if bits == 32 else (JAVA_LONG_MIN, JAVA_LONG_MAX)
    if not lo <= v <= hi:
        raise ValueError(f'For input string: "{text}" (outside Java\'s {bits}-bit range)')
    return v
