"""The names of the remoting TLS options' values (``tls.server.mode``,
``tls.server.need.client.auth``) and their parsing: what the settings validate, without the
``ssl`` module and the TLS machinery of :mod:`.tls` (so that a ``--workers`` pod's supervisor,
which only reads settings, does not load them)."""

from __future__ import annotations

from enum import StrEnum

DEFAULT_TLS_CONFIG_FILE = "/etc/rocketmq/tls.properties"


class TlsMode(StrEnum):
    DISABLED = "disabled"
    PERMISSIVE = "permissive"
    ENFORCING = "enforcing"


class ClientAuth(StrEnum):
    NONE = "none"
    OPTIONAL = "optional"
    REQUIRE = "require"


class TlsConfigError(ValueError):
    """TLS cannot be set up as configured (the message says what to change)."""


def parse_mode(value: str) -> TlsMode:
    try:
        return TlsMode(value.strip().lower())
    except ValueError:
        raise TlsConfigError(
            f"tls.server.mode={value!r}: use disabled, permissive or enforcing"
        ) from None


def parse_client_auth(value: str) -> ClientAuth:
    try:
        return ClientAuth(value.strip().lower())
    except ValueError:
        raise TlsConfigError(
            f"tls.server.need.client.auth={value!r}: use none, optional or require"
        ) from None
