"""Client-side ACL signatures, as RocketMQ's ``AclClientRPCHook`` makes them.

The hook adds ``AccessKey`` (and ``SecurityToken`` when set) to a request's ext fields, then
``Signature`` = Base64(HmacSHA1(secretKey, content)), where content is the values of every ext
field except ``Signature`` in ascending key order, concatenated as UTF-8, followed by the body
bytes. ``mqadmin`` reads the keys from ``$ROCKETMQ_HOME/conf/tools.yml``. The signature is
computed by the same function the server verifies with (:func:`namesrv_redis.remoting.acl.
signature`), so client and server cannot disagree on Java's key order or null values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from namesrv_redis.remoting.acl import ACCESS_KEY, SECURITY_TOKEN, SIGNATURE, signature

SECRET_KEY = "SecretKey"


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    security_token: str | None = None


def sign(
    credentials: Credentials, ext_fields: dict[str, str] | None, body: bytes | None
) -> dict[str, str]:
    """The ext fields of a signed request (a new dict; the input is left alone)."""
    fields = dict(ext_fields or {})
    fields.pop(SIGNATURE, None)
    fields[ACCESS_KEY] = credentials.access_key
    if credentials.security_token is not None:
        fields[SECURITY_TOKEN] = credentials.security_token
    fields[SIGNATURE] = signature(credentials.secret_key, fields, body)
    return fields


def _tools_yml_values(text: str) -> dict[str, str]:
    data = yaml.safe_load(text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("tools.yml must be a mapping of accessKey/secretKey")
    return {str(k): str(v) for k, v in data.items() if v is not None}


def default_tools_yml() -> Path | None:
    home = os.environ.get("ROCKETMQ_HOME")
    return Path(home) / "conf" / "tools.yml" if home else None


def load_credentials(
    access_key: str | None,
    secret_key: str | None,
    tools_yml: str | Path | None = None,
    security_token: str | None = None,
) -> Credentials | None:
    """Credentials from the command line, else from tools.yml (``accessKey``/``secretKey``,
    as mqadmin reads it); None when there are none. Raises ValueError on half a pair or an
    unreadable file that was named explicitly."""
    if access_key or secret_key:
        if not (access_key and secret_key):
            raise ValueError("--access-key and --secret-key go together")
        return Credentials(access_key, secret_key, security_token)
    explicit = tools_yml is not None
    path = Path(tools_yml) if tools_yml is not None else default_tools_yml()
    if path is None:
        return None
    try:
        values = _tools_yml_values(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid YAML: {e}") from e
    except OSError as e:
        if explicit:
            raise ValueError(f"cannot read {path}: {e.strerror}") from e
        return None
    ak, sk = values.get("accessKey"), values.get("secretKey")
    if not ak and not sk:
        if explicit:
            raise ValueError(f"{path} has no accessKey/secretKey")
        return None
    if not (ak and sk):
        raise ValueError(f"{path} needs both accessKey and secretKey")
    return Credentials(ak, sk, values.get("securityToken") or security_token)
