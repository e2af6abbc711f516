"""The ``namesrv-redis`` command: ``serve``, ``check``, ``bench`` and ``admin``.

Options also come from the environment (``NAMESRV_<OPTION>``) and from ``--config FILE``
(RocketMQ ``.properties`` names, or TOML/JSON); the command line wins.
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
from namesrv_redis.settings.config import Settings, load_settings

log = logging.getLogger("namesrv_redis")


def _common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="config file (.properties, .toml or .json)")
    p.add_argument(
        "--redis-url",
        help="redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL "
        "(default: start an embedded Redis); memory:// = in-process fakeredis, tests only",
    )
    p.add_argument("--namespace", help="name-server namespace inside Redis (default: default)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="namesrv-redis",
        description="A drop-in Apache RocketMQ name server whose route tables live in Redis.",
    )
    parser.add_argument("--version", action="version", version=f"namesrv-redis {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the name server (remoting and HTTP)")
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

    check = sub.add_parser("check", help="report broken invariants of a namespace")
    _common_options(check)
    check.add_argument(
        "--repair",
        action="store_true",
        help="fix the drift no connected broker vouches for, printing each change",
    )
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


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        name: getattr(args, name)
        for name in _OPTION_FIELDS
        if getattr(args, name, None) is not None
    }
    return load_settings(getattr(args, "config", None), overrides)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s",
    )


def cmd_serve(settings: Settings) -> int:
    from namesrv_redis.process.workers import serve
    from namesrv_redis.store.datadir import DataDirError

    try:
        return serve(settings)
    except DataDirError as e:
        print(f"namesrv-redis: {e}", file=sys.stderr)
        return 2


def cmd_check(settings: Settings, repair: bool = False) -> int:
    from namesrv_redis.store.check import check_and_repair
    from namesrv_redis.store.connection import create_redis, describe_url

    if not settings.redis_url:
        print("check needs --redis-url (or NAMESRV_REDIS_URL)", file=sys.stderr)
        return 2

    async def run() -> int:
        from namesrv_redis.store.redis_tls import redis_client_options

        url = settings.redis_url or ""
        client = create_redis(url, **redis_client_options(settings, url))
        try:
            problems = await check_and_repair(client, settings.namespace, repair=repair)
        finally:
            await client.aclose()
        where = f"{describe_url(settings.redis_url or '')} namespace {settings.namespace!r}"
        if problems:
            print(f"{len(problems)} problem(s) in {where}", file=sys.stderr)
            return 1
        print(f"consistent: {where}")
        return 0

    import asyncio  # not at the top: a --workers supervisor loads this module, not asyncio and ssl

    return asyncio.run(run())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        from namesrv_redis.bench.cli import run_bench

        configure_logging("WARNING")
        return run_bench(args)
    if args.command == "admin":
        from namesrv_redis.admin.commands import run_admin

        return run_admin(args)
    try:
        settings = settings_from_args(args)
    except ValueError as e:
        print(f"namesrv-redis: {e}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args.command == "serve":
        return cmd_serve(settings)
    if args.command == "acl":
        return cmd_acl(settings, args)
    return cmd_check(settings, repair=args.repair)


if __name__ == "__main__":
    sys.exit(main())
