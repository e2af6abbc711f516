"""Real RocketMQ 5.3.3 brokers in controller mode against two namesrv-redis pods: the failover
windows of docs/controller.md. Not run in CI: it needs an Apache RocketMQ 5.3.3 install
(built from the ``rocketmq-all-5.3.3`` source tag; ``--rmq5 DIR``, default ``/tmp/rmq5``) and
Java 17. The brokers' addresses are 127.0.0.1; whether their HA listeners bind only loopback
is up to that install's configuration.

Estate (all 127.0.0.1): one redis-server, two pods (``serve``; controllerAddr = namesrvAddr = both
pods), broker ``cfa`` (port 26911) and ``cfb`` (26931) of group ``bset``. It measures:
- messages before and after (e2e.sh: a 5.3.3 producer and consumer through the pods);
- ``mqadmin getControllerMetaData``, ``getSyncStateSet``, ``electMaster`` (2011 for the live
  master, a designated switch), ``cleanBrokerMetadata`` (2009 for a live broker, 0 for a dead one);
- ``kill -9`` of the master, ``--runs`` times (the killed broker restarts as a slave between
  runs): time until a pod's state names the slave master, and until GET_BROKER_CLUSTER_INFO
  routes it as broker id 0;
- SIGSTOP of the master: time until the slave is routed as id 0 (heartbeat timeout 10 s), then
  SIGCONT: time until the old master is no longer routed as id 0 (demoted).

    PYTHONPATH=. python scripts/controller_failover.py --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq import fastjson
from namesrv_redis.rocketmq.codes import RequestCode
from tests.conftest import RedisServerProcess
from tests.serverproc import NamesrvProcess

GROUP = "bset"
BROKERS = {"cfa": 26911, "cfb": 26931}


class Estate:
    def __init__(self, rmq5: Path) -> None:
        self.rmq5 = rmq5
        self.redis = RedisServerProcess().start()
        self.pods = [NamesrvProcess(self.redis.url, "ctrl").start() for _ in range(2)]
        self.addrs = [p.addr for p in self.pods]

    def start_broker(self, name: str) -> None:
        port = BROKERS[name]
        order = self.addrs if name == "cfa" else list(reversed(self.addrs))
        env = dict(
            os.environ,
            INSTANCE=name,
            BROKER_NAME=GROUP,
            BROKER_PORT=str(port),
            STORE_DIR=str(self.rmq5 / "store" / name),
            NAMESRV=";".join(order),
            CONTROLLER=";".join(order),
            BROKER_WAIT_S="120",
        )
        subprocess.run([str(self.rmq5 / "bin" / "start-controller-broker.sh")], env=env, check=True)

    def pid(self, name: str) -> int:
        return int((self.rmq5 / "run" / f"broker-{name}.pid").read_text())

    def mqadmin(self, *args: str) -> str:
        r = subprocess.run(
            [str(self.rmq5 / "bin" / "mqadmin.sh"), *args, "-a", self.addrs[0]],
            capture_output=True,
            text=True,
            timeout=120,
        )
        text = r.stdout + r.stderr
        lines = [
            ln
            for ln in text.splitlines()
            if ln.startswith("#") or "CODE:" in ln or "success" in ln.lower() or "InSync" in ln
        ]
        return "\n".join(lines[:12]) or text[-400:]

    def e2e(self, topic: str) -> str:
        r = subprocess.run(
            [str(self.rmq5 / "bin" / "e2e.sh"), ";".join(self.addrs), topic, "20", "90"],
            capture_output=True,
            text=True,
            timeout=150,
        )
        return (r.stdout.strip().splitlines() or ["no output"])[-1]

    def stop(self) -> None:
        for name in BROKERS:
            pidf = self.rmq5 / "run" / f"broker-{name}.pid"
            if pidf.exists():
                env = dict(os.environ, BROKER_NAME=name, BROKER_STOP_WAIT_S="30")
                subprocess.run([str(self.rmq5 / "bin" / "stop-broker.sh")], env=env, check=False)
        for p in self.pods:
            p.stop()
        self.redis.stop()


async def state(addr: str) -> tuple[dict[str, Any], dict[int, str]]:
    """(the group's 1006 entry, the routed brokerAddrs of the group) from one pod."""
    host, _, port = addr.rpartition(":")
    c = await RemotingClient.connect(host, int(port))
    try:
        r = await c.request(RequestCode.CONTROLLER_GET_SYNC_STATE_DATA, {}, b'["bset"]')
        info = fastjson.loads(r.body)["replicasInfoTable"].get(GROUP, {}) if r and r.body else {}
        r = await c.request(RequestCode.GET_BROKER_CLUSTER_INFO, {})
        table = fastjson.loads(r.body)["brokerAddrTable"] if r and r.body else {}
        addrs = {int(k): v for k, v in table.get(GROUP, {}).get("brokerAddrs", {}).items()}
    finally:
        await c.close()
    return info, addrs


def addr_of(name: str) -> str:
    return f"127.0.0.1:{BROKERS[name]}"


def name_at(addr: str) -> str:
    return next(n for n in BROKERS if addr_of(n) == addr)


async def wait_for(check: Any, within_s: float, poll_s: float = 0.005) -> float:
    t0 = time.time()
    while time.time() - t0 < within_s:
        if await check():
            return time.time()
        await asyncio.sleep(poll_s)
    raise TimeoutError("condition not reached")


async def settled(e: Estate) -> str:
    """Wait until both brokers are in the sync-state set; the master's name."""

    async def both_in_sync() -> bool:
        info, addrs = await state(e.addrs[1])
        return len(info.get("inSyncReplicas", [])) == 2 and 0 in addrs

    await wait_for(both_in_sync, 120, 0.5)
    info, _ = await state(e.addrs[1])
    return name_at(info["masterAddress"])


async def failover(e: Estate, sig: int) -> dict[str, float]:
    master = await settled(e)
    slave = next(n for n in BROKERS if n != master)
    old_epoch = (await state(e.addrs[1]))[0]["masterEpoch"]
    t0 = time.time()
    os.kill(e.pid(master), sig)
    t_elect = t_route = 0.0

    async def observe() -> bool:
        nonlocal t_elect, t_route
        info, addrs = await state(e.addrs[1])
        now = time.time()
        if not t_elect and info.get("masterEpoch", 0) > old_epoch:
            t_elect = now
        if not t_route and addrs.get(0) == addr_of(slave):
            t_route = now
        return bool(t_elect and t_route)

    await wait_for(observe, 60)
    out = {"elected_ms": (t_elect - t0) * 1000, "routed_id0_ms": (t_route - t0) * 1000}
    if sig == signal.SIGSTOP:
        t1 = time.time()
        os.kill(e.pid(master), signal.SIGCONT)

        async def demoted() -> bool:
            _, addrs = await state(e.addrs[0])
            return addrs.get(0) != addr_of(master) and addr_of(master) in addrs.values()

        out["demoted_after_cont_ms"] = (await wait_for(demoted, 60, 0.05) - t1) * 1000
    else:
        pid = e.pid(master)
        for _ in range(600):  # the JVM's teardown after SIGKILL, and its reaping
            if not Path(f"/proc/{pid}").exists():
                break
            await asyncio.sleep(0.05)
        e.start_broker(master)  # comes back as a slave of the new master
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rmq5", type=Path, default=Path("/tmp/rmq5"))
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    for name in BROKERS:
        shutil.rmtree(a.rmq5 / "store" / name, ignore_errors=True)
    e = Estate(a.rmq5)
    results: dict[str, Any] = {"pods": e.addrs}
    try:
        e.start_broker("cfa")
        e.start_broker("cfb")
        await settled(e)
        results["messages_before"] = e.e2e("CtrlBefore")
        results["getControllerMetaData"] = e.mqadmin("getControllerMetaData")
        results["getSyncStateSet"] = e.mqadmin("getSyncStateSet", "-b", GROUP)
        results["electMaster_live_master"] = e.mqadmin(
            "electMaster", "-b", "1", "-bn", GROUP, "-c", "DefaultCluster"
        )
        results["cleanBrokerMetadata_live"] = e.mqadmin(
            "cleanBrokerMetadata", "-bn", GROUP, "-b", "2", "-c", "DefaultCluster"
        )
        results["electMaster_switch_to_2"] = e.mqadmin(
            "electMaster", "-b", "2", "-bn", GROUP, "-c", "DefaultCluster"
        )
        kills: list[dict[str, float]] = []
        results["kill9"] = kills
        for _ in range(a.runs):
            kills.append(await failover(e, signal.SIGKILL))
        results["kill9_median_ms"] = {
            k: statistics.median(r[k] for r in kills) for k in ("elected_ms", "routed_id0_ms")
        }
        results["messages_after"] = e.e2e("CtrlAfter")
        results["sigstop"] = await failover(e, signal.SIGSTOP)
        # a dead broker's metadata can be cleaned
        await settled(e)
        info, _ = await state(e.addrs[0])
        slave = next(r for r in info["inSyncReplicas"] if r["brokerId"] != info["masterBrokerId"])
        os.kill(e.pid(name_at(slave["brokerAddress"])), signal.SIGKILL)
        await asyncio.sleep(1.0)
        results["cleanBrokerMetadata_dead"] = e.mqadmin(
            "cleanBrokerMetadata",
            "-bn",
            GROUP,
            "-b",
            str(slave["brokerId"]),
            "-c",
            "DefaultCluster",
        )
        results["getSyncStateSet_after_clean"] = e.mqadmin("getSyncStateSet", "-b", GROUP)
    finally:
        e.stop()
        text = json.dumps(results, indent=2)
        print(text)
        if a.out is not None:
            a.out.write_text(text + "\n")


if __name__ == "__main__":
    asyncio.run(main())
