"""The iteration order of Java's ``HashMap`` / ``HashSet``, for answers whose order (or whose
"first" element) the Java NameServer takes from one.

A ``HashMap`` iterates its buckets in index order, ``(h ^ (h >>> 16)) & (capacity - 1)`` with
``h`` the key's ``hashCode()``, and each bucket in insertion order (a resize keeps that order).
The capacity starts at the constructor's hint rounded up to a power of two (16 by default)
and doubles whenever the size passes three quarters of it. Where the Java insertion order is
not known (it depends on when brokers registered), keys are inserted in sorted order, so the
result is deterministic and equals Java's whenever no two keys share a bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

K = TypeVar("K")


def _int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def string_hash(s: str) -> int:
    """Java's ``String.hashCode()`` (over UTF-16 code units)."""
    h = 0
    data = s.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return _int32(h)


def long_hash(v: int) -> int:
    """Java's ``Long.hashCode()``: ``(int) (value ^ (value >>> 32))``."""
    u = v & 0xFFFFFFFFFFFFFFFF
    return _int32(u ^ (u >> 32))


def _table_size_for(hint: int) -> int:
    n = 1
    while n < hint:
        n <<= 1
    return n


def hashmap_order(
    keys: Iterable[K], hash_fn: Callable[[K], int], initial_capacity: int = 16
) -> list[K]:
    """``keys`` (given in insertion order, without duplicates) as a Java ``HashMap`` created
    with ``initial_capacity`` iterates them."""
    items = list(keys)
    capacity = _table_size_for(max(1, initial_capacity))
    while len(items) > capacity * 3 // 4:
        capacity <<= 1

    def bucket(k: K) -> int:
        h = hash_fn(k) & 0xFFFFFFFF
        return (h ^ (h >> 16)) & (capacity - 1)

    return sorted(items, key=bucket)  # stable: insertion order within a bucket
