"""Settings of a name-server pod, under RocketMQ's own option names where an option exists.

Sources, strongest first: command line, environment (``NAMESRV_<FIELD>`` in any case, e.g.
``NAMESRV_REDIS_URL``; read by :func:`environment_values`), a config file (a Java
``.properties`` file with RocketMQ's camelCase names such as ``listenPort=9876``, or TOML/JSON
with either spelling), defaults.
UPDATE_NAMESRV_CONFIG changes some of them at run time (:mod:`namesrv_redis.domain.runtime_config`)
and GET_NAMESRV_CONFIG reports them (:func:`to_properties_text`), as the Java NameServer does.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from namesrv_redis.settings.java_options import (
    JAVA_OPTIONS,
    MAPPED,
    ZERO_MEANS_DEFAULT,
    ignored_options,
    snake_case,
)
from namesrv_redis.settings.namespace import validate_namespace
from namesrv_redis.settings.persistence_modes import DEFAULT_MODE, validate_mode
from namesrv_redis.settings.redis_url import check_redis_url, mask_url
from namesrv_redis.settings.tls_modes import DEFAULT_TLS_CONFIG_FILE, parse_client_auth, parse_mode

DEFAULT_BLACK_LIST = "configBlackList;configStorePath;kvConfigPath"
ALWAYS_BLACK_LISTED = ("configBlackList", "configStorePath", "kvConfigPath", "rocketmqHome")


ENV_PREFIX = "NAMESRV_"


class Settings(BaseModel):
    """A pod's options. Constructing one reads nothing but its arguments; the sources are
    merged by :func:`load_settings`. (A plain model: pydantic-settings cost the pod 1–3 MB of
    RSS for reading environment variables.)"""

    model_config = ConfigDict(extra="ignore", frozen=False)

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
    log_format: str = "text"
    """``text`` (one line per record) or ``json`` (one JSON object per line)."""
    redis_startup_timeout_seconds: float = Field(60.0, ge=0, le=86_400)
    """How long ``serve`` keeps trying to reach Redis at start before it gives up (exit 4);
    0: one attempt."""
    redis_startup_backoff_max_millis: int = Field(2000, ge=10, le=60_000)
    """The longest pause between two start-up attempts (they start 100 ms apart and double)."""
    # Redis HA (docs/ha.md)
    redis_read_timeout_millis: int = Field(1000, ge=10, le=60_000)
    redis_write_timeout_millis: int = Field(2000, ge=10, le=60_000)
    redis_wait_replicas: int = Field(-1, ge=-1, le=16)
    redis_wait_timeout_millis: int = Field(1000, ge=1, le=60_000)
    redis_command_budget_millis: int = Field(50, ge=1, le=200)
    """The longest one of our scripts may block Redis: bigger writes go in chunks."""
    rebuild_on_data_loss: bool = True
    """Re-apply connected brokers' registrations when Redis loses the namespace's data."""
    reconcile_interval_ms: int = Field(30_000, ge=0)
    """Each connected broker's state in Redis is verified (and repaired) once per this; 0 =
    off (docs/ha.md, Repair)."""
    # remoting flow control and admission (docs/protocol.md, "Limits"); None: the default of
    # namesrv_redis.remoting.limits.FlowLimits
    flow_write_buffer_high: int | None = Field(None, ge=4096)
    flow_write_buffer_low: int | None = Field(None, ge=0)
    flow_connection_max_pending: int | None = Field(None, ge=1)
    flow_partial_frame_budget: int | None = Field(None, ge=1024 * 1024)
    flow_partial_frame_timeout_s: float | None = Field(None, gt=0)
    flow_route_max_running: int | None = Field(None, ge=1)
    flow_route_max_queued: int | None = Field(None, ge=0)
    flow_client_max_running: int | None = Field(None, ge=1)
    flow_client_max_queued: int | None = Field(None, ge=0)
    flow_broker_max_running: int | None = Field(None, ge=1)
    flow_broker_max_queued: int | None = Field(None, ge=0)
    flow_max_queue_wait_s: float | None = Field(None, gt=0)
    flow_offload_min_body: int | None = Field(None, ge=0)
    flow_register_body_max_inflated: int = Field(16 * 1024 * 1024, ge=1024 * 1024)
    # the embedded Redis (no redis_url): docs/persistence.md
    data_dir: str | None = None
    persistence: str = DEFAULT_MODE
    malloc_trim_threshold_mb: int = Field(1, ge=0)
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
    # remoting TLS, under RocketMQ's TlsSystemConfig names (docs/security.md)
    tls_server_mode: str = "permissive"
    tls_server_cert_path: str | None = None
    tls_server_key_path: str | None = None
    tls_server_key_password: SecretStr | None = None
    tls_server_trust_cert_path: str | None = None
    tls_server_need_client_auth: str = "none"
    tls_test_mode_enable: bool = True
    tls_config_file: str = DEFAULT_TLS_CONFIG_FILE
    tls_ciphers: str | None = None
    tls_reload_interval_seconds: float = Field(5.0, ge=0)
    http_tls_enable: bool = False
    http_preload_app: bool = False
    """Build the HTTP JSON API at start rather than on its first request (http/lazy_app.py)."""
    allow_unauthenticated_admin: bool = False
    # ACL: signatures of RocketMQ's AclClientRPCHook (docs/security.md)
    acl_enable: bool = False
    acl_bootstrap_file: str | None = None
    acl_require_signed_reads: bool = False
    acl_broker_addr_allowlist: str = ""
    acl_allow_unsigned_brokers: bool = False
    acl_refresh_ms: int = Field(1000, ge=0)
    # Redis credentials and TLS (docs/security.md)
    redis_username: str | None = None
    redis_password: SecretStr | None = None
    redis_tls: bool | None = None
    redis_tls_ca_file: str | None = None
    redis_tls_cert_file: str | None = None
    redis_tls_key_file: str | None = None
    redis_tls_key_password: SecretStr | None = None
    redis_tls_check_hostname: bool = True
    redis_sentinel_username: str | None = None
    redis_sentinel_password: SecretStr | None = None
    redis_sentinel_tls: bool | None = None
    # RocketMQ 5 Controller mode (docs/controller.md)
    controller_listen_port: int = Field(0, ge=0, le=65535)
    enable_elect_unclean_master: bool = False
    notify_broker_role_changed: bool = True
    scan_inactive_master_interval: int = Field(5000, ge=100)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        return validate_namespace(v)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        return check_redis_url(v) if v else None

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, v: str) -> str:
        v = v.lower()
        if v not in ("text", "json"):
            raise ValueError(f"unknown log format {v!r} (text or json)")
        return v

    @model_validator(mode="after")
    def _wait_within_write_deadline(self) -> Settings:
        if self.redis_wait_timeout_millis >= self.redis_write_timeout_millis:
            raise ValueError(
                "redisWaitTimeoutMillis must be below redisWriteTimeoutMillis (a write's "
                "deadline includes its replication confirmation)"
            )
        return self

    @field_validator("tls_server_mode")
    @classmethod
    def _tls_mode(cls, v: str) -> str:
        return parse_mode(v).value

    @field_validator("tls_server_need_client_auth")
    @classmethod
    def _tls_client_auth(cls, v: str) -> str:
        return parse_client_auth(v).value

    @field_validator("persistence")
    @classmethod
    def _persistence(cls, v: str) -> str:
        return validate_mode(v)

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
    "log_format": "logFormat",
    "redis_startup_timeout_seconds": "redisStartupTimeoutSeconds",
    "redis_startup_backoff_max_millis": "redisStartupBackoffMaxMillis",
    "redis_read_timeout_millis": "redisReadTimeoutMillis",
    "redis_write_timeout_millis": "redisWriteTimeoutMillis",
    "redis_wait_replicas": "redisWaitReplicas",
    "redis_wait_timeout_millis": "redisWaitTimeoutMillis",
    "redis_command_budget_millis": "redisCommandBudgetMillis",
    "rebuild_on_data_loss": "rebuildOnDataLoss",
    "reconcile_interval_ms": "reconcileIntervalMs",
    "malloc_trim_threshold_mb": "mallocTrimThresholdMb",
    "admin_token": "adminToken",
    "tls_server_mode": "tls.server.mode",
    "tls_server_cert_path": "tls.server.certPath",
    "tls_server_key_path": "tls.server.keyPath",
    "tls_server_key_password": "tls.server.keyPassword",
    "tls_server_trust_cert_path": "tls.server.trustCertPath",
    "tls_server_need_client_auth": "tls.server.need.client.auth",
    "tls_test_mode_enable": "tls.test.mode.enable",
    "tls_config_file": "tls.config.file",
    "tls_ciphers": "tls.ciphers",
    "tls_reload_interval_seconds": "tlsReloadIntervalSeconds",
    "http_tls_enable": "httpTlsEnable",
    "http_preload_app": "httpPreloadApp",
    "allow_unauthenticated_admin": "allowUnauthenticatedAdmin",
    "acl_enable": "aclEnable",
    "acl_bootstrap_file": "aclBootstrapFile",
    "acl_require_signed_reads": "aclRequireSignedReads",
    "acl_broker_addr_allowlist": "aclBrokerAddrAllowlist",
    "acl_allow_unsigned_brokers": "aclAllowUnsignedBrokers",
    "acl_refresh_ms": "aclRefreshMs",
    "redis_username": "redisUsername",
    "redis_password": "redisPassword",
    "redis_tls": "redisTls",
    "redis_tls_ca_file": "redisTlsCaFile",
    "redis_tls_cert_file": "redisTlsCertFile",
    "redis_tls_key_file": "redisTlsKeyFile",
    "redis_tls_key_password": "redisTlsKeyPassword",
    "redis_tls_check_hostname": "redisTlsCheckHostname",
    "redis_sentinel_username": "redisSentinelUsername",
    "redis_sentinel_password": "redisSentinelPassword",
    "redis_sentinel_tls": "redisSentinelTls",
    "data_dir": "dataDir",
    "persistence": "persistence",
    "controller_listen_port": "controllerListenPort",
    "enable_elect_unclean_master": "enableElectUncleanMaster",
    "notify_broker_role_changed": "notifyBrokerRoleChanged",
    "scan_inactive_master_interval": "scanInactiveMasterInterval",
}
FIELDS_BY_ROCKETMQ_NAME = {v: k for k, v in ROCKETMQ_NAMES.items()}
IGNORED_JAVA_OPTIONS = ignored_options(frozenset(FIELDS_BY_ROCKETMQ_NAME))
"""Java NameServer options accepted, reported once and ignored (no meaning here)."""
_JAVA_BY_SPELLING = {
    **{n: n for n in JAVA_OPTIONS},
    **{snake_case(n): n for n in JAVA_OPTIONS},
}

SECRET_FIELDS = frozenset(
    {
        "admin_token",
        "redis_url",
        "tls_server_key_password",
        "redis_password",
        "redis_tls_key_password",
        "redis_sentinel_password",
    }
)


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


def format_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    return str(v)


def to_properties_text(settings: Settings) -> str:
    """The options as RocketMQ's ``key=value`` lines (secrets and the Redis URL left out)."""
    lines = []
    for name in sorted(ROCKETMQ_NAMES, key=lambda n: ROCKETMQ_NAMES[n]):
        if name in SECRET_FIELDS:
            continue
        lines.append(f"{ROCKETMQ_NAMES[name]}={format_value(getattr(settings, name))}")
    return "\n".join(lines) + "\n"


def blacklisted_keys(settings: Settings, props: dict[str, str]) -> list[str]:
    black = {k.strip() for k in settings.config_black_list.split(";") if k.strip()}
    black.update(ALWAYS_BLACK_LISTED)
    return sorted(k for k in props if k.strip() in black)


@dataclass
class LoadedSettings:
    """Settings and where each value came from (``serve --print-config``)."""

    settings: Settings
    sources: dict[str, str] = field(default_factory=dict)
    """Field name → where its value came from; a field not in it has its default."""
    ignored: dict[str, str] = field(default_factory=dict)
    """Java option accepted but without a meaning here → where it was set."""


def _resolve(key: str) -> tuple[str | None, str | None]:
    """(our field, the Java name) an option key names; ValueError if it names neither."""
    name = _field_name(key)
    if name is not None:
        return name, None
    java = _JAVA_BY_SPELLING.get(key.strip())
    if java is None:
        raise KeyError(key)
    return MAPPED.get(java), java


class _Collected:
    """Option values gathered from one source after another (a later one wins)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.given: dict[str, Any] = {}
        """Field → the value as the source spelled it (for error messages)."""
        self.loaded = LoadedSettings(Settings.model_construct())

    def add(self, key: str, value: Any, source: str) -> None:
        """``key``: a field name, our RocketMQ name or a Java name (KeyError if none)."""
        name, java = _resolve(key)
        if java is not None and java in ZERO_MEANS_DEFAULT and str(value).strip() == "0":
            return  # Netty's "unset": our default too
        if name is None:
            self.loaded.ignored[java or key] = source
            return
        self.values[name] = value
        self.given[name] = value
        self.loaded.sources[name] = source


def _read_file(path: str, into: _Collected) -> None:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".toml":
            raw: dict[str, Any] = tomllib.loads(text)
        elif p.suffix == ".json":
            raw = json.loads(text)
        else:
            raw = dict(parse_properties(text))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ValueError(f"cannot read config file {path} (--config): {detail}") from None
    for k, v in raw.items():
        try:
            into.add(k, v, f"file {path}")
        except KeyError:
            raise ValueError(
                f"{path}: unknown option {k!r}: not an option of namesrv-redis nor of the "
                "Java NameServer (NamesrvConfig, NettyServerConfig); remove it or fix its "
                "name (`namesrv-redis serve --print-config` lists them)"
            ) from None


def env_name(name: str) -> str:
    """The environment variable of a field or of a Java option."""
    return ENV_PREFIX + (name if name in Settings.model_fields else snake_case(name)).upper()


def environment_values(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The options set as ``NAMESRV_<FIELD>`` variables (prefix and name in any case), by
    field name; values stay strings for the model to validate ("true", "1", "9876")."""
    return {k: v for k, (_, v) in _environment(environ).items() if k in Settings.model_fields}


def _environment(environ: Mapping[str, str] | None) -> dict[str, tuple[str, str]]:
    """Option key (a field name or a Java name) → (variable, value)."""
    out: dict[str, tuple[str, str]] = {}
    for key, value in (os.environ if environ is None else environ).items():
        if len(key) > len(ENV_PREFIX) and key[: len(ENV_PREFIX)].upper() == ENV_PREFIX:
            name = key[len(ENV_PREFIX) :].lower()
            if name in Settings.model_fields:
                out[name] = (key, value)
            elif name in _JAVA_BY_SPELLING:
                out[_JAVA_BY_SPELLING[name]] = (key, value)
    return out


def load_settings(
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults < config file < environment (``environ``, the process's by default) <
    ``overrides`` (the command line)."""
    return load_with_sources(config_file, overrides, environ).settings


def load_with_sources(
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    flags: Mapping[str, str] | None = None,
    extra_flags: Mapping[str, str] | None = None,
) -> LoadedSettings:
    """:func:`load_settings`, keeping where each value came from. ``flags``: the flag that
    set each field of ``overrides`` (``--listen-port``); ``extra_flags``: options given on the
    command line under a RocketMQ or Java name (``--serverWorkerThreads=8``).

    A bad value raises ValueError with one line naming the value, where it came from and what
    to do."""
    got = _Collected()
    if config_file:
        _read_file(config_file, got)
    for key, (var, value) in _environment(environ).items():
        got.add(key, value, f"environment variable {var}")
    for key, value in (extra_flags or {}).items():
        try:
            got.add(key, value, f"flag --{key}")
        except KeyError:
            raise ValueError(
                f"unknown option --{key}: not an option of namesrv-redis nor of the Java "
                "NameServer (see `namesrv-redis serve --help`)"
            ) from None
    for name, value in (overrides or {}).items():
        flag = (flags or {}).get(name) or "--" + name.replace("_", "-")
        got.add(name, value, f"flag {flag}")
    try:
        got.loaded.settings = Settings.model_validate(got.values)
    except ValidationError as e:
        raise ValueError(_explain(e, got)) from None
    return got.loaded


def _explain(e: ValidationError, got: _Collected) -> str:
    err = e.errors()[0]
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    loc = err.get("loc", ())
    name = str(loc[0]) if loc else ""
    if name not in Settings.model_fields:
        return f"invalid configuration: {msg}"
    option = ROCKETMQ_NAMES.get(name, name)
    given = repr(got.given.get(name))
    if name == "redis_url":
        given = repr(mask_url(str(got.given.get(name))))
    elif name in SECRET_FIELDS:
        given = "'***'"
    source = got.loaded.sources.get(name, "the default")
    elsewhere = f"{option} in a config file, {env_name(name)} in the environment"
    if source.startswith("environment variable "):
        todo = f"fix or unset {source.removeprefix('environment variable ')}"
        elsewhere = f"{option} in a config file"
    elif source.startswith("flag "):
        todo = f"fix {source.removeprefix('flag ')}"
    elif source.startswith("file "):
        todo = f"fix {option} in {source.removeprefix('file ')}"
        elsewhere = f"{env_name(name)} in the environment"
    else:
        todo = "set it"
    return f"invalid {option} {given} from {source}: {msg}; {todo} (also: {elsewhere})"
