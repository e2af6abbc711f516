"""ACL credentials of one namespace, kept in Redis so that every pod agrees.

One hash (``Keys.acl``): accessKey -> ``{"secretKey": …, "permission": "admin"|"broker"}``.
Writes go through ``lua/acl_write.lua``, which validates every argument before writing.
The secret keys are stored as given: RocketMQ's signature is an HMAC, so the verifier needs
the secret itself. Protect Redis accordingly (TLS and a least-privilege ACL user,
docs/security.md); never log a :class:`Credential`'s secret.

A bootstrap file (YAML or JSON) creates credentials that do not exist yet at start-up::

    credentials:
      - accessKey: rocketmq2
        secretKey: 12345678
        permission: admin      # or broker
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from namesrv_redis.store.route_store import RouteStore

log = logging.getLogger(__name__)


class Permission(StrEnum):
    ADMIN = "admin"
    """Every request code."""
    BROKER = "broker"
    """Broker (un)registration, heartbeats and data-version queries, plus reads."""


@dataclass(frozen=True, slots=True)
class Credential:
    access_key: str
    secret_key: str = field(repr=False)
    permission: Permission

    def to_json(self) -> str:
        return orjson.dumps(
            {"secretKey": self.secret_key, "permission": self.permission.value}
        ).decode()


def parse_credential(access_key: str, raw: bytes | str) -> Credential:
    d = orjson.loads(raw)
    return Credential(access_key, str(d["secretKey"]), Permission(d["permission"]))


def validate(access_key: str, secret_key: str, permission: str) -> Credential:
    """A credential, or ValueError saying what is wrong (nothing secret in the message)."""
    if not access_key or any(c.isspace() for c in access_key):
        raise ValueError("accessKey must be non-empty, without spaces")
    if not secret_key:
        raise ValueError(f"secretKey of {access_key!r} must be non-empty")
    try:
        perm = Permission(permission)
    except ValueError:
        raise ValueError(
            f"permission of {access_key!r} must be admin or broker, not {permission!r}"
        ) from None
    return Credential(access_key, secret_key, perm)


class AclStore:
    """Reads and writes the credentials of one namespace."""

    def __init__(self, store: RouteStore) -> None:
        self.redis = store.redis
        self.key = store.keys.acl
        self._prefix = [store.keys.prefix]
        self._write = store.scripts.acl_write

    async def all(self) -> dict[str, Credential]:
        raw = await self.redis.hgetall(self.key)
        out: dict[str, Credential] = {}
        for k, v in raw.items():
            ak = k.decode() if isinstance(k, bytes) else str(k)
            try:
                out[ak] = parse_credential(ak, v)
            except (ValueError, KeyError, orjson.JSONDecodeError):
                log.error("ignoring malformed ACL credential %r in Redis", ak)
        return out

    async def get(self, access_key: str) -> Credential | None:
        raw = await self.redis.hget(self.key, access_key)
        return parse_credential(access_key, raw) if raw is not None else None

    async def put(self, cred: Credential, *, only_if_new: bool = False) -> bool:
        """Create (or replace, unless ``only_if_new``); True when something changed."""
        op = "putnx" if only_if_new else "put"
        return bool(
            await self._write(keys=self._prefix, args=[op, cred.access_key, cred.to_json()])
        )

    async def delete(self, access_key: str) -> bool:
        return bool(await self._write(keys=self._prefix, args=["del", access_key, ""]))

    async def bootstrap(self, path: str) -> int:
        """Create the file's credentials that do not exist yet; returns how many were new."""
        created = 0
        for cred in read_bootstrap_file(path):
            if await self.put(cred, only_if_new=True):
                created += 1
                log.info(
                    "ACL: created credential %r (%s) from %s",
                    cred.access_key,
                    cred.permission.value,
                    path,
                )
        return created


def read_bootstrap_file(path: str) -> list[Credential]:
    """Credentials of a bootstrap file. Also reads RocketMQ's ``plain_acl.yml``: its
    ``accounts`` with ``admin: true`` become admin credentials; other accounts (topic
    permissions of applications) are not name-server credentials and are skipped."""
    text = Path(path).read_text(encoding="utf-8")
    data: Any
    if path.endswith(".json"):
        data = orjson.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with a 'credentials' list")
    entries = data.get("credentials", data.get("accounts"))
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a 'credentials' (or 'accounts') list")
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ValueError(f"{path}: entry {i} is not a mapping")
        perm = e.get("permission") or ("admin" if e.get("admin") is True else None)
        ak = str(e.get("accessKey") or "")
        if perm is None:
            log.info("ACL bootstrap: %r has no name-server permission, skipped", ak)
            continue
        try:
            out.append(validate(ak, str(e.get("secretKey") or ""), str(perm)))
        except ValueError as err:
            raise ValueError(f"{path}: entry {i}: {err}") from None
    return out
