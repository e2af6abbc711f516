"""Settings of a name-server pod, under RocketMQ's own option names where an option exists.

Sources, strongest first: command line, environment (``NAMESRV_<FIELD>``, e.g.
``NAMESRV_REDIS_URL``), a config file (a Java ``.properties`` file with RocketMQ's camelCase
names such as ``listenPort=9876``, or TOML/JSON with either spelling), defaults.
UPDATE_NAMESRV_CONFIG changes some of them at run time (:mod:`namesrv_redis.runtime_config`)
and GET_NAMESRV_CONFIG reports them (:func:`to_properties_text`), as the Java NameServer does.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from namesrv_redis.store.keys import validate_namespace

DEFAULT_BLACK_LIST = "configBlackList;configStorePath;kvConfigPath"
ALWAYS_BLACK_LISTED = ("configBlackList", "configStorePath", "kvConfigPath", "rocketmqHome")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NAMESRV_", extra="ignore", frozen=False)

    # namesrv-redis's own
    redis_url: str | None = None
    namespace: str = "default"
    listen_host: str = "0.0.0.0"
    http_host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=0, le=65535)
    admin_token: SecretStr | None = None
    workers: int = Field(1, ge=1, le=64)
    max_frame_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_connections: int = Field(10_000, ge=1)
    route_cache_max_age_ms: int = Field(1000, ge=0)
    broker_timeout_ms: int = Field(120_000, ge=100)
    log_level: str = "INFO"
    malloc_trim_threshold_mb: int = Field(32, ge=0)
    """Return freed memory to the system once malloc holds this much free (0 = never)."""
    # RocketMQ NamesrvConfig / NettyServerConfig
    listen_port: int = Field(9876, ge=0, le=65535)
    scan_not_active_broker_interval: int = Field(5000, ge=50)
    order_message_enable: bool = False
    return_order_topic_config_to_broker: bool = True
    support_acting_master: bool = False
    enable_all_topic_list: bool = True
    enable_topic_list: bool = True
    notify_min_broker_id_changed: bool = False
    need_wait_for_service: bool = False
    wait_seconds_for_service: int = Field(45, ge=0)
    delete_topic_with_broker_registration: bool = False
    config_black_list: str = DEFAULT_BLACK_LIST
    server_channel_max_idle_time_seconds: int = Field(120, ge=1)
    cluster_test: bool = False
    product_env_name: str = "center"
    rocketmq_home: str = ""

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        return validate_namespace(v)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, v: str) -> str:
        v = v.upper()
        if v not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"unknown log level {v!r}")
        return v


ROCKETMQ_NAMES: dict[str, str] = {
    "listen_port": "listenPort",
    "scan_not_active_broker_interval": "scanNotActiveBrokerInterval",
    "order_message_enable": "orderMessageEnable",
    "return_order_topic_config_to_broker": "returnOrderTopicConfigToBroker",
    "support_acting_master": "supportActingMaster",
    "enable_all_topic_list": "enableAllTopicList",
    "enable_topic_list": "enableTopicList",
    "notify_min_broker_id_changed": "notifyMinBrokerIdChanged",
    "need_wait_for_service": "needWaitForService",
    "wait_seconds_for_service": "waitSecondsForService",
    "delete_topic_with_broker_registration": "deleteTopicWithBrokerRegistration",
    "config_black_list": "configBlackList",
    "server_channel_max_idle_time_seconds": "serverChannelMaxIdleTimeSeconds",
    "cluster_test": "clusterTest",
    "product_env_name": "productEnvName",
    "rocketmq_home": "rocketmqHome",
    "broker_timeout_ms": "brokerChannelExpiredTime",
    "redis_url": "redisUrl",
    "namespace": "namespace",
    "listen_host": "listenHost",
    "http_host": "httpHost",
    "http_port": "httpPort",
    "workers": "workers",
    "max_frame_bytes": "maxFrameBytes",
    "max_connections": "maxConnections",
    "route_cache_max_age_ms": "routeCacheMaxAgeMs",
    "log_level": "logLevel",
    "malloc_trim_threshold_mb": "mallocTrimThresholdMb",
    "admin_token": "adminToken",
}
FIELDS_BY_ROCKETMQ_NAME = {v: k for k, v in ROCKETMQ_NAMES.items()}

_SECRET = frozenset({"admin_token", "redis_url"})


def _field_name(key: str) -> str | None:
    key = key.strip()
    if key in Settings.model_fields:
        return key
    return FIELDS_BY_ROCKETMQ_NAME.get(key)


def _unescape(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n == "u" and i + 6 <= len(s):
                out.append(chr(int(s[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_properties(text: str) -> dict[str, str]:
    """Java ``.properties`` text (the subset RocketMQ writes and reads) to a dict."""
    props: dict[str, str] = {}
    logical: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].lstrip()
        i += 1
        if not logical and (not line or line[0] in "#!"):
            continue
        # a line ending in an odd number of backslashes continues
        stripped = line.rstrip("\r")
        trailing = len(stripped) - len(stripped.rstrip("\\"))
        if trailing % 2 == 1:
            logical.append(stripped[:-1])
            continue
        logical.append(stripped)
        entry = "".join(logical)
        logical = []
        key_end, j = len(entry), 0
        while j < len(entry):
            if entry[j] == "\\":
                j += 2
                continue
            if entry[j] in "=: \t":
                key_end = j
                break
            j += 1
        key = entry[:key_end]
        rest = entry[key_end:].lstrip(" \t")
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip(" \t")
        props[_unescape(key)] = _unescape(rest)
    return props


def _format_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    return str(v)


def to_properties_text(settings: Settings) -> str:
    """The options as RocketMQ's ``key=value`` lines (secrets and the Redis URL left out)."""
    lines = []
    for name in sorted(ROCKETMQ_NAMES, key=lambda n: ROCKETMQ_NAMES[n]):
        if name in _SECRET:
            continue
        lines.append(f"{ROCKETMQ_NAMES[name]}={_format_value(getattr(settings, name))}")
    return "\n".join(lines) + "\n"


def blacklisted_keys(settings: Settings, props: dict[str, str]) -> list[str]:
    black = {k.strip() for k in settings.config_black_list.split(";") if k.strip()}
    black.update(ALWAYS_BLACK_LISTED)
    return sorted(k for k in props if k.strip() in black)


def _read_file(path: str) -> dict[str, Any]:
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".toml":
        raw: dict[str, Any] = tomllib.loads(text)
    elif p.suffix == ".json":
        raw = json.loads(text)
    else:
        raw = dict(parse_properties(text))
    out: dict[str, Any] = {}
    for k, v in raw.items():
        name = _field_name(k)
        if name is None:
            raise ValueError(f"{path}: unknown option {k!r}")
        out[name] = v
    return out


def load_settings(
    config_file: str | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Defaults < config file < environment < ``overrides`` (the command line)."""
    file_values = _read_file(config_file) if config_file else {}
    try:
        env_only = Settings()
        env_set = env_only.model_fields_set
        merged = dict(file_values)
        merged.update({k: getattr(env_only, k) for k in env_set})
        merged.update(overrides or {})
        return Settings.model_validate(merged) if merged else env_only
    except ValidationError as e:
        err = e.errors()[0]
        raise ValueError(
            f"invalid option {'.'.join(map(str, err.get('loc', ())))}: {err.get('msg')}"
        ) from None
