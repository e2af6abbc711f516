"""The key namespace: one RocketMQ estate's share of a Redis (``--namespace``)."""

from __future__ import annotations


def validate_namespace(namespace: str) -> str:
    """Refuse namespaces that would break the hash tag."""
    if not namespace or "{" in namespace or "}" in namespace:
        raise ValueError(f"invalid namespace {namespace!r}: must be non-empty, without braces")
    return namespace
