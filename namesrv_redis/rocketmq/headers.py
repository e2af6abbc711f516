"""Typed request headers, built from a request's ``extFields``.

RocketMQ sends custom header fields as strings in ``extFields`` and decodes them into String,
Integer, Long or Boolean fields; a missing required field is an error. Unknown ext fields
(AccessKey, Signature, OnsChannel, ReqT, ...) are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from namesrv_redis.rocketmq.bounds import (
    HEARTBEAT_TIMEOUT_MAX_MS,
    HEARTBEAT_TIMEOUT_MIN_MS,
    parse_java_integer,
)
from namesrv_redis.rocketmq.errors import BadRequest

T = TypeVar("T")


def _get(ext: Mapping[str, str] | None, name: str) -> str | None:
    if not ext:
        return None
    return ext.get(name)


def req_str(ext: Mapping[str, str] | None, name: str) -> str:
    v = _get(ext, name)
    if v is None:
        raise BadRequest(f"the custom field <{name}> is null")
    return v


def req_name(ext: Mapping[str, str] | None, name: str) -> str:
    """A required field that must not be empty (a broker, cluster or address name: an empty
    one could never be looked up again, so nothing could ever remove it)."""
    v = req_str(ext, name)
    if not v:
        raise BadRequest(f"the custom field <{name}> is empty")
    return v


def opt_str(ext: Mapping[str, str] | None, name: str) -> str | None:
    return _get(ext, name)


def _int(name: str, v: str, bits: int) -> int:
    """Java's Integer.parseInt / Long.parseLong of a header field (no spaces, in range)."""
    try:
        return parse_java_integer(v, bits=bits)
    except ValueError as e:
        raise BadRequest(f"the custom field <{name}> is not a Java {_JAVA[bits]}: {e}") from None


_JAVA = {32: "int", 64: "long"}


def req_int(ext: Mapping[str, str] | None, name: str, *, bits: int = 32) -> int:
    return _int(name, req_str(ext, name), bits)


def opt_int(ext: Mapping[str, str] | None, name: str, *, bits: int = 32) -> int | None:
    v = _get(ext, name)
    return None if v is None or v == "" else _int(name, v, bits)


def heartbeat_timeout(ext: Mapping[str, str] | None) -> int | None:
    """``heartbeatTimeoutMillis`` (a Java long), within the range a liveness TTL may take."""
    v = opt_int(ext, "heartbeatTimeoutMillis", bits=64)
    if v is not None and not HEARTBEAT_TIMEOUT_MIN_MS <= v <= HEARTBEAT_TIMEOUT_MAX_MS:
        raise BadRequest(
            f"the custom field <heartbeatTimeoutMillis> is {v}: it must lie in "
            f"[{HEARTBEAT_TIMEOUT_MIN_MS}, {HEARTBEAT_TIMEOUT_MAX_MS}] ms"
        )
    return v


def opt_bool(ext: Mapping[str, str] | None, name: str) -> bool | None:
    """Java's Boolean.parseBoolean: "true" (any case) is true, anything else false."""
    v = _get(ext, name)
    return None if v is None else v.strip().lower() == "true"


@dataclass(frozen=True, slots=True)
class RegisterBrokerHeader:
    broker_name: str
    broker_addr: str
    cluster_name: str
    ha_server_addr: str
    broker_id: int
    heartbeat_timeout_millis: int | None
    enable_acting_master: bool | None
    compressed: bool
    body_crc32: int
    zone_name: str | None

    @classmethod
    def parse(cls, ext: Mapping[str, str] | None) -> RegisterBrokerHeader:
        return cls(
            broker_name=req_name(ext, "brokerName"),
            broker_addr=req_name(ext, "brokerAddr"),
            cluster_name=req_name(ext, "clusterName"),
            ha_server_addr=opt_str(ext, "haServerAddr") or "",
            broker_id=req_int(ext, "brokerId", bits=64),
            heartbeat_timeout_millis=heartbeat_timeout(ext),
            enable_acting_master=opt_bool(ext, "enableActingMaster"),
            compressed=bool(opt_bool(ext, "compressed")),
            body_crc32=opt_int(ext, "bodyCrc32") or 0,
            zone_name=opt_str(ext, "__ZONE_NAME"),
        )


@dataclass(frozen=True, slots=True)
class BrokerAddrHeader:
    """UNREGISTER_BROKER, QUERY_DATA_VERSION and BROKER_HEARTBEAT: a broker process."""

    cluster_name: str
    broker_addr: str
    broker_name: str

    @classmethod
    def parse(
        cls, ext: Mapping[str, str] | None, *, name_required: bool = True
    ) -> BrokerAddrHeader:
        return cls(
            cluster_name=req_str(ext, "clusterName"),
            broker_addr=req_str(ext, "brokerAddr"),
            broker_name=req_str(ext, "brokerName")
            if name_required
            else (opt_str(ext, "brokerName") or ""),
        )
