"""Request headers and bodies of RocketMQ 5's controller codes (1001-1013 and the controller
side of BROKER_HEARTBEAT 904), as RocketMQ 5.3.3's ``remoting.protocol.header.controller``
classes carry them in ``extFields``; docs/controller.md lists them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from namesrv_redis.rocketmq import fastjson
from namesrv_redis.rocketmq.errors import BadRequest
from namesrv_redis.rocketmq.headers import (
    heartbeat_timeout,
    opt_bool,
    opt_int,
    opt_str,
    req_int,
    req_name,
)

JAVA_INT_MAX = 2**31 - 1
DEFAULT_CONTROLLER_HEARTBEAT_TIMEOUT_MS = 10_000
"""A 5.3.3 broker's controllerHeartBeatTimeoutMills."""


def is_controller_heartbeat(ext: Mapping[str, str] | None) -> bool:
    """BROKER_HEARTBEAT carries a controller-mode broker's fields (its id and epoch) only when
    it is sent to a controller; the 5.x NameServer heartbeat leaves them null."""
    return bool(ext) and ext is not None and "brokerId" in ext and "epoch" in ext


@dataclass(frozen=True, slots=True)
class ControllerHeartbeat:
    cluster_name: str
    broker_name: str
    broker_addr: str
    broker_id: int
    epoch: int
    max_offset: int
    confirm_offset: int
    timeout_ms: int
    election_priority: int

    @classmethod
    def parse(cls, ext: Mapping[str, str] | None) -> ControllerHeartbeat:
        return cls(
            cluster_name=req_name(ext, "clusterName"),
            broker_name=req_name(ext, "brokerName"),
            broker_addr=req_name(ext, "brokerAddr"),
            broker_id=req_int(ext, "brokerId", bits=64),
            epoch=_or(opt_int(ext, "epoch"), -1),
            max_offset=opt_int(ext, "maxOffset", bits=64) or 0,
            confirm_offset=opt_int(ext, "confirmOffset", bits=64) or 0,
            # the controller header spells it heartbeatTimeoutMills (no "i")
            timeout_ms=_or(
                heartbeat_timeout({"heartbeatTimeoutMillis": ext["heartbeatTimeoutMills"]})
                if ext and ext.get("heartbeatTimeoutMills")
                else None,
                DEFAULT_CONTROLLER_HEARTBEAT_TIMEOUT_MS,
            ),
            election_priority=_or(opt_int(ext, "electionPriority"), JAVA_INT_MAX),
        )


def _or(v: int | None, default: int) -> int:
    return default if v is None else v


@dataclass(frozen=True, slots=True)
class ElectMasterHeader:
    cluster_name: str
    broker_name: str
    broker_id: int
    designate_elect: bool

    @classmethod
    def parse(cls, ext: Mapping[str, str] | None) -> ElectMasterHeader:
        return cls(
            cluster_name=opt_str(ext, "clusterName") or "",
            broker_name=req_name(ext, "brokerName"),
            broker_id=_or(opt_int(ext, "brokerId", bits=64), -1),
            designate_elect=bool(opt_bool(ext, "designateElect")),
        )


def sync_state_set_body(body: bytes | bytearray | None) -> tuple[list[int], int]:
    """A SyncStateSet body: (broker ids, syncStateSetEpoch)."""
    try:
        d: Any = fastjson.loads(body or b"")
        ids = [int(i) for i in d.get("syncStateSet") or []]
        epoch = int(d.get("syncStateSetEpoch", 0))
    except (ValueError, TypeError, AttributeError) as e:
        raise BadRequest(f"bad SyncStateSet body: {e}") from None
    return ids, epoch


def encode_sync_state_set(ids: tuple[int, ...] | list[int], epoch: int) -> bytes:
    return fastjson.dumps_fastjson({"syncStateSet": sorted(ids), "syncStateSetEpoch": epoch})


def clean_ids(text: str | None) -> list[int] | None:
    """``brokerControllerIdsToClean`` ("1;2;3"): the ids, [] for none, None when malformed."""
    if not text:
        return []
    ids: list[int] = []
    for part in text.split(";"):
        if not part.strip():
            continue
        if not part.strip().isdigit():
            return None
        ids.append(int(part.strip()))
    return ids
