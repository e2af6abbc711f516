"""The ``namesrv-redis admin`` command line: its verbs and options, without the code that runs
them (:mod:`namesrv_redis.admin.commands`, imported only when ``admin`` runs), so that every
other command — ``serve`` above all — parses its arguments without loading the admin's HTTP
client and its dependencies."""

from __future__ import annotations

import argparse
import os
from typing import Any

HELP = """mqadmin-like commands for any RocketMQ name server (Java or namesrv-redis).

exit codes:
  0  done: every name server asked answered SUCCESS
  1  a name server refused (SYSTEM_ERROR or another error response code)
  2  bad usage or input (missing option, malformed address or credentials)
  3  not found: TOPIC_NOT_EXIST or QUERY_NOT_FOUND
  4  unreachable: no name server of -n answered
  5  partial: a change reached some name servers of -n but not all
  6  no permission: NO_PERMISSION, e.g. a key in the server's configBlackList
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-n",
        "--namesrv-addr",
        default=os.environ.get("NAMESRV_ADDR"),
        help='name servers, "host:9876;host:9876" (default $NAMESRV_ADDR)',
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds per request (default 3)")
    p.add_argument("--access-key", default=os.environ.get("ROCKETMQ_ACCESS_KEY"))
    p.add_argument("--secret-key", default=os.environ.get("ROCKETMQ_SECRET_KEY"))
    p.add_argument(
        "--tools-yml",
        metavar="FILE",
        help="accessKey/secretKey file (default $ROCKETMQ_HOME/conf/tools.yml, as mqadmin)",
    )


def add_admin_parser(sub: Any) -> None:
    """Add ``admin`` and its verbs to the ``namesrv-redis`` parser's subcommands."""
    admin = sub.add_parser(
        "admin",
        help="mqadmin-like commands for any RocketMQ name server",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = admin.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help_: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = verbs.add_parser(name, help=help_, description=help_)
        _common(p)
        return p

    p = verb("clusterList", "brokers of each cluster")
    p.add_argument("-c", "--cluster", help="only this cluster")
    p = verb("brokerList", "every name server's brokers, with liveness where known")
    p.add_argument("-c", "--cluster", help="only this cluster")
    p.add_argument("--http", help="HTTP tier to read liveness from (default: the pod's own)")
    p = verb("topicRoute", "a topic's route")
    p.add_argument("-t", "--topic", required=True)
    p = verb("topicList", "all topics; -c adds clusters, -c NAME only that one")
    p.add_argument("-c", "--cluster", nargs="?", const="", default=None)
    p = verb("wipeWritePerm", "take write permission from a broker name")
    p.add_argument("-b", "--broker-name", required=True)
    p = verb("addWritePerm", "give write permission back to a broker name")
    p.add_argument("-b", "--broker-name", required=True)
    p = verb("deleteTopic", "delete a topic's route from every name server")
    p.add_argument("-t", "--topic", required=True)
    p.add_argument("-c", "--cluster", help="only the queues of this cluster (5.x)")
    p = verb("getKvConfig", "one KV config value")
    p.add_argument("-s", "--namespace", required=True)
    p.add_argument("-k", "--key", required=True)
    p = verb("updateKvConfig", "set a KV config value on every name server")
    p.add_argument("-s", "--namespace", required=True)
    p.add_argument("-k", "--key", required=True)
    p.add_argument("-v", "--value", required=True)
    p = verb("deleteKvConfig", "delete a KV config value on every name server")
    p.add_argument("-s", "--namespace", required=True)
    p.add_argument("-k", "--key", required=True)
    p = verb("copyKvConfig", "copy a KV namespace from -n to other servers")
    p.add_argument("-s", "--namespace", required=True)
    p.add_argument("--to", required=True, help='destination name servers, "host:port;host:port"')
    p = verb("kvList", "a KV config namespace")
    p.add_argument("-s", "--namespace", required=True)
    verb("getNamesrvConfig", "every name server's config")
    p = verb("updateNamesrvConfig", "set one config option everywhere")
    p.add_argument("-k", "--key", required=True)
    p.add_argument("-v", "--value", required=True)
    p = verb("watch", "print a topic's route each time it changes")
    p.add_argument("-t", "--topic", required=True)
    p.add_argument("--interval", type=float, default=2.0, help="poll period (default 2 s)")
    p.add_argument("--count", type=int, help="stop after this many changes")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--http", help="HTTP tier to take events from (default: the pod's own)")
