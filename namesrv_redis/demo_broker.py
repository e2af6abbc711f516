"""``python -m namesrv_redis.demo_broker``: a stand-in broker for trying a name server out
without a JVM. It registers as a RocketMQ 4.9 broker does (REGISTER_BROKER with its topics),
re-registers every 30 s, and unregisters when stopped (SIGINT/SIGTERM). It serves no messages:
for a real estate run RocketMQ's ``mqbroker -n host:9876``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from namesrv_redis.admin.nameserver import parse_addresses, split_addr
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.sim.broker import SimBroker

REGISTER_INTERVAL_S = 30.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m namesrv_redis.demo_broker", description=__doc__)
    p.add_argument("-n", "--namesrv-addr", required=True, help='"host:9876;host:9876"')
    p.add_argument("-c", "--cluster", default="DefaultCluster")
    p.add_argument("-b", "--broker-name", default="broker-a")
    p.add_argument("--broker-id", type=int, default=0)
    p.add_argument("--addr", default="127.0.0.1:10911", help="the address it registers")
    p.add_argument("-t", "--topics", default="TopicTest", help="comma-separated topics")
    p.add_argument("--queues", type=int, default=8, help="read and write queues per topic")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    broker = SimBroker(args.cluster, args.broker_name, args.addr, broker_id=args.broker_id)
    topics = [t.strip() for t in args.topics.split(",") if t.strip()]
    # A broker always reports its system topics too; RocketMQ refuses a first one-topic body.
    broker.add_topics([*topics, "SELF_TEST_TOPIC"], queues=args.queues)
    clients: list[RemotingClient] = []
    for addr in parse_addresses(args.namesrv_addr):
        host, port = split_addr(addr)
        clients.append(await RemotingClient.connect(host, port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            for c in clients:
                answer = await broker.register(c)
                if answer.code != 0:
                    print(f"registration refused: {answer.remark}", file=sys.stderr)
                    return 1
            print(
                f"registered {args.cluster}/{args.broker_name} {args.addr} "
                f"with {len(clients)} name server(s): {', '.join(topics)}",
                flush=True,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REGISTER_INTERVAL_S)
    finally:
        for c in clients:
            with contextlib.suppress(Exception):
                await broker.unregister(c)
                await c.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args))
    except (OSError, ValueError) as e:
        print(f"demo_broker: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
