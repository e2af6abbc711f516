"""The exit codes of every ``namesrv-redis`` command, and the error that carries one.

One table for ``serve``, ``check``, ``acl`` and ``admin`` (``admin`` uses 3, 5 and 6 too,
``serve`` uses 7): a script or a service manager can tell "fix the configuration" (2) from
"Redis is not there yet" (4) without reading the message.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    PROBLEMS = 1
    """``check``: broken invariants found; ``admin``: a name server refused."""
    USAGE = 2
    """Bad usage or configuration: an unknown flag, an invalid value, an unusable file."""
    NOT_FOUND = 3
    """``admin``: topic or key not found."""
    UNREACHABLE = 4
    """Cannot reach Redis (``serve`` after its start-up wait or when its embedded
    redis-server does not start, ``check``, ``acl``) or, for ``admin``, any name server of
    ``-n``."""
    PARTIAL = 5
    """``admin``: a change reached some name servers but not all."""
    NO_PERMISSION = 6
    """``admin``: NO_PERMISSION from the name server."""
    CANNOT_LISTEN = 7
    """``serve``: a port is in use or may not be bound."""


EPILOG = """exit codes:
  0  ok
  1  check: broken invariants found; admin: a name server refused
  2  bad usage or configuration (the message names the value, the flag and the variable)
  3  admin: not found
  4  cannot reach Redis (serve gives up after --redis-startup-timeout, or its embedded
     redis-server did not start), or admin: no name server answered
  5  admin: a change reached some name servers only
  6  admin: no permission
  7  serve: a port is in use or may not be bound
  (docs/operations.md, "Exit codes")"""


class StartupError(Exception):
    """A predictable failure: reported as its one-line message, exit with :attr:`code`."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code
