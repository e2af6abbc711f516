"""The names of the persistence modes (``serve --persistence``) and their check, apart from
:mod:`.persistence` so that reading settings does not load the Redis client (a ``--workers``
pod's supervisor only reads settings)."""

from __future__ import annotations

MODES = ("none", "rdb", "aof-everysec", "aof-always")
DEFAULT_MODE = "aof-everysec"
RDB_SAVE = "60 1"
"""The snapshot schedule of ``rdb``: a snapshot 60 s after the first change (Redis ``save``)."""


def validate_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"persistence must be one of {', '.join(MODES)} (got {mode!r})")
    return mode


def uses_aof(mode: str) -> bool:
    return mode.startswith("aof-")
