"""The options of ``namesrv-redis bench`` (argparse only: building the CLI parser must not
import the benchmark's machinery into every ``serve`` process)."""

from __future__ import annotations

import argparse

ROUTE_LOAD_SETTINGS = (
    "brokers",
    "topics",
    "connections",
    "pipeline",
    "duration",
    "warmup",
    "procs",
    "workers",
    "pin",
)
"""The options of a route load run that its JSON output repeats."""


def add_bench_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", help="host:port of a running name server (default: start one)")
    p.add_argument("--http-target", help="host:port of its HTTP tier")
    p.add_argument("--redis-url", help="Redis for the servers the bench starts (default: its own)")
    p.add_argument("--brokers", type=int, default=10)
    p.add_argument("--topics", type=int, default=1000, help="topics per broker")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--pipeline", type=int, default=16)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--procs", type=int, default=2, help="load generator processes")
    p.add_argument("--workers", type=int, default=1, help="server --workers")
    p.add_argument("--pin", action="store_true", help="server on CPU 1, generators on CPU 0")
    p.add_argument("--register-sizes", default="100,1000,10000")
    p.add_argument(
        "--memory-sizes",
        default="10000,100000",
        help="topics for the memory measurement, each on a fresh pod (not with --target)",
    )
    p.add_argument("--skip", default="", help="comma list of: baseline,http,register,memory")
    sub = p.add_subparsers(dest="bench_suite", metavar="{persistence,capacity,ceiling}")
    add_persistence_options(
        sub.add_parser(
            "persistence",
            help="cost and crash survival of each Redis persistence mode (docs/persistence.md)",
        )
    )
    add_capacity_options(
        sub.add_parser(
            "capacity",
            help="large estates, N pods on one Redis, storms and a sizing report "
            "(docs/capacity.md)",
        )
    )
    add_ceiling_options(
        sub.add_parser(
            "ceiling",
            help="cached route answers beside a constant-answer Python server and Redis GETs, "
            'same generator, same run (docs/benchmarks.md, "The limit")',
        )
    )


def add_ceiling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--brokers", type=int, default=10)
    p.add_argument("--topics", type=int, default=1000, help="topics per broker")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--pipeline", type=int, default=16)
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per server")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--procs", type=int, default=2, help="load generator processes")
    p.add_argument("--workers", type=int, default=1, help="the pod's --workers")
    p.add_argument("--pin", action="store_true", help="servers on CPU 1, generators on CPU 0")
    p.add_argument("--rounds", type=int, default=3, help="each server measured once per round")
    p.add_argument(
        "--java-ref",
        metavar="DIR",
        help="also measure the Java NameServer of a reference install (DIR/bin/start-namesrv.sh)",
    )
    p.add_argument("--json", metavar="FILE", help="write every round's results as JSON")


def add_persistence_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="a small run (a few minutes on 2 cores)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots (needs matplotlib)")
    p.add_argument(
        "--modes",
        help="comma list of: java-like,none,rdb,aof-everysec,aof-always (default: all)",
    )
    p.add_argument("--brokers", type=int, help="brokers registering (10; --quick 4)")
    p.add_argument("--topics", type=int, help="topics per broker (100; --quick 20)")
    p.add_argument("--load-seconds", type=float, help="load phase per mode (15; --quick 4)")
    p.add_argument("--reg-rate", type=float, help="registrations/s of the paced phase (200; 100)")
    p.add_argument("--route-rate", type=float, help="route reads/s of the paced phase (500; 300)")
    p.add_argument("--max-seconds", type=float, help="closed-loop phase per mode (8; --quick 3)")
    p.add_argument("--rounds", type=int, help="turns of the modes' load phases (3; --quick 2)")
    p.add_argument("--kills", type=int, help="kill -9 per mode (6; --quick 3)")
    p.add_argument("--route-conns", type=int, help="route reader connections (2)")
    p.add_argument("--seed", type=int, help="random seed of the kill moments (1)")
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="let the pods re-apply their connected brokers' registrations after a crash "
        "(rebuildOnDataLoss, docs/ha.md); off by default: the table shows what Redis keeps",
    )
    p.add_argument(
        "--workdir",
        help="where the Redis files go (default: the temp dir); bench the disk you deploy on",
    )


def add_capacity_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profiles",
        default="brokers,topics,clients",
        help="comma list of: brokers (1,000 x 100 topics), topics (100,000 over 10 brokers), "
        "clients (1,024 client connections)",
    )
    p.add_argument("--scale-out", default="1,2,4", help="pod counts of the scale-out runs")
    p.add_argument("--scale-profile", default="brokers", help="the profile run at each pod count")
    p.add_argument("--quick", action="store_true", help="small estates (a minute or two)")
    p.add_argument("--brokers", type=int, help="override the profiles' broker count")
    p.add_argument("--topics-per-broker", type=int, help="override the topics per broker")
    p.add_argument("--spread", type=int, help="override the brokers each topic lives on")
    p.add_argument("--clients", type=int, help="override the client connections")
    p.add_argument("--topics-per-client", type=int, default=4)
    p.add_argument(
        "--interval",
        type=float,
        default=3.0,
        help="registration period in seconds (RocketMQ: 30; timeouts and client polls scale)",
    )
    p.add_argument("--steady", type=float, default=10.0, help="steady window (s)")
    p.add_argument("--load", type=float, default=8.0, help="each closed-loop load window (s)")
    p.add_argument("--load-connections", type=int, default=8)
    p.add_argument("--pipeline", type=int, default=16)
    p.add_argument("--generator-procs", type=int, default=2)
    p.add_argument("--storm-spread", type=float, default=1.0, help="storm width (s)")
    p.add_argument("--dying", type=int, default=200, help="brokers of the rack that dies")
    p.add_argument("--change-probability", type=float, default=0.05)
    p.add_argument(
        "--heartbeat-interval",
        type=float,
        default=0.0,
        help="RocketMQ 5 BROKER_HEARTBEAT period (s); 0: registrations only, as 4.x",
    )
    p.add_argument("--workers", type=int, default=1, help="each pod's --workers")
    p.add_argument(
        "--cost-brokers", type=int, default=50, help="brokers of the cost phase (own names)"
    )
    p.add_argument("--cost-topics", type=int, default=100, help="topics of each cost broker")
    p.add_argument(
        "--cost-rounds",
        type=int,
        default=200,
        help="operations of each kind every cost broker sends every pod; 0 skips the phase",
    )
    p.add_argument(
        "--cost-paced-rate",
        type=float,
        default=300.0,
        help="operations a second of the cost phase's paced measurement; 0 skips it",
    )
    p.add_argument(
        "--cost-paced-seconds",
        type=float,
        default=4.0,
        help="seconds of each paced measurement",
    )
    p.add_argument(
        "--costs-only", action="store_true", help="measure the cost phase only, no estate"
    )
    p.add_argument("--no-http", action="store_true", help="skip the HTTP load window")
    p.add_argument("--redis-url", help="a Redis to use (default: a fresh one per scenario)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots (needs matplotlib)")
