"""A real-protocol RocketMQ name server for other projects' tests (docs/testing.md).

:class:`NameServer` runs one pod in-process (a background thread with its own event loop) on
fakeredis, or on a real Redis on request: the same codec, Lua scripts and answers as
``namesrv-redis serve``. The pytest plugin (``namesrv_redis.testing.plugin``, installed with
the ``testing`` extra) provides the ``rocketmq_namesrv`` fixtures.

Importing this package is cheap: the server and fakeredis load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from namesrv_redis.testing.server import NameServer, Registration, Topic

__all__ = ["NameServer", "Registration", "Topic"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from namesrv_redis.testing import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
