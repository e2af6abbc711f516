"""The attacks of issue #12 point 4 against a real ``namesrv-redis serve`` on a real
redis-server, one after another: for each, the pod's peak RSS against a stated ceiling and
what other clients (an observer process: route queries, a broker's data-version checks and
registrations) saw meanwhile — p50/p99/max and how many were refused or failed — beside the
observer's own longest loop stall and the machine's load average, to tell the pod's delays
from the machine's.

    python scripts/attack_load.py [--seconds 8] [--only pipeline,bomb,...]

Attacks: ``pipeline`` (1M route requests, answers never read), ``topic-lists`` (2,000
GET_ALL_TOPIC_LIST of ~360 KB answers, never read), ``partial-frames`` (40 connections each
sending 15 MiB of a declared 16 MiB frame), ``bomb`` (20 compressed register bodies of
~260 KB inflating to 255 MiB), ``big-registration`` (a 100,000-topic broker registering, then
re-registering with changes), ``flood`` (400 connections pipelining GET_KV_CONFIG, a Redis
read each: admission control answers SYSTEM_BUSY).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import struct
import sys
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _pod import MIB, Observer, PodUnderTest, RssSampler, Samples, mib, run_against_pod

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.remoting.codec import encode_request
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.rocketmq.register_body import crc32_masked
from namesrv_redis.sim.broker import SimBroker

CEILING_OVER_BASELINE = 200 * MIB
"""The bound the limits are sized for (docs/protocol.md, "Limits"): the partial-frame budget
(64 MiB), two offloaded big registrations at a time (body, inflated or decoded form), and
per-connection answer buffers; the figures printed are checked against baseline + this."""


def raw_socket(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    return s


async def send_for(sock: socket.socket, chunks: Callable[[], Any], seconds: float) -> int:
    """Send what ``chunks()`` yields until done or ``seconds`` passed; bytes sent."""
    loop = asyncio.get_running_loop()
    sent = 0

    async def run() -> None:
        nonlocal sent
        for chunk in chunks():
            await loop.sock_sendall(sock, chunk)
            sent += len(chunk)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run(), seconds)
    return sent


async def attack_pipeline(port: int, topic: str, seconds: float) -> dict[str, Any]:
    frame = encode_request(RequestCode.GET_ROUTEINFO_BY_TOPIC, 1, {"topic": topic}, version=409)
    n, per = 1_000_000, 10_000
    s = raw_socket(port)
    sent = await send_for(s, lambda: (frame * per for _ in range(n // per)), seconds)
    s.close()
    return {"requests": n, "sent_before_blocked": sent // len(frame)}


async def attack_topic_lists(port: int, seconds: float) -> dict[str, Any]:
    frames = b"".join(
        encode_request(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER, i) for i in range(2000)
    )
    s = raw_socket(port)
    sent = await send_for(s, lambda: [frames], seconds)
    await asyncio.sleep(max(0.0, seconds - 1))
    s.close()
    return {"requests": 2000, "sent_bytes": sent}


async def attack_partial_frames(port: int, seconds: float) -> dict[str, Any]:
    declared, sent_each = 16 * MIB, 15 * MIB
    header = b'{"code":103,"flag":0,"language":"JAVA","opaque":1,"version":409}'
    prefix = struct.pack(">ii", declared, len(header)) + header
    body = b"\0" * (sent_each - len(prefix))
    socks = [raw_socket(port) for _ in range(40)]
    totals = await asyncio.gather(*(send_for(s, lambda: [prefix, body], seconds) for s in socks))
    for s in socks:
        s.close()
    return {
        "connections": 40,
        "fully_sent": sum(1 for t in totals if t == sent_each),
        "sent_mib": round(sum(totals) / MIB),
    }


def bomb_body() -> bytes:
    head = b'{"counter":1,"timestamp":1}'
    raw = struct.pack(">i", len(head)) + head + struct.pack(">i", 0)
    inflater = zlib.compressobj(9)
    parts = [inflater.compress(raw)]
    zeros = b"\0" * MIB
    parts += [inflater.compress(zeros) for _ in range(255)]
    parts.append(inflater.flush())
    return b"".join(parts)


async def attack_bomb(port: int, seconds: float) -> dict[str, Any]:
    body = bomb_body()
    b = SimBroker(cluster="BombCluster", name="bomb", addr="127.0.0.9:10911", compressed=True)
    b.add_topics(["A", "B"])
    ext, _ = b.register_request()
    ext["bodyCrc32"] = str(crc32_masked(body))
    answers: Counter[str] = Counter()

    async def one_client() -> None:
        c = await RemotingClient.connect("127.0.0.1", port)
        for _ in range(5):
            resp = await c.request(RequestCode.REGISTER_BROKER, ext, body, timeout=30)
            assert resp is not None
            answers[f"{resp.code} {(resp.remark or '')[:60]}"] += 1
        await c.close()

    await asyncio.gather(*(one_client() for _ in range(4)))
    return {"body_kib": len(body) // 1024, "answers": dict(answers)}


async def attack_big_registration(port: int, seconds: float) -> dict[str, Any]:
    b = SimBroker(cluster="BigCluster", name="big", addr="127.0.0.8:10911")
    b.add_topics([f"BigTopic-{i:06d}" for i in range(100_000)])
    c = await RemotingClient.connect("127.0.0.1", port)
    walls = []
    for i in range(3):
        ext, body = b.register_request()
        t = time.perf_counter()
        resp = await c.request(RequestCode.REGISTER_BROKER, ext, body, timeout=60)
        walls.append(round(time.perf_counter() - t, 2))
        assert resp is not None and resp.code == 0, resp
        b.add_topics([f"BigExtra-{i}"])
    unreg = await b.unregister(c)
    await c.close()
    return {"body_mib": round(len(body) / MIB, 1), "register_s": walls, "unregister": unreg.code}


async def attack_flood(port: int, seconds: float) -> dict[str, Any]:
    codes: Counter[int] = Counter()
    deadline = time.monotonic() + seconds

    kv = {"namespace": "flood", "key": "k"}  # a Redis read each: never cached nor coalesced

    async def flooder() -> None:
        c = await RemotingClient.connect("127.0.0.1", port)
        while time.monotonic() < deadline:
            answers = await asyncio.gather(
                *(c.request(RequestCode.GET_KV_CONFIG, kv, timeout=10) for _ in range(40)),
                return_exceptions=True,
            )
            for a in answers:
                codes[a.code if not isinstance(a, BaseException) and a else -1] += 1
        await c.close()

    await asyncio.gather(*(flooder() for _ in range(400)), return_exceptions=True)
    return {"connections": 400, "answers_by_code": dict(codes)}


ATTACKS: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
    "pipeline": attack_pipeline,
    "topic-lists": attack_topic_lists,
    "partial-frames": attack_partial_frames,
    "bomb": attack_bomb,
    "big-registration": attack_big_registration,
    "flood": attack_flood,
}


async def setup(port: int) -> tuple[RemotingClient, list[str]]:
    """A broker whose 17,000 topics make GET_ALL_TOPIC_LIST answer ~360 KB; its connection
    stays open (closing it would unregister the broker)."""
    b = SimBroker(cluster="C", name="broker-a", addr="127.0.0.1:10911")
    topics = [f"AttackLoadTopic-{i:05d}" for i in range(17_000)]
    b.add_topics(topics)
    c = await RemotingClient.connect("127.0.0.1", port)
    resp = await b.register(c, timeout=30)
    assert resp.code == 0, resp
    watched = topics[:200]
    for t in watched:  # cached from now on
        await c.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": t}, version=409)
    return c, watched


def row(
    name: str, base: int, peak: int, after: int, s: Samples, t0: float, t1: float, load: float
) -> str:
    r, h, g, lag = (s.stats(k, t0, t1) for k in ("route", "heartbeat", "register", "lag"))
    ok = "ok" if peak <= base + CEILING_OVER_BASELINE else "OVER"
    return (
        f"{name:17} {mib(peak):>9} {mib(peak - base):>8} {mib(after):>9} {ok:>4} | "
        f"{r['count']:>6} {r['p50_ms']:6.2f} {r['p99_ms']:7.2f} {r['max_ms']:8.1f} "
        f"{int(r['busy'] + r['failed']):>4} | "
        f"{h['p99_ms']:7.2f} {g['p99_ms']:7.2f} {int(h['busy'] + g['busy']):>4} "
        f"{int(h['failed'] + g['failed']):>4} | {lag['max_ms']:7.1f} {load:5.1f}"
    )


async def run(args: argparse.Namespace, put: PodUnderTest) -> int:
    port = put.port
    keeper, watched = await setup(port)
    chosen = args.only.split(",") if args.only else list(ATTACKS)
    results: dict[str, Any] = {}
    lines = []
    with RssSampler(put.pid) as rss, Observer(port, watched) as observer:
        await asyncio.sleep(3)
        phases: list[tuple[str, int, float, float, int, float]] = []
        t0 = time.time()
        await asyncio.sleep(args.seconds)
        base = rss.now()
        phases.append(("baseline", base, t0, time.time(), base, os.getloadavg()[0]))
        for name in chosen:
            before = rss.now()
            t0 = time.time()
            results[name] = await ATTACKS[name](
                port, *((watched[0], args.seconds) if name == "pipeline" else (args.seconds,))
            )
            t1 = time.time()
            await asyncio.sleep(2)
            phases.append((name, before, t0, t1, rss.now(), os.getloadavg()[0]))
        samples = observer.stop()
    await keeper.close()
    base = phases[0][1]
    lines.append(
        f"{'attack':17} {'peak RSS':>9} {'+base':>8} {'after':>9} {'ceil':>4} | "
        f"{'routes':>6} {'p50ms':>6} {'p99ms':>7} {'max ms':>8} {'bad':>4} | "
        f"{'dv p99':>7} {'reg p99':>7} {'busy':>4} {'fail':>4} | {'obs lag':>7} {'load':>5}"
    )
    for name, _before, t0, t1, after, load in phases:
        tail = 0 if name == "baseline" else 2  # what an attack leaves behind counts too
        peak = rss.peak(t0, t1 + tail)
        lines.append(row(name, base, peak, after, samples, t0, t1, load))
    print(f"pod RSS ceiling: baseline {mib(base)} + {mib(CEILING_OVER_BASELINE)}")
    print("\n".join(lines))
    print("attack details:", json.dumps(results, indent=1))
    return 0 if all("OVER" not in line for line in lines[1:]) else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0, help="length of each attack")
    p.add_argument("--only", default="", help="comma-separated attacks: " + ",".join(ATTACKS))
    return run_against_pod(run, p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
