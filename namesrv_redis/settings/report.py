"""What a pod is about to run with, in words: ``serve --print-config`` (every option, its
value and where it came from, as ``mqnamesrv -p`` prints its configuration) and the first
log line of ``serve``."""

from __future__ import annotations

from namesrv_redis import __version__
from namesrv_redis.settings.config import (
    ROCKETMQ_NAMES,
    SECRET_FIELDS,
    LoadedSettings,
    Settings,
    format_value,
)
from namesrv_redis.settings.redis_url import mask_url, redis_mode


def print_config_text(loaded: LoadedSettings) -> str:
    """``name=value  # source`` for every option (RocketMQ names, sorted), secrets masked,
    then the Java options that were given but mean nothing here."""
    s = loaded.settings
    lines = [f"# namesrv-redis {__version__}: effective configuration"]
    for name in sorted(ROCKETMQ_NAMES, key=lambda n: ROCKETMQ_NAMES[n].lower()):
        value = getattr(s, name)
        if name == "redis_url" and value:
            text = mask_url(value)
        elif name in SECRET_FIELDS and value is not None:
            text = "***"
        else:
            text = format_value(value)
        lines.append(f"{ROCKETMQ_NAMES[name]}={text}  # {loaded.sources.get(name, 'default')}")
    for java, source in sorted(loaded.ignored.items()):
        lines.append(f"# {java}: ignored, no meaning here ({source})")
    return "\n".join(lines) + "\n"


def startup_line(s: Settings) -> str:
    """The first log line of ``serve``: the version and the mode it runs in."""
    mode = redis_mode(s.redis_url)
    if mode == "embedded":
        where = f"data dir {s.data_dir or '~/namesrv/redis'}" if s.persistence != "none" else ""
        redis = f"embedded Redis (persistence {s.persistence}{', ' + where if where else ''})"
    elif mode == "memory":
        redis = "memory:// (in this process only, nothing kept: tests)"
    else:
        redis = f"{mode} Redis {mask_url(s.redis_url or '')} (persistence as that server keeps it)"
    return (
        f"namesrv-redis {__version__} starting: {redis}, namespace {s.namespace!r}, "
        f"workers {s.workers}, remoting {s.listen_host}:{s.listen_port} "
        f"(TLS {s.tls_server_mode}), HTTP {s.http_host}:{s.http_port} "
        f"({'HTTPS' if s.http_tls_enable else 'plain'})"
    )
