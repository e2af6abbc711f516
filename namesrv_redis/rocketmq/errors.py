"""Domain errors, each carrying a RocketMQ response code.

:func:`error_response_code` is the one place that maps any exception to the response a
RocketMQ client gets: a request never crashes a connection, it gets an answer that echoes its
opaque with a code and a remark.
"""

from __future__ import annotations

from redis.exceptions import RedisError, ResponseError

from namesrv_redis.rocketmq.codes import ResponseCode

SYSTEM_ERROR = int(ResponseCode.SYSTEM_ERROR)

INVALID_ARGUMENT = "invalid argument:"
"""How a Lua script's refusal of an argument starts (after Redis' ``ERR``)."""


class RemotingError(Exception):
    """An error answered with a RocketMQ response code and remark."""

    code = SYSTEM_ERROR

    def __init__(self, remark: str, code: int | None = None) -> None:
        super().__init__(remark)
        self.remark = remark
        if code is not None:
            self.code = code


class BadRequest(RemotingError):
    """A header or body the name server cannot decode (Java: RemotingCommandException)."""


class StoreUnavailable(RemotingError):
    """Redis could not be reached or failed: the write was not applied."""


def error_response_code(exc: BaseException) -> tuple[int, str]:
    """(response code, remark) for any exception raised while serving a request."""
    if isinstance(exc, RemotingError):
        return exc.code, exc.remark
    if isinstance(exc, ResponseError) and INVALID_ARGUMENT in str(exc):
        # a script refused an argument before writing anything (lua/_common.lua's checker)
        msg = str(exc)
        return SYSTEM_ERROR, "refused: " + msg[msg.index(INVALID_ARGUMENT) :]
    if isinstance(exc, RedisError):
        return SYSTEM_ERROR, f"route store unavailable: {type(exc).__name__}: {exc}"
    return SYSTEM_ERROR, f"{type(exc).__name__}: {exc}"
