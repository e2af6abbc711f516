"""What a Redis URL's scheme says, checked when the options are read (a mistyped scheme is a
configuration error, reported before anything starts)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

MODES: dict[str, str] = {
    "redis": "standalone",
    "rediss": "standalone",
    "unix": "standalone",
    "redis+sentinel": "sentinel",
    "sentinel": "sentinel",
    "redis+cluster": "cluster",
    "memory": "memory",
}
"""URL scheme → deployment (the connection code in ``store/connection.py`` builds the client)."""


def check_redis_url(url: str) -> str:
    """``url`` itself when its scheme is one we connect to, else ValueError saying which are."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in MODES:
        known = ", ".join(f"{s}://" for s in MODES if s != "sentinel")
        raise ValueError(
            f"unsupported URL scheme {scheme + '://' if scheme else '(none)'}; use {known}"
        )
    return url


def redis_mode(url: str | None) -> str:
    """``embedded`` (no URL), ``standalone``, ``sentinel``, ``cluster`` or ``memory``."""
    if not url:
        return "embedded"
    parts = urlsplit(url)
    if parse_qs(parts.query).get("cluster", ["false"])[0].lower() == "true":
        return "cluster"
    return MODES.get(parts.scheme.lower(), "standalone")


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs and printed configuration)."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", re.sub(r"(//)([^:@/]+)@", r"\1***@", url))
