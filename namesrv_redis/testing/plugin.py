"""The pytest plugin: a real RocketMQ name server per test (docs/testing.md).

Installed with ``pip install 'namesrv-redis[testing]'`` (a ``pytest11`` entry point, so an
outside project only requests the fixture):

- ``rocketmq_namesrv``: a :class:`~namesrv_redis.testing.NameServer` with empty state for
  each test (one server per session, :meth:`~NameServer.reset` before every test);
- ``rocketmq_namesrv_session``: one server for the whole session, never reset;
- ``@pytest.mark.rocketmq_namesrv(redis=..., http=True, options={...})``: that test gets
  a server of its own, started with these arguments;
- ``--rocketmq-namesrv-redis=REDIS`` (or ini ``rocketmq_namesrv_redis``, or
  ``$ROCKETMQ_NAMESRV_REDIS``): ``memory://`` (fakeredis, the default), ``embedded`` (a
  private real ``redis-server``) or a ``redis://`` URL.

Loading the plugin imports nothing but pytest: the server, fakeredis and the rest of
namesrv-redis load when a fixture is first used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from namesrv_redis.testing.server import NameServer

MARKER = "rocketmq_namesrv"
OPTION_DEST = "rocketmq_namesrv_redis"
INI = "rocketmq_namesrv_redis"
ENV = "ROCKETMQ_NAMESRV_REDIS"
DEFAULT_REDIS = "memory://"
REDIS_HELP = (
    "Redis of the rocketmq_namesrv fixtures: memory:// (fakeredis in this process, default), "
    "embedded (a private redis-server) or a redis:// URL (a namespace of its own per server)"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rocketmq-namesrv", "RocketMQ name server for tests (namesrv-redis)")
    group.addoption(
        "--rocketmq-namesrv-redis", dest=OPTION_DEST, metavar="REDIS", default=None, help=REDIS_HELP
    )
    parser.addini(INI, REDIS_HELP, default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(redis=..., http=False, options={{...}}, ...): give this test a name server "
        "of its own, started with these NameServer arguments (namesrv-redis docs/testing.md)",
    )


def configured_redis(config: pytest.Config) -> str:
    """The command-line option, else the environment, else the ini value, else memory://."""
    value = config.getoption(OPTION_DEST, default=None) or os.environ.get(ENV)
    if not value:
        try:
            value = str(config.getini(INI) or "")
        except ValueError:  # the plugin was registered after the ini was read
            value = ""
    return value or DEFAULT_REDIS


def start_name_server(**kwargs: Any) -> NameServer:
    from namesrv_redis.testing.server import NameServer

    return NameServer(**kwargs).start()


@pytest.fixture(scope="session")
def rocketmq_namesrv_session(pytestconfig: pytest.Config) -> Iterator[NameServer]:
    """One name server for the whole session; its state is never reset."""
    server = start_name_server(redis=configured_redis(pytestconfig))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _rocketmq_namesrv_shared(pytestconfig: pytest.Config) -> Iterator[NameServer]:
    server = start_name_server(redis=configured_redis(pytestconfig))
    yield server
    server.stop()


@pytest.fixture
def rocketmq_namesrv(request: pytest.FixtureRequest) -> Iterator[NameServer]:
    """A name server with empty state: no brokers, topics or KV config, no requests seen."""
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        server: NameServer = request.getfixturevalue("_rocketmq_namesrv_shared")
        server.reset()
        yield server
        return
    if marker.args:
        raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keyword arguments only")
    kwargs = dict(marker.kwargs)
    kwargs.setdefault("redis", configured_redis(request.config))
    server = start_name_server(**kwargs)
    try:
        yield server
    finally:
        server.stop()
