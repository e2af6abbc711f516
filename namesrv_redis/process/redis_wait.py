"""Start-up before Redis answers: the connection is retried with a bounded backoff
(``redisStartupTimeoutSeconds``, ``redisStartupBackoffMaxMillis``) while the HTTP port already
answers ``/healthz`` (200: the process is alive) and every other path, ``/readyz`` first, with
503 and why (the real HTTP tier takes the same listening socket over once the pod is up).
Remoting stays closed until then: a client tries another name server.

``docker compose``'s plain ``depends_on`` and a Kubernetes pod starting next to its Redis
both race Redis; the pod waits for it instead of dying with a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
import time
from typing import Any

from redis.exceptions import (
    AuthenticationError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

from namesrv_redis.settings.exit_codes import ExitCode, StartupError

log = logging.getLogger(__name__)

FIRST_PAUSE_S = 0.1
ATTEMPT_TIMEOUT_S = 5.0
_MAX_HEAD = 8192


def _describe(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.rstrip(".")


def _is_auth_error(e: BaseException) -> bool:
    if isinstance(e, AuthenticationError):
        return True
    return isinstance(e, ResponseError) and str(e).split(" ", 1)[0] in ("NOAUTH", "WRONGPASS")


class StartupWait:
    """What a starting pod is waiting for (the 503 body says it)."""

    def __init__(self) -> None:
        self.reason = "starting"


async def wait_for_redis(
    client: Any, where: str, *, timeout_s: float, backoff_max_s: float, state: StartupWait
) -> None:
    """PING ``client`` until it answers; raise :class:`StartupError` (UNREACHABLE) after
    ``timeout_s``, or at once (USAGE) when Redis refuses our credentials."""
    deadline = time.monotonic() + timeout_s
    pause, attempt = FIRST_PAUSE_S, 0
    state.reason = f"connecting to Redis at {where}"
    while True:
        attempt += 1
        try:
            await asyncio.wait_for(client.ping(), ATTEMPT_TIMEOUT_S)
        except (RedisError, RedisClusterException, OSError, TimeoutError) as e:
            if _is_auth_error(e):
                raise StartupError(
                    f"Redis at {where} refused our credentials ({_describe(e)}): fix "
                    "--redis-password / NAMESRV_REDIS_PASSWORD (and --redis-username) or the "
                    "password in --redis-url",
                    ExitCode.USAGE,
                ) from None
            why = f"cannot reach Redis at {where}: {_describe(e)}"
            state.reason = f"waiting for Redis (attempt {attempt}): {why}"
            if time.monotonic() + pause > deadline:
                raise StartupError(
                    f"{why}; gave up after {attempt} attempt(s) in {timeout_s:g} s: start Redis "
                    "or fix --redis-url / NAMESRV_REDIS_URL (wait longer with "
                    "--redis-startup-timeout / NAMESRV_REDIS_STARTUP_TIMEOUT_SECONDS)",
                    ExitCode.UNREACHABLE,
                ) from None
            if attempt == 1:
                log.warning("%s; retrying for up to %g s", why, timeout_s)
            else:
                log.debug("attempt %d: %s", attempt, why)
            await asyncio.sleep(pause)
            pause = min(pause * 2, backoff_max_s)
            continue
        if attempt > 1:
            log.info("Redis at %s answers (after %d attempts)", where, attempt)
        return


class WaitingHttp:
    """A minimal HTTP/1.1 answerer on the pod's HTTP socket until the real tier is up."""

    def __init__(self, sock: socket.socket, state: StartupWait, tls: ssl.SSLContext | None) -> None:
        self.sock = sock
        self.state = state
        self.tls = tls
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        # a duplicate descriptor: closing this server leaves the pod's socket listening
        self._server = await asyncio.start_server(self._answer, sock=self.sock.dup(), ssl=self.tls)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            writer.close()
            return
        parts = head[:_MAX_HEAD].split(b" ", 2)
        path = parts[1].split(b"?", 1)[0] if len(parts) > 1 else b""
        if path == b"/healthz":
            status, body = "200 OK", {"status": "ok"}
        else:
            status, body = (
                "503 Service Unavailable",
                {
                    "status": "not_ready",
                    "reason": self.state.reason,
                },
            )
        data = json.dumps(body).encode()
        writer.write(
            f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(data)}\r\nconnection: close\r\n\r\n".encode()
            + (data if not head.startswith(b"HEAD ") else b"")
        )
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()
