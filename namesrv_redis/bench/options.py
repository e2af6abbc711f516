"""The options of ``namesrv-redis bench`` (argparse only: building the CLI parser must not
import the benchmark's machinery into every ``serve`` process)."""

from __future__ import annotations

import argparse


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
    sub = p.add_subparsers(dest="bench_suite", metavar="{persistence}")
    add_persistence_options(
        sub.add_parser(
            "persistence",
            help="cost and crash survival of each Redis persistence mode (docs/persistence.md)",
        )
    )


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
