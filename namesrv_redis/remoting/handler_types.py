"""What a request handler is given and gives back: the :class:`Connection` a request came on
and the :class:`Response` the connection layer encodes with the request's opaque."""

from __future__ import annotations

from dataclasses import dataclass, field

from namesrv_redis.rocketmq.codes import ResponseCode
from namesrv_redis.rocketmq.headers import RegisterBrokerHeader


@dataclass(slots=True)
class Response:
    code: int = ResponseCode.SUCCESS
    remark: str | None = None
    ext_fields: dict[str, str] | None = None
    body: bytes | None = None


@dataclass(slots=True)
class Connection:
    """What a handler may know about the connection a request came on."""

    conn_id: str
    remote_addr: str
    brokers: set[tuple[str, str, str]] = field(default_factory=set)
    """(cluster, broker address, broker name) registered over this connection."""
    controller_members: set[tuple[str, int]] = field(default_factory=set)
    """(broker name, controller broker id) whose controller heartbeats came on it."""
    last_register: tuple[dict[str, str], RegisterBrokerHeader] | None = None
    """The header fields of the last REGISTER_BROKER on it and their parse: a broker repeats
    the same header every 30 s, so it is parsed once."""
