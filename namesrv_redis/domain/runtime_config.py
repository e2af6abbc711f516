"""UPDATE_NAMESRV_CONFIG: which options may change at run time, and their bounds.

The Java NameServer sets any field of NamesrvConfig / NettyServerConfig by reflection and
silently ignores what it cannot parse; only options it reads again after start-up take effect.
Here an update is all or nothing: every key must be an option of :data:`RUNTIME_OPTIONS` with a
valid value, or the request is refused with a remark naming each refused key and nothing
changes. Accepted options are stored in Redis and every pod applies them on the ``config``
event (:mod:`namesrv_redis.process.pod`). namesrv-redis's own options (``brokerChannelExpiredTime``,
``routeCacheMaxAgeMs``, Redis, ports, secrets) are not RocketMQ options and never change over
the wire: they come from the config file, environment or command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from namesrv_redis.rocketmq.bounds import JAVA_INT_MAX
from namesrv_redis.settings.config import FIELDS_BY_ROCKETMQ_NAME, ROCKETMQ_NAMES, Settings


@dataclass(frozen=True, slots=True)
class Option:
    kind: type
    low: int = 0
    high: int = JAVA_INT_MAX


RUNTIME_OPTIONS: dict[str, Option] = {
    # read per request (as Java does)
    "order_message_enable": Option(bool),
    "return_order_topic_config_to_broker": Option(bool),
    "support_acting_master": Option(bool),
    "enable_all_topic_list": Option(bool),
    "enable_topic_list": Option(bool),
    "notify_min_broker_id_changed": Option(bool),
    "need_wait_for_service": Option(bool),
    "wait_seconds_for_service": Option(int, 0, 86_400),
    "delete_topic_with_broker_registration": Option(bool),
    "cluster_test": Option(bool),
    "product_env_name": Option(str),
    # applied to the running pod: the sweeper's period, the idle timeout of connections
    "scan_not_active_broker_interval": Option(int, 50, 3_600_000),
    "server_channel_max_idle_time_seconds": Option(int, 1, 604_800),
    # RocketMQ 5 Controller mode (UPDATE_CONTROLLER_CONFIG, domain/controller.py)
    "enable_elect_unclean_master": Option(bool),
    "notify_broker_role_changed": Option(bool),
    "scan_inactive_master_interval": Option(int, 100, 3_600_000),
}
"""Field name -> type and bounds of every option UPDATE_NAMESRV_CONFIG may change."""


class ConfigRefused(ValueError):
    """An update with at least one key that may not change (or a bad value)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def _field(key: str) -> str | None:
    key = key.strip()
    if key in ROCKETMQ_NAMES:
        return key
    return FIELDS_BY_ROCKETMQ_NAME.get(key)


def _parse(key: str, option: Option, raw: str) -> Any:
    value = raw.strip()
    if option.kind is bool:
        if value.lower() not in ("true", "false"):
            raise ValueError(f"{key}={raw!r}: must be true or false")
        return value.lower() == "true"
    if option.kind is int:
        if not value.lstrip("-").isdigit() or not value.isascii():
            raise ValueError(f"{key}={raw!r}: must be an integer")
        n = int(value)
        if not option.low <= n <= option.high:
            raise ValueError(f"{key}={n}: must lie in [{option.low}, {option.high}]")
        return n
    return value


def check_update(props: dict[str, str]) -> dict[str, Any]:
    """Field name -> parsed value of every option of ``props``; raises :class:`ConfigRefused`
    naming every key that is unknown, may not change at run time, or has a bad value."""
    updates: dict[str, Any] = {}
    reasons: list[str] = []
    for key, raw in props.items():
        name = _field(key)
        if name is None:
            reasons.append(f"{key}: unknown option")
            continue
        option = RUNTIME_OPTIONS.get(name)
        if option is None:
            reasons.append(f"{key}: cannot be changed at run time (set it at start-up)")
            continue
        try:
            updates[name] = _parse(key, option, raw)
        except ValueError as e:
            reasons.append(str(e))
    if reasons:
        raise ConfigRefused(reasons)
    return updates


def apply_update(settings: Settings, props: dict[str, str]) -> tuple[Settings, dict[str, str]]:
    """The settings with ``props`` applied, and the options whose value changed (RocketMQ
    name -> canonical text, what is stored in Redis). All or nothing: raises
    :class:`ConfigRefused` when any key is refused."""
    updates = check_update(props)
    changed = {
        ROCKETMQ_NAMES[name]: _text(value)
        for name, value in updates.items()
        if getattr(settings, name) != value
    }
    if not changed:
        return settings, {}
    return settings.model_copy(update=updates), changed


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def apply_stored(settings: Settings, stored: dict[str, str]) -> tuple[Settings, list[str]]:
    """Apply the options stored in Redis key by key (a pod re-reading them): keys refused
    today (stored by an older version, e.g. ``brokerChannelExpiredTime``) are skipped and
    returned, never applied."""
    accepted: dict[str, Any] = {}
    skipped: list[str] = []
    for key, raw in stored.items():
        try:
            accepted.update(check_update({key: raw}))
        except ConfigRefused:
            skipped.append(key)
    return (settings.model_copy(update=accepted) if accepted else settings), skipped
