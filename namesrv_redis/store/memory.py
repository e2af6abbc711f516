"""``memory://``: a private in-process Redis (fakeredis with Lua) for tests and local tinkering.

Nothing is shared with any other process and nothing is kept: every client made here talks to
its own empty fake server, which lives as long as the client. The real scripts in ``lua/``
run inside it (fakeredis runs Lua with ``lupa``), so the answers are the real ones. fakeredis
emits no expired-key events: liveness works through the sweeper alone (within one
``scanNotActiveBrokerInterval`` of a broker's deadline).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

SCHEME = "memory"
INSTALL_HINT = "pip install 'namesrv-redis[testing]'"


def is_memory_url(url: str | None) -> bool:
    return bool(url) and urlsplit(url or "").scheme.lower() == SCHEME


def new_fake_redis(*, decode_responses: bool = False) -> Any:
    """A ``fakeredis.FakeAsyncRedis`` on a server of its own, with Lua scripting available."""
    try:
        import fakeredis
    except ImportError:
        raise RuntimeError(f"the in-memory Redis needs fakeredis: {INSTALL_HINT}") from None
    try:
        import lupa  # noqa: F401  (fakeredis runs EVAL/EVALSHA with it)
    except ImportError:
        raise RuntimeError(
            f"the in-memory Redis needs fakeredis with Lua (the lupa package): {INSTALL_HINT}"
        ) from None
    return fakeredis.FakeAsyncRedis(
        server=fakeredis.FakeServer(), decode_responses=decode_responses
    )


def memory_redis(url: str, *, decode_responses: bool = False, **_ignored: Any) -> Any:
    """The client for a ``memory://`` URL (``create_redis`` dispatches here), loudly."""
    parts = urlsplit(url)
    if parts.netloc or parts.path.strip("/") or parts.query:
        raise ValueError(f"memory:// takes no host, path or options (got {url!r})")
    client = new_fake_redis(decode_responses=decode_responses)
    log.warning(
        "*** --redis-url memory:// : the route tables live in THIS PROCESS ONLY (fakeredis). "
        "Nothing is shared with other pods and nothing is kept: a restart forgets every "
        "broker, topic and KV entry. For tests and local development, never for production."
    )
    return client
