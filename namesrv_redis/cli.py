"""The ``namesrv-redis`` command: ``serve``, ``check``, ``bench`` and ``admin``.

Options also come from the environment (``NAMESRV_<OPTION>``) and from ``--config FILE``
(RocketMQ ``.properties`` names, or TOML/JSON); the command line wins. ``serve`` also takes
any option under its RocketMQ or Java name (``--serverWorkerThreads=8``), as a Java
``namesrv.properties`` would set it. Every predictable failure is one line on stderr and an
exit code of :class:`~namesrv_redis.settings.exit_codes.ExitCode`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from namesrv_redis import __version__
from namesrv_redis.process.security_options import (
    SECURITY_FIELDS,
    add_acl_command,
    add_redis_security_options,
    add_serve_security_options,
    cmd_acl,
)
from namesrv_redis.settings.config import LoadedSettings, Settings, load_with_sources
from namesrv_redis.settings.exit_codes import EPILOG, ExitCode

log = logging.getLogger("namesrv_redis")

_VERSION = f"namesrv-redis {__version__}"


def _common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="config file (.properties, .toml or .json)")
    p.add_argument(
        "--redis-url",
        help="redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL "
        "(default: start an embedded Redis); memory:// = in-process fakeredis, tests only",
    )
    p.add_argument("--namespace", help="name-server namespace inside Redis (default: default)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")
    p.add_argument(
        "--log-format", choices=("text", "json"), help="text (default) or one JSON object a line"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="namesrv-redis",
        description="A drop-in Apache RocketMQ name server whose route tables live in Redis.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_VERSION)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the name server (remoting and HTTP)",
        epilog="Any option of a Java namesrv.properties is also accepted as --name=value "
        "(e.g. --serverWorkerThreads=8): mapped when it means something here, else ignored "
        "with one warning.\n\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--version", action="version", version=_VERSION)
    serve.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective configuration and where each value came from, then exit",
    )
    _common_options(serve)
    serve.add_argument("--listen-host", help="remoting bind address (default 0.0.0.0)")
    serve.add_argument("--listen-port", type=int, help="remoting port (default 9876)")
    serve.add_argument("--http-host", help="HTTP bind address (default 0.0.0.0)")
    serve.add_argument("--http-port", type=int, help="HTTP port (default 8080)")
    serve.add_argument("--workers", type=int, help="processes sharing the ports (default 1)")
    serve.add_argument("--admin-token", help="bearer token required by HTTP admin calls")
    serve.add_argument(
        "--redis-wait-replicas",
        type=int,
        help="replicas that must confirm each write (WAIT) before it is acknowledged; "
        "-1 (default): the master's replicas, capped at 1; 0: off (docs/ha.md)",
    )
    add_serve_security_options(serve)
    add_redis_security_options(serve)
    serve.add_argument("--data-dir", help="embedded Redis data directory (default ~/namesrv/redis)")
    serve.add_argument(
        "--persistence",
        choices=("none", "rdb", "aof-everysec", "aof-always"),
        help="embedded Redis persistence (default aof-everysec; docs/persistence.md)",
    )
    serve.add_argument(
        "--redis-startup-timeout",
        dest="redis_startup_timeout_seconds",
        type=float,
        metavar="SECONDS",
        help="keep trying to reach Redis at start this long, then exit 4 (default 60; 0: once)",
    )
    serve.add_argument(
        "--redis-startup-backoff-max",
        dest="redis_startup_backoff_max_millis",
        type=int,
        metavar="MILLIS",
        help="longest pause between start-up attempts (default 2000)",
    )

    check = sub.add_parser(
        "check",
        help="report broken invariants of a namespace",
        description="Check a namespace's tables in Redis: --redis-url, or else the embedded "
        "Redis a running `serve` keeps for --data-dir (default ~/namesrv/redis).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common_options(check)
    check.add_argument(
        "--repair",
        action="store_true",
        help="fix the drift no connected broker vouches for, printing each change",
    )
    check.add_argument("--data-dir", help="the embedded Redis' data directory to check")
    add_redis_security_options(check)
    add_acl_command(sub, _common_options)

    bench = sub.add_parser("bench", help="benchmark a name server (docs/benchmarks.md)")
    from namesrv_redis.bench.options import add_bench_options

    add_bench_options(bench)

    from namesrv_redis.admin.parser import add_admin_parser

    add_admin_parser(sub)
    return parser


_OPTION_FIELDS = (
    "redis_url",
    "namespace",
    "log_level",
    "log_format",
    "redis_startup_timeout_seconds",
    "redis_startup_backoff_max_millis",
    "listen_host",
    "listen_port",
    "http_host",
    "http_port",
    "workers",
    "admin_token",
    "redis_wait_replicas",
    *SECURITY_FIELDS,
    "data_dir",
    "persistence",
)


def _flags(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """Option field → the flag that sets it, for ``command``'s parser."""
    out: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            for a in action.choices[command]._actions:
                longs = [o for o in a.option_strings if o.startswith("--")]
                if longs:
                    out[a.dest] = longs[0]
    return out


def _extra_options(rest: Sequence[str]) -> dict[str, str]:
    """``--name=value`` / ``--name value`` pairs argparse did not know (RocketMQ names)."""
    out: dict[str, str] = {}
    items = list(rest)
    while items:
        item = items.pop(0)
        if not item.startswith("--") or len(item) < 3:
            raise ValueError(f"unexpected argument {item!r}")
        name, eq, value = item[2:].partition("=")
        if not eq:
            if not items or items[0].startswith("--"):
                raise ValueError(f"option --{name} needs a value (--{name}=VALUE)")
            value = items.pop(0)
        out[name] = value
    return out


def settings_from_args(
    args: argparse.Namespace,
    flags: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
) -> LoadedSettings:
    overrides: dict[str, Any] = {
        name: getattr(args, name)
        for name in _OPTION_FIELDS
        if getattr(args, name, None) is not None
    }
    return load_with_sources(
        getattr(args, "config", None), overrides, flags=flags, extra_flags=extra
    )


def configure_logging(level: str, log_format: str = "text") -> None:
    from namesrv_redis.process.logs import configure_logging as configure

    configure(level, log_format)


def fail(message: str, code: int) -> int:
    """One line on stderr; the exit code."""
    print(f"namesrv-redis: {message}", file=sys.stderr)
    return code


def cmd_serve(loaded: LoadedSettings) -> int:
    from namesrv_redis.process.workers import serve
    from namesrv_redis.settings.report import startup_line
    from namesrv_redis.store.datadir import DataDirError, EmbeddedRedisError

    settings = loaded.settings
    log.info("%s", startup_line(settings))
    if loaded.ignored:
        log.warning(
            "Java NameServer options without a meaning here, ignored: %s",
            ", ".join(f"{k} ({v})" for k, v in sorted(loaded.ignored.items())),
        )
    try:
        return serve(settings)
    except DataDirError as e:
        log.error("cannot start: %s", e)
        return ExitCode.USAGE
    except FileNotFoundError as e:  # no redis-server binary for the embedded default
        log.error("cannot start: %s", e)
        return ExitCode.USAGE
    except EmbeddedRedisError as e:
        log.error("cannot start: %s", e)
        return ExitCode.UNREACHABLE


def _check_target(settings: Settings) -> tuple[str | None, str]:
    """(the URL to check, or None; the one line to print when there is none)."""
    if settings.redis_url:
        return settings.redis_url, ""
    from namesrv_redis.store.datadir import default_data_dir, running_url

    if settings.persistence == "none":
        return None, (
            "no --redis-url (NAMESRV_REDIS_URL), and with --persistence none the embedded "
            "Redis has no data directory to find it by: pass --redis-url"
        )
    data_dir = settings.data_dir or str(default_data_dir())
    url = running_url(data_dir)
    if url is None:
        return None, (
            f"no embedded Redis is running for data directory {data_dir} (--data-dir, "
            "NAMESRV_DATA_DIR): start `namesrv-redis serve` on it, or pass --redis-url"
        )
    return url, ""


def cmd_check(settings: Settings, repair: bool = False) -> int:
    from redis.exceptions import RedisError

    from namesrv_redis.store.check import check_and_repair
    from namesrv_redis.store.connection import create_redis, describe_url

    url, why_not = _check_target(settings)
    if url is None:
        return fail(why_not, ExitCode.UNREACHABLE)

    async def run() -> int:
        from namesrv_redis.store.redis_tls import redis_client_options

        client = create_redis(url, **redis_client_options(settings, url))
        try:
            problems = await check_and_repair(client, settings.namespace, repair=repair)
        finally:
            await client.aclose()
        where = f"{describe_url(url)} namespace {settings.namespace!r}"
        if problems:
            print(f"{len(problems)} problem(s) in {where}", file=sys.stderr)
            return ExitCode.PROBLEMS
        print(f"consistent: {where}")
        return ExitCode.OK

    import asyncio  # not at the top: a --workers supervisor loads this module, not asyncio and ssl

    try:
        return asyncio.run(run())
    except (RedisError, OSError) as e:
        return redis_unreachable(url, e)


def redis_unreachable(url: str, e: Exception) -> int:
    """The one line for a Redis that does not answer a command; exit 4."""
    from namesrv_redis.store.connection import describe_url

    return fail(
        f"cannot reach Redis at {describe_url(url)}: {str(e).strip() or type(e).__name__}"
        " (start it, or fix --redis-url / NAMESRV_REDIS_URL)",
        ExitCode.UNREACHABLE,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "serve":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "bench":
        from namesrv_redis.bench.cli import run_bench

        configure_logging("WARNING")
        return run_bench(args)
    if args.command == "admin":
        from namesrv_redis.admin.commands import run_admin

        return run_admin(args)
    try:
        loaded = settings_from_args(args, _flags(parser, args.command), _extra_options(rest))
    except ValueError as e:
        return fail(str(e), ExitCode.USAGE)
    settings = loaded.settings
    if getattr(args, "print_config", False):
        from namesrv_redis.settings.report import print_config_text

        sys.stdout.write(print_config_text(loaded))
        return ExitCode.OK
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "serve":
        return cmd_serve(loaded)
    if args.command == "acl":
        from redis.exceptions import RedisError

        try:
            return cmd_acl(settings, args)
        except (RedisError, OSError) as e:
            return redis_unreachable(settings.redis_url or "embedded", e)
    return cmd_check(settings, repair=args.repair)


if __name__ == "__main__":
    sys.exit(main())
