"""``namesrv-redis admin VERB``: what each verb does and its exit codes (the command line is
:mod:`namesrv_redis.admin.parser`).

Exit codes (mqadmin exits 0 for almost everything; these tell a script what happened):

==  =====================================================================================
0   done: every name server asked answered SUCCESS
1   a name server refused (SYSTEM_ERROR and any other error response code)
2   bad usage or bad input (unknown verb, missing option, malformed address or credentials)
3   not found: TOPIC_NOT_EXIST (17) or QUERY_NOT_FOUND (22)
4   unreachable: no name server of ``-n`` answered (connection refused, timeout)
5   partial: a change reached some name servers of ``-n`` but not all
6   no permission: NO_PERMISSION (16), e.g. a key in the server's configBlackList
==  =====================================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from namesrv_redis.admin import nameserver as nsv
from namesrv_redis.admin import render, routes
from namesrv_redis.admin.nameserver import AdminError, NameServers, Outcome, Refused, Unreachable
from namesrv_redis.admin.ours import http_base, liveness
from namesrv_redis.admin.signing import load_credentials
from namesrv_redis.admin.watch import WatchOptions, watch
from namesrv_redis.rocketmq.codes import RequestCode, ResponseCode

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNREACHABLE = 4
EXIT_PARTIAL = 5
EXIT_NO_PERMISSION = 6


Verb = Callable[[NameServers, argparse.Namespace], Awaitable[int]]


def exit_code_of(error: AdminError) -> int:
    if isinstance(error, Unreachable):
        return EXIT_UNREACHABLE
    if isinstance(error, Refused):
        if error.code in (ResponseCode.TOPIC_NOT_EXIST, ResponseCode.QUERY_NOT_FOUND):
            return EXIT_NOT_FOUND
        if error.code == ResponseCode.NO_PERMISSION:
            return EXIT_NO_PERMISSION
    return EXIT_REFUSED


def _fanout_exit(outcomes: Sequence[Outcome]) -> int:
    failed = [o for o in outcomes if o.error is not None]
    for o in failed:
        print(str(o.error), file=sys.stderr)
    if not failed:
        return EXIT_OK
    if len(failed) < len(outcomes):
        return EXIT_PARTIAL
    assert failed[0].error is not None
    return exit_code_of(failed[0].error)


def _fanout_print(args: argparse.Namespace, outcomes: Sequence[Outcome], what: str) -> int:
    if args.json:
        render.as_json(
            [
                {"nameServer": o.addr, "ok": o.ok, "error": None if o.ok else str(o.error)}
                for o in outcomes
            ]
        )
    else:
        render.table(
            ("Name Server", "Result"),
            [[o.addr, f"{what} OK" if o.ok else f"FAILED: {o.error}"] for o in outcomes],
        )
    return _fanout_exit(outcomes)


# ------------------------------------------------------------------ clusters and brokers


def _broker_rows(info: dict[str, Any], cluster: str | None) -> list[tuple[str, str, int, str]]:
    rows = []
    for cname, names in sorted(info["clusterAddrTable"].items()):
        if cluster is not None and cname != cluster:
            continue
        for name in sorted(names):
            bd = info["brokerAddrTable"].get(name) or {}
            for bid, addr in sorted((int(k), v) for k, v in (bd.get("brokerAddrs") or {}).items()):
                rows.append((cname, name, bid, str(addr)))
    return rows


async def cluster_list(ns: NameServers, args: argparse.Namespace) -> int:
    addr, info = await nsv.cluster_info(ns)
    rows = _broker_rows(info, args.cluster)
    if args.cluster is not None and not rows:
        print(f"{addr}: no cluster {args.cluster!r}", file=sys.stderr)
        return EXIT_NOT_FOUND
    if args.json:
        render.as_json({"nameServer": addr, **info})
    else:
        render.table(("Cluster Name", "Broker Name", "BID", "Addr"), rows)
    return EXIT_OK


async def broker_list(ns: NameServers, args: argparse.Namespace) -> int:
    """Every name server's view of the brokers, with liveness where the server tells it."""
    table: list[list[Any]] = []
    docs: list[dict[str, Any]] = []
    errors: list[AdminError] = []
    for addr in ns.addrs:
        try:
            _, info = await nsv.cluster_info(ns, addr)
        except AdminError as e:
            errors.append(e)
            print(str(e), file=sys.stderr)
            continue
        base = await http_base(ns, addr, args.http)
        live: dict[str, Any] = {}
        if base is not None:
            try:
                live = await liveness(base, ns.timeout)
            except AdminError as e:
                print(f"{addr}: liveness unavailable: {e}", file=sys.stderr)
        for cname, name, bid, baddr in _broker_rows(info, args.cluster):
            lv = live.get(baddr)
            expires = lv.seconds_left if lv is not None else None
            dv = lv.data_version if lv is not None else None
            docs.append(
                {
                    "nameServer": addr,
                    "cluster": cname,
                    "brokerName": name,
                    "brokerId": bid,
                    "addr": baddr,
                    "expiresInSeconds": expires,
                    "dataVersion": dv,
                }
            )
            table.append(
                [
                    addr,
                    cname,
                    name,
                    bid,
                    baddr,
                    f"{expires:.1f}" if expires is not None else "-",
                    (dv or {}).get("counter", "-") if dv else "-",
                ]
            )
    if args.json:
        render.as_json(docs)
    else:
        render.table(
            ("Name Server", "Cluster Name", "Broker Name", "BID", "Addr", "Expires(s)", "DataVer"),
            table,
        )
    if errors:
        return EXIT_PARTIAL if len(errors) < len(ns.addrs) else exit_code_of(errors[0])
    return EXIT_OK


async def _write_perm(ns: NameServers, args: argparse.Namespace, enable: bool) -> int:
    code = RequestCode.ADD_WRITE_PERM_OF_BROKER if enable else RequestCode.WIPE_WRITE_PERM_OF_BROKER
    field = "addTopicCount" if enable else "wipeTopicCount"
    outcomes = await ns.call_all(code, {"brokerName": args.broker_name})
    if args.json:
        render.as_json(
            [
                {
                    "nameServer": o.addr,
                    "brokerName": args.broker_name,
                    "ok": o.ok,
                    "topicCount": int((o.response.ext_fields or {}).get(field, 0))
                    if o.response
                    else None,
                    "error": None if o.ok else str(o.error),
                }
                for o in outcomes
            ]
        )
    else:
        verb = "add" if enable else "wipe"
        render.table(
            ("Name Server", "Broker Name", "Result", "Topics Changed"),
            [
                [
                    o.addr,
                    args.broker_name,
                    f"{verb} write perm OK" if o.ok else f"FAILED: {o.error}",
                    (o.response.ext_fields or {}).get(field, "0") if o.response else "-",
                ]
                for o in outcomes
            ],
        )
    return _fanout_exit(outcomes)


async def wipe_write_perm(ns: NameServers, args: argparse.Namespace) -> int:
    return await _write_perm(ns, args, enable=False)


async def add_write_perm(ns: NameServers, args: argparse.Namespace) -> int:
    return await _write_perm(ns, args, enable=True)


# ------------------------------------------------------------------ topics


async def topic_route(ns: NameServers, args: argparse.Namespace) -> int:
    _, route = await nsv.topic_route(ns, args.topic)
    if args.json:
        render.as_json(route)
    else:
        render.table(routes.ROUTE_HEADERS, routes.route_rows(route))
    return EXIT_OK


async def topic_list(ns: NameServers, args: argparse.Namespace) -> int:
    if args.cluster is None:
        _, topics = await nsv.topic_list(ns)
        if args.json:
            render.as_json(topics)
        else:
            for t in topics:
                print(t)
        return EXIT_OK
    if args.cluster == "":
        _, info = await nsv.cluster_info(ns)
        clusters = sorted(info["clusterAddrTable"])
    else:
        clusters = [args.cluster]
    pairs = []
    for c in clusters:
        _, topics = await nsv.topic_list(ns, c)
        pairs += [(c, t) for t in topics]
    if args.json:
        render.as_json([{"cluster": c, "topic": t} for c, t in pairs])
    else:
        render.table(("Cluster Name", "Topic"), pairs)
    return EXIT_OK


async def delete_topic(ns: NameServers, args: argparse.Namespace) -> int:
    fields = {"topic": args.topic}
    if args.cluster:
        fields["clusterName"] = args.cluster
    outcomes = await ns.call_all(RequestCode.DELETE_TOPIC_IN_NAMESRV, fields)
    return _fanout_print(args, outcomes, f"delete topic {args.topic}")


# ------------------------------------------------------------------ KV config


async def get_kv_config(ns: NameServers, args: argparse.Namespace) -> int:
    _, value = await nsv.kv_get(ns, args.namespace, args.key)
    if args.json:
        render.as_json({"namespace": args.namespace, "key": args.key, "value": value})
    else:
        print(value if value is not None else "")
    return EXIT_OK


async def update_kv_config(ns: NameServers, args: argparse.Namespace) -> int:
    fields = {"namespace": args.namespace, "key": args.key, "value": args.value}
    outcomes = await ns.call_all(RequestCode.PUT_KV_CONFIG, fields)
    return _fanout_print(args, outcomes, f"update {args.namespace}/{args.key}")


async def delete_kv_config(ns: NameServers, args: argparse.Namespace) -> int:
    fields = {"namespace": args.namespace, "key": args.key}
    outcomes = await ns.call_all(RequestCode.DELETE_KV_CONFIG, fields)
    return _fanout_print(args, outcomes, f"delete {args.namespace}/{args.key}")


async def copy_kv_config(ns: NameServers, args: argparse.Namespace) -> int:
    """A KV namespace read from ``-n`` (the first that answers) written to every ``--to``
    name server: how KV config moves off a Java NameServer (its kvConfig.json)."""
    source, table = await nsv.kv_list(ns, args.namespace)
    targets = nsv.parse_addresses(args.to)
    outcomes: list[Outcome] = []
    async with NameServers(targets, ns.credentials, timeout=ns.timeout) as dest:
        for key, value in sorted(table.items()):
            fields = {"namespace": args.namespace, "key": key, "value": value}
            for o in await dest.call_all(RequestCode.PUT_KV_CONFIG, fields):
                outcomes.append(o)
    if args.json:
        render.as_json(
            [
                {"nameServer": o.addr, "ok": o.ok, "error": None if o.ok else str(o.error)}
                for o in outcomes
            ]
        )
    else:
        print(
            f"copied {len(table)} key(s) of {args.namespace} from {source} to {', '.join(targets)}"
        )
    return _fanout_exit(outcomes)


async def kv_list(ns: NameServers, args: argparse.Namespace) -> int:
    _, table = await nsv.kv_list(ns, args.namespace)
    if args.json:
        render.as_json({"namespace": args.namespace, "table": table})
    else:
        render.table(("Key", "Value"), sorted(table.items()))
    return EXIT_OK


# ------------------------------------------------------------------ name-server config


async def get_namesrv_config(ns: NameServers, args: argparse.Namespace) -> int:
    configs: dict[str, dict[str, str]] = {}
    errors: list[AdminError] = []
    for addr in ns.addrs:
        try:
            configs[addr] = await nsv.namesrv_config(ns, addr)
        except AdminError as e:
            errors.append(e)
            print(str(e), file=sys.stderr)
    if args.json:
        render.as_json(configs)
    else:
        for addr, config in configs.items():
            print(f"============{addr}============")  # mqadmin's section header
            width = max((len(k) for k in config), default=0)
            for k in sorted(config):
                print(f"{k.ljust(width)} = {config[k]}")
    if errors:
        return EXIT_PARTIAL if configs else exit_code_of(errors[0])
    return EXIT_OK


async def update_namesrv_config(ns: NameServers, args: argparse.Namespace) -> int:
    if any(c in args.key for c in "=:\n") or "\n" in args.value:
        raise ValueError("a config key cannot hold '=', ':' or a newline; a value no newline")
    body = f"{args.key}={args.value}".encode()
    outcomes = await ns.call_all(RequestCode.UPDATE_NAMESRV_CONFIG, None, body)
    return _fanout_print(args, outcomes, f"update {args.key}")


# ------------------------------------------------------------------ watch


async def watch_topic(ns: NameServers, args: argparse.Namespace) -> int:
    opts = WatchOptions(
        topic=args.topic,
        interval=args.interval,
        count=args.count,
        duration=args.duration,
        http=args.http,
        json=args.json,
    )
    failed = await watch(ns, opts)
    if failed:
        return EXIT_PARTIAL if failed < len(ns.addrs) else EXIT_UNREACHABLE
    return EXIT_OK


# ------------------------------------------------------------------ verbs

VERBS: dict[str, Verb] = {
    "clusterList": cluster_list,
    "brokerList": broker_list,
    "topicRoute": topic_route,
    "topicList": topic_list,
    "wipeWritePerm": wipe_write_perm,
    "addWritePerm": add_write_perm,
    "deleteTopic": delete_topic,
    "getKvConfig": get_kv_config,
    "updateKvConfig": update_kv_config,
    "deleteKvConfig": delete_kv_config,
    "copyKvConfig": copy_kv_config,
    "kvList": kv_list,
    "getNamesrvConfig": get_namesrv_config,
    "updateNamesrvConfig": update_namesrv_config,
    "watch": watch_topic,
}
"""The function of each verb of :mod:`namesrv_redis.admin.parser`."""


def run_admin(args: argparse.Namespace) -> int:
    """Run the verb parsed into ``args``; returns the exit code."""
    try:
        if not args.namesrv_addr:
            raise ValueError("no name server: give -n host:9876 or set NAMESRV_ADDR")
        addrs = nsv.parse_addresses(args.namesrv_addr)
        credentials = load_credentials(args.access_key, args.secret_key, args.tools_yml)
    except ValueError as e:
        print(f"namesrv-redis admin: {e}", file=sys.stderr)
        return EXIT_USAGE

    async def go() -> int:
        async with NameServers(addrs, credentials, timeout=args.timeout) as ns:
            return int(await VERBS[args.verb](ns, args))

    try:
        return asyncio.run(go())
    except AdminError as e:
        print(str(e), file=sys.stderr)
        return exit_code_of(e)
    except ValueError as e:
        print(f"namesrv-redis admin: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
