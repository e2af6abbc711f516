"""Loads every Lua script in ``lua/`` once and exposes them as typed attributes.

Each ``lua/<verb>.lua`` is one atomic write (or a one-round-trip read). ``lua/_common.lua``
holds the helpers they share and is prepended to each of them, so every script stays
self-contained once loaded. redis-py's ``AsyncScript`` calls ``EVALSHA`` and falls back to
loading the source after ``NOSCRIPT`` (a Redis restart or failover flushes the script cache).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from redis.commands.core import AsyncScript

COMMON = "_common"


def lua_dir() -> Path:
    """Where the scripts are: inside the installed package, or in the source tree."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "lua", package.parent / "lua"):
        if (candidate / f"{COMMON}.lua").is_file():
            return candidate
    raise FileNotFoundError(
        "namesrv-redis Lua scripts not found (lua/ is missing from the install)"
    )


def script_source(name: str, directory: Path | None = None) -> str:
    """The full source of one script: the common helpers, then the script itself."""
    base = directory or lua_dir()
    common = (base / f"{COMMON}.lua").read_text(encoding="utf-8")
    return common + "\n" + (base / f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Scripts:
    """One registered script per file in ``lua/`` (the field name is the file name)."""

    register_broker: AsyncScript
    remove_broker: AsyncScript
    heartbeat: AsyncScript
    query_data_version: AsyncScript
    write_perm: AsyncScript
    delete_topic: AsyncScript
    register_topic: AsyncScript
    kv_put: AsyncScript
    kv_delete: AsyncScript
    config_update: AsyncScript
    route: AsyncScript
    cluster_info: AsyncScript
    acl_write: AsyncScript
    repair_broker: AsyncScript
    repair_drift: AsyncScript
    probe_expiry: AsyncScript
    # RocketMQ 5 Controller mode (store/controller_store.py)
    controller_apply_id: AsyncScript
    controller_register: AsyncScript
    controller_heartbeat: AsyncScript
    controller_drop: AsyncScript
    controller_sweep: AsyncScript
    controller_elect: AsyncScript
    controller_alter_sync_state: AsyncScript
    controller_clean: AsyncScript
    stage_topics: AsyncScript
    apply_pending: AsyncScript


def script_names() -> list[str]:
    return [f.name for f in fields(Scripts)]


_SOURCES: dict[Path, dict[str, str]] = {}
"""The sources read so far, per directory: every client of the process (the pod's, the
offload thread's) registers the same string objects rather than its own copy (400 KB)."""


def register_scripts(client: Any) -> Scripts:
    """Register every script with a redis-py asyncio client (no round trip yet)."""
    directory = lua_dir()
    sources = _SOURCES.get(directory)
    if sources is None:
        sources = {name: script_source(name, directory) for name in script_names()}
        _SOURCES[directory] = sources
    return Scripts(**{name: client.register_script(sources[name]) for name in script_names()})


async def preload(scripts: Scripts, client: Any) -> None:
    """SCRIPT LOAD every script now, so a broken script fails at start-up, not on first use."""
    for name in script_names():
        script: AsyncScript = getattr(scripts, name)
        script.sha = await client.script_load(script.script)
