"""A soak of a real ``namesrv-redis serve`` on a real redis-server under mixed load, printing
the pod's RSS, Redis' memory and latencies over time, and flagging growth.

    python scripts/soak.py --minutes 30 [--report-every 60]

Load, all at once for the whole run:
- route queries from 4 clients (mostly cached topics, some unknown ones);
- 20 brokers of 200 topics re-registering every 5 s (one in four with a changed topic) and
  checking their data version every second, with a oneway heartbeat;
- expiry: every 5 s a short-lived broker registers with a 2 s heartbeat timeout and falls
  silent on an open connection; the soak checks that its route disappears (liveness expiry);
- admin: cluster info, all-topic list, KV put/get/delete and GET_NAMESRV_CONFIG, ~20/s.

"gen lag" is the longest stall of the generator's own event loop in the interval: latency
spikes that coincide with one are the generator's (it shares the machine with the pod).

Growth: RSS and Redis memory are fitted with a line over the run after its first fifth
(warm-up); the slope is printed per minute and flagged when the fitted growth over the
measured span exceeds 10 % of the warm RSS (or 10 % of Redis' memory).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _pod import MIB, PodUnderTest, RssSampler, run_against_pod

from namesrv_redis.bench.stats import percentile
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.sim.broker import SimBroker


class Window:
    """Latencies and answer codes per kind since the last report."""

    def __init__(self) -> None:
        self.lat: dict[str, list[int]] = {}
        self.codes: Counter[str] = Counter()

    def add(self, kind: str, us: int, code: int) -> None:
        self.lat.setdefault(kind, []).append(us)
        if code == 2:
            self.codes[f"{kind}:busy"] += 1
        elif code == -1:
            self.codes[f"{kind}:timeout"] += 1
        elif code not in (0, 17, 22):  # topic / KV not found are normal answers here
            self.codes[f"{kind}:code{code}"] += 1

    def p(self, kind: str, q: float) -> float:
        return percentile(sorted(self.lat.get(kind, [])), q) / 1000


async def timed(w: Window, kind: str, c: RemotingClient, code: int, *a: Any, **kw: Any) -> Any:
    started = time.perf_counter()
    try:
        resp = await c.request(code, *a, timeout=5.0, **kw)
        rc = resp.code if resp is not None else 0
    except (TimeoutError, ConnectionError):
        resp, rc = None, -1
    w.add(kind, int((time.perf_counter() - started) * 1e6), rc)
    if rc not in (-1, 0, 2, 17, 22) and resp is not None:
        print(f"  {kind} request code {code} answered {rc}: {resp.remark}", flush=True)
    return resp


class Soak:
    def __init__(self, port: int, deadline: float) -> None:
        self.port = port
        self.deadline = deadline
        self.w = Window()
        self.expired_ok = 0
        self.expired_late = 0
        self.rnd = random.Random(7)
        self.topics: list[str] = []
        self.gen_lag_ms = 0.0

    async def lag_monitor(self) -> None:
        """The generator's own loop stalls: a latency spike that coincides with one is (at
        least partly) the generator's, not the pod's."""
        while self.running():
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            self.gen_lag_ms = max(self.gen_lag_ms, (time.perf_counter() - t - 0.01) * 1000)

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def client(self) -> RemotingClient:
        return await RemotingClient.connect("127.0.0.1", self.port)

    async def routes(self) -> None:
        c = await self.client()
        while self.running():
            if self.rnd.random() < 0.05:
                topic = f"NoSuchTopic{self.rnd.randrange(1000)}"
            else:
                topic = self.rnd.choice(self.topics)
            ext = {"topic": topic}
            await timed(self.w, "route", c, RequestCode.GET_ROUTEINFO_BY_TOPIC, ext, version=409)
            await asyncio.sleep(0.002)
        await c.close()

    async def broker(self, i: int) -> None:
        await asyncio.sleep(i * 0.05)  # brokers do not register in lockstep
        c = await self.client()
        b = SimBroker(cluster="SoakCluster", name=f"soak-broker-{i}", addr=f"127.0.1.{i}:10911")
        b.add_topics([f"SoakTopic-{i}-{t}" for t in range(200)])
        addr = {"clusterName": b.cluster, "brokerAddr": b.addr}
        dv = {**addr, "brokerName": b.name, "brokerId": "0"}
        for tick in itertools.count():
            if not self.running():
                break
            if tick % 5 == 0:
                if tick % 20 == 0 and tick:
                    b.remove_topics([f"SoakTopic-{i}-{tick // 20 % 200}"])
                    b.add_topics([f"SoakTopic-{i}-{tick // 20 % 200}"])
                ext, body = b.register_request()
                await timed(self.w, "register", c, RequestCode.REGISTER_BROKER, ext, body)
            await c.request(RequestCode.BROKER_HEARTBEAT, addr, oneway=True)
            body = b'{"counter":%d,"timestamp":%d}' % (b.counter, b.timestamp)
            await timed(self.w, "dataversion", c, RequestCode.QUERY_DATA_VERSION, dv, body)
            await asyncio.sleep(1.0)
        await b.unregister(c)
        await c.close()

    async def expiry(self) -> None:
        silent: list[RemotingClient] = []
        for n in itertools.count():
            if not self.running():
                break
            c = await self.client()
            b = SimBroker(
                cluster="SoakCluster",
                name=f"soak-ephemeral-{n}",
                addr=f"127.0.2.{n % 250}:{20000 + n}",
                heartbeat_timeout_ms=2000,
            )
            b.add_topics([f"Ephemeral-{n}", f"Ephemeral-{n}-b"])
            ext, body = b.register_request()
            await timed(self.w, "register", c, RequestCode.REGISTER_BROKER, ext, body)
            silent.append(c)  # stays open, says nothing more: must expire
            asyncio.get_running_loop().create_task(self._check_expired(f"Ephemeral-{n}"))
            await asyncio.sleep(5.0)
        for c in silent:
            await c.close()

    async def _check_expired(self, topic: str) -> None:
        c = await self.client()
        await asyncio.sleep(2.0 + 5.0 + 2.0)  # timeout + one sweep interval + slack
        resp = await c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic}, version=409)
        if resp is not None and resp.code == 17:
            self.expired_ok += 1
        else:
            self.expired_late += 1
        await c.close()

    async def admin(self) -> None:
        c = await self.client()
        for n in itertools.count():
            if not self.running():
                break
            kind = n % 6
            if kind == 0:
                await timed(self.w, "admin", c, RequestCode.GET_BROKER_CLUSTER_INFO)
            elif kind == 1:
                await timed(self.w, "admin", c, RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER)
            elif kind == 2:
                kv = {"namespace": "soak", "key": f"k{n % 50}", "value": "v" * (n % 100)}
                await timed(self.w, "admin", c, RequestCode.PUT_KV_CONFIG, kv)
            elif kind == 3:
                kv = {"namespace": "soak", "key": f"k{(n - 1) % 50}"}
                await timed(self.w, "admin", c, RequestCode.GET_KV_CONFIG, kv)
            elif kind == 4:
                kv = {"namespace": "soak", "key": f"k{(n - 2) % 50}"}
                await timed(self.w, "admin", c, RequestCode.DELETE_KV_CONFIG, kv)
            else:
                await timed(self.w, "admin", c, RequestCode.GET_NAMESRV_CONFIG)
            await asyncio.sleep(0.05)
        await c.close()


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    n = len(points)
    if n < 3:
        return 0.0
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    den = sum((t - mx) ** 2 for t, _ in points)
    return 60 * sum((t - mx) * (v - my) for t, v in points) / den if den else 0.0


async def run(args: argparse.Namespace, put: PodUnderTest) -> int:
    start = time.monotonic()
    soak = Soak(put.port, start + args.minutes * 60)
    soak.topics = [f"SoakTopic-{i}-{t}" for i in range(20) for t in range(200)]
    redis = aioredis.Redis.from_url(put.redis.url)
    tasks = [asyncio.create_task(soak.broker(i)) for i in range(20)]
    await asyncio.sleep(2)  # registered before the route clients start
    tasks += [asyncio.create_task(soak.routes()) for _ in range(4)]
    tasks += [asyncio.create_task(soak.expiry()), asyncio.create_task(soak.admin())]
    tasks.append(asyncio.create_task(soak.lag_monitor()))
    rss_points: list[tuple[float, float]] = []
    redis_points: list[tuple[float, float]] = []
    print(
        f"{'min':>5} {'pod RSS':>8} {'redis':>8} | {'routes':>7} {'p50':>6} {'p99':>6} | "
        f"{'reg p99':>7} {'dv p99':>7} {'adm p99':>7} | {'expired':>7} {'late':>4} | "
        f"{'gen lag':>7} | problems"
    )
    with RssSampler(put.pid, interval_s=1.0) as rss:
        while soak.running():
            await asyncio.sleep(min(args.report_every, max(0.0, soak.deadline - time.monotonic())))
            elapsed = time.monotonic() - start
            w, soak.w = soak.w, Window()
            gen_lag, soak.gen_lag_ms = soak.gen_lag_ms, 0.0
            now_rss = rss.now()
            used = int((await redis.info("memory"))["used_memory"])
            rss_points.append((elapsed, now_rss))
            redis_points.append((elapsed, used))
            routes = len(w.lat.get("route", []))
            print(
                f"{elapsed / 60:5.1f} {now_rss / MIB:7.1f}M {used / MIB:7.1f}M | "
                f"{routes:>7} {w.p('route', 50):6.2f} {w.p('route', 99):6.2f} | "
                f"{w.p('register', 99):7.2f} {w.p('dataversion', 99):7.2f} "
                f"{w.p('admin', 99):7.2f} | "
                f"{soak.expired_ok:>7} {soak.expired_late:>4} | {gen_lag:6.0f}ms | "
                f"{dict(w.codes) or '-'}",
                flush=True,
            )
    await asyncio.gather(*tasks, return_exceptions=True)
    await redis.aclose()
    warm = [p for p in rss_points if p[0] >= args.minutes * 60 / 5]
    warm_redis = [p for p in redis_points if p[0] >= args.minutes * 60 / 5]
    flagged = False
    for name, pts in (("pod RSS", warm), ("redis used_memory", warm_redis)):
        if len(pts) < 3:
            print(f"{name}: too few reports after warm-up to fit a slope")
            continue
        slope = slope_per_min(pts)
        span_min = (pts[-1][0] - pts[0][0]) / 60
        growth = slope * span_min
        grows = growth > 0.10 * pts[0][1]
        flagged |= grows
        print(
            f"{name}: {pts[0][1] / MIB:.1f} -> {pts[-1][1] / MIB:.1f} MiB after warm-up, "
            f"fitted slope {slope / MIB:+.2f} MiB/min over {span_min:.1f} min"
            f"{'  GROWTH' if grows else '  (no growth flagged)'}"
        )
    print(f"expired brokers gone in time: {soak.expired_ok}, late: {soak.expired_late}")
    return 1 if flagged or soak.expired_late else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--report-every", type=float, default=60.0, help="seconds between lines")
    return run_against_pod(run, p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
