"""Whether the HTTP tier's admin calls are reachable from other machines without a token
(checked at start, before the JSON API is loaded, and by its admin guard)."""

from __future__ import annotations

import ipaddress
import logging

from namesrv_redis.settings.config import Settings


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def admin_exposed_without_token(settings: Settings) -> bool:
    """True when admin calls would be reachable from other machines without a token."""
    return settings.admin_token is None and not is_loopback(settings.http_host)


def warn_if_unprotected(settings: Settings, logger: logging.Logger) -> bool:
    """Say so when admin calls are reachable from other machines without a token: they are
    then refused (403) unless ``allowUnauthenticatedAdmin`` says otherwise."""
    if not admin_exposed_without_token(settings):
        return False
    if settings.allow_unauthenticated_admin:
        logger.warning(
            "HTTP admin endpoints on %s:%d are not protected (--allow-unauthenticated-admin): "
            "anyone who reaches this port can change routes and KV config",
            settings.http_host,
            settings.http_port,
        )
    else:  # the safe default: nothing to act on unless HTTP admin calls are wanted
        logger.info(
            "HTTP admin endpoints on %s:%d are not protected, so they are disabled: set "
            "--admin-token (NAMESRV_ADMIN_TOKEN), bind --http-host 127.0.0.1, or pass "
            "--allow-unauthenticated-admin",
            settings.http_host,
            settings.http_port,
        )
    return True
