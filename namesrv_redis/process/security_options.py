"""Command-line flags of the security options (TLS, ACL, HTTPS, Redis credentials and TLS),
and the ``namesrv-redis acl`` command that manages ACL credentials in Redis.

Every flag maps to a setting under RocketMQ's name where one exists (docs/security.md);
secrets are better given through the environment (``NAMESRV_REDIS_PASSWORD``…) than on a
command line that ``ps`` shows.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

REDIS_FIELDS = (
    "redis_username",
    "redis_password",
    "redis_tls",
    "redis_tls_ca_file",
    "redis_tls_cert_file",
    "redis_tls_key_file",
    "redis_sentinel_username",
    "redis_sentinel_password",
    "redis_sentinel_tls",
)
SERVE_FIELDS = (
    "tls_server_mode",
    "tls_server_cert_path",
    "tls_server_key_path",
    "tls_server_trust_cert_path",
    "tls_server_need_client_auth",
    "tls_test_mode_enable",
    "tls_config_file",
    "http_tls_enable",
    "allow_unauthenticated_admin",
    "acl_enable",
    "acl_bootstrap_file",
    "acl_require_signed_reads",
    "acl_broker_addr_allowlist",
    "acl_allow_unsigned_brokers",
)
SECURITY_FIELDS = SERVE_FIELDS + REDIS_FIELDS


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes", "on"):
        return True
    if text.lower() in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def add_redis_security_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Redis credentials and TLS")
    g.add_argument("--redis-username", help="Redis ACL user")
    g.add_argument("--redis-password", help="its password (prefer NAMESRV_REDIS_PASSWORD)")
    g.add_argument("--redis-tls", type=_bool, metavar="BOOL", help="TLS to Redis (rediss://: on)")
    g.add_argument("--redis-tls-ca-file", metavar="PEM", help="CA certificates Redis chains to")
    g.add_argument("--redis-tls-cert-file", metavar="PEM", help="client certificate")
    g.add_argument("--redis-tls-key-file", metavar="PEM", help="client certificate's key")
    g.add_argument("--redis-sentinel-username", help="the sentinels' ACL user")
    g.add_argument("--redis-sentinel-password", help="the sentinels' password")
    g.add_argument("--redis-sentinel-tls", type=_bool, metavar="BOOL", help="TLS to sentinels")


def add_serve_security_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("TLS, HTTPS and ACL (docs/security.md)")
    g.add_argument(
        "--tls-mode",
        dest="tls_server_mode",
        choices=("disabled", "permissive", "enforcing"),
        help="tls.server.mode (default permissive: TLS and plain clients on one port)",
    )
    g.add_argument("--tls-cert", dest="tls_server_cert_path", help="tls.server.certPath (PEM)")
    g.add_argument("--tls-key", dest="tls_server_key_path", help="tls.server.keyPath (PEM)")
    g.add_argument(
        "--tls-trust-cert", dest="tls_server_trust_cert_path", help="tls.server.trustCertPath"
    )
    g.add_argument(
        "--tls-need-client-auth",
        dest="tls_server_need_client_auth",
        choices=("none", "optional", "require"),
        help="tls.server.need.client.auth (mutual TLS)",
    )
    g.add_argument(
        "--tls-test-mode",
        dest="tls_test_mode_enable",
        type=_bool,
        metavar="BOOL",
        help="tls.test.mode.enable: self-signed certificate when none is set (default true)",
    )
    g.add_argument("--tls-config-file", help="tls.config.file (RocketMQ tls.properties)")
    g.add_argument(
        "--http-tls",
        dest="http_tls_enable",
        action="store_const",
        const=True,
        help="HTTPS for the HTTP tier, with the tls.server.* certificate",
    )
    g.add_argument(
        "--allow-unauthenticated-admin",
        action="store_const",
        const=True,
        help="serve HTTP admin calls without a token on a non-loopback address",
    )
    g.add_argument(
        "--acl",
        dest="acl_enable",
        action="store_const",
        const=True,
        help="aclEnable: mutating requests must carry a valid RocketMQ signature",
    )
    g.add_argument("--acl-bootstrap-file", help="credentials created at start (YAML/JSON)")
    g.add_argument(
        "--acl-require-signed-reads",
        action="store_const",
        const=True,
        help="reads must be signed too",
    )
    g.add_argument(
        "--acl-broker-allowlist",
        dest="acl_broker_addr_allowlist",
        help="address ranges brokers may register from, e.g. 10.0.0.0/8,192.168.1.0/24",
    )
    g.add_argument(
        "--acl-allow-unsigned-brokers",
        action="store_const",
        const=True,
        help="accept unsigned broker registrations/heartbeats from the allowlist (RocketMQ 4.x)",
    )


def add_acl_command(sub: Any, common: Any) -> None:
    acl = sub.add_parser("acl", help="list, add or remove ACL credentials (stored in Redis)")
    common(acl)
    add_redis_security_options(acl)
    acl.add_argument("action", choices=("list", "put", "delete"))
    acl.add_argument("access_key", nargs="?", help="accessKey (put, delete)")
    acl.add_argument("--secret-key", help="secretKey (put; default: read from stdin)")
    acl.add_argument("--permission", choices=("admin", "broker"), default="admin")


def cmd_acl(settings: Any, args: argparse.Namespace) -> int:
    from namesrv_redis.store.acl import AclStore, validate
    from namesrv_redis.store.connection import create_redis
    from namesrv_redis.store.redis_tls import redis_client_options
    from namesrv_redis.store.route_store import RouteStore

    if not settings.redis_url:
        print("acl needs --redis-url (or NAMESRV_REDIS_URL)", file=sys.stderr)
        return 2
    if args.action != "list" and not args.access_key:
        print(f"acl {args.action} needs an accessKey", file=sys.stderr)
        return 2

    async def run() -> int:
        url = settings.redis_url
        client = create_redis(url, **redis_client_options(settings, url))
        try:
            store = RouteStore(client, settings.namespace)
            acl = AclStore(store)
            if args.action == "list":
                for c in sorted((await acl.all()).values(), key=lambda c: c.access_key):
                    print(f"{c.access_key}\t{c.permission.value}")
                return 0
            if args.action == "delete":
                if not await acl.delete(args.access_key):
                    print(f"no credential {args.access_key!r}", file=sys.stderr)
                    return 1
                return 0
            secret = args.secret_key or sys.stdin.readline().rstrip("\n")
            try:
                cred = validate(args.access_key, secret, args.permission)
            except ValueError as e:
                print(f"namesrv-redis acl: {e}", file=sys.stderr)
                return 2
            await acl.put(cred)
            print(f"{cred.access_key}\t{cred.permission.value}")
            return 0
        finally:
            await client.aclose()

    import asyncio  # not at the top: a --workers supervisor loads this module, not asyncio and ssl

    return asyncio.run(run())
