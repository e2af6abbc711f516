"""The long fuzz run: millions of hostile frames against a real ``namesrv-redis serve`` process
on a real redis-server (the structure-aware frames of tests/fuzz_frames.py, from a seeded
random generator), one request at a time so that each answer can be checked.

For every refused request (non-zero response code) the namespace's digest (every key without
a TTL) must be unchanged; every ``--check-every`` frames the pod must answer on a fresh
connection and ``check`` must find nothing. At the end it prints frames sent, the rate,
refusals by kind, state changes after refusals, check problems, connection closes, crashes
(the process died or stopped answering) and tracebacks in the pod's log.

    python scripts/fuzz.py --frames 1000000 [--seed 1] [--check-every 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from namesrv_redis.remoting.codec import encode_request
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.sim.broker import SimBroker
from namesrv_redis.store.check import check_namespace
from namesrv_redis.store.keys import Keys
from namesrv_redis.telemetry.metrics import request_code_label
from tests.conftest import RedisServerProcess
from tests.fuzz_frames import (
    DIGEST_LUA,
    NAMES,
    OPAQUES,
    BlockingClient,
    RandomDraw,
    fuzz_frame,
    scan_pattern,
)
from tests.serverproc import NamesrvProcess

CODE_NAMES = {int(c): c.name for c in RequestCode}


def remark_kind(remark: str | None) -> str:
    """A refusal's remark without its variable parts (values, numbers, quoted text)."""
    text = (remark or "").split("\n")[0]
    text = re.sub(r"'[^']*'|\"[^\"]*\"|<[^>]*>", "_", text)
    text = re.sub(r"-?\d+", "N", text)
    return text[:70]


class Run:
    def __init__(self, args: argparse.Namespace, redis_url: str, pod: NamesrvProcess) -> None:
        self.args, self.pod = args, pod
        self.keys = Keys(args.namespace)
        self.redis = redis.Redis.from_url(redis_url)
        self.digest_script = self.redis.register_script(DIGEST_LUA)
        self.pattern = scan_pattern(self.keys.prefix)
        self.aredis: Any = None
        self.runner = asyncio.Runner()
        self.draw = RandomDraw(args.seed)
        self.refusals: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.state_changes: list[str] = []
        self.problems: Counter[str] = Counter()
        self.crashes = 0
        self.conn = self._connect()

    def _connect(self) -> BlockingClient:
        return BlockingClient("127.0.0.1", self.pod.port, timeout=10)

    def digest(self) -> bytes:
        return bytes(self.digest_script(keys=[], args=[self.pattern, self.keys.pods]))

    def metric(self, prefix: str) -> float:
        """One sample of the pod's /metrics (0 when absent)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.pod.http_port}/metrics") as r:
            for line in r.read().decode().splitlines():
                if line.startswith(prefix):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    def server_connections(self) -> int:
        return int(self.metric("namesrv_remoting_connections "))

    def answered(self, code: int) -> float:
        """How many requests of ``code`` the pod has finished (counted after processing)."""
        label = request_code_label(code)
        return self.metric(f'namesrv_requests_total{{code="{label}",frontend="remoting"}}')

    def stable_digest(self) -> bytes:
        """Once background work has settled: three equal digests in a row."""
        last, same = self.digest(), 0
        while same < 2:
            now = self.digest()
            same = same + 1 if now == last else 0
            last = now
        return last

    def reconnect(self) -> bytes:
        """A new fuzz connection, once the pod has noticed the old one closed (and removed
        the brokers registered over it)."""
        self.conn.close()
        deadline = time.monotonic() + 10
        while self.server_connections() > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.conn = self._connect()
        return self.stable_digest()

    def after_oneway(self, code: int, before: float) -> bytes:
        """A oneway frame has no answer: wait until the pod counts it as processed."""
        deadline = time.monotonic() + 10
        while self.answered(code) <= before and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.stable_digest()

    def check(self) -> None:
        control = self._connect()
        try:
            resp = control.request(RequestCode.GET_BROKER_CLUSTER_INFO)
        except OSError:
            resp = None
        control.close()
        if resp is None or resp.code != 0 or (self.pod.proc and self.pod.proc.poll() is not None):
            self.crashes += 1
            raise SystemExit("the pod stopped answering:\n" + self.pod.log())

        async def problems() -> list[Any]:
            if self.aredis is None:
                self.aredis = aioredis.Redis.from_url(self.args.redis_url_used)
            return await check_namespace(self.aredis, self.args.namespace)

        for p in self.runner.run(problems()):
            self.problems[p.kind] += 1

    def valid_registration(self) -> tuple[int, bytes]:
        d = self.draw
        b = SimBroker(
            d.choice(NAMES), d.choice(NAMES), d.choice(NAMES), broker_id=d.choice([0, 1, 2])
        )
        b.heartbeat_timeout_ms = 86_400_000
        b.add_topics(["T1", "T2", "a/b"])
        ext, body = b.register_request()
        opaque = next(OPAQUES) & 0x7FFFFFFF
        return opaque, encode_request(RequestCode.REGISTER_BROKER, opaque, ext, body)

    def step(self, known: bytes | None) -> bytes | None:
        """One frame; returns the digest known to be current afterwards (or None)."""
        if self.draw.integer(0, 19) == 0:
            opaque, data = self.valid_registration()
            self.conn.send(data)
            resp = self.conn.response(opaque, timeout=30)
            self.outcomes["valid_registration:" + str(resp.code if resp else "closed")] += 1
            return None
        frame = fuzz_frame(self.draw)
        before = known if known is not None else self.digest()
        if frame.malformed:  # on a connection of its own (its close removes nothing)
            throwaway = self._connect()
            throwaway.send(frame.data)
            closed = throwaway.wait_closed(2.0)
            throwaway.close()
            self.outcomes[f"{frame.kind}:{'closed' if closed else 'open'}"] += 1
            return None
        if frame.oneway:  # processed in the background: wait until it has been
            self.outcomes["oneway"] += 1
            count = self.answered(frame.code)
            self.conn.send(frame.data)
            return self.after_oneway(frame.code, count)
        self.conn.send(frame.data)
        resp = self.conn.response(frame.opaque, timeout=30)
        name = CODE_NAMES.get(frame.code, "unknown")
        if resp is None:
            self.outcomes[f"closed_after_wellformed:{name}"] += 1
            return self.reconnect()
        if resp.code == 0:
            self.outcomes["accepted"] += 1
            return None
        self.outcomes["refused"] += 1
        self.refusals[f"{name} -> {resp.code} {remark_kind(resp.remark)}"] += 1
        after = self.digest()
        if after != before:
            self.state_changes.append(
                f"{name}: {resp.code} {resp.remark!r} frame {frame.data[:300].hex()}"
            )
        return after

    def run(self) -> None:
        started = time.monotonic()
        known: bytes | None = None
        self.sent = 0
        self.elapsed = 0.0
        for i in range(1, self.args.frames + 1):
            known = self.step(known)
            self.sent = i
            self.elapsed = time.monotonic() - started
            if i % self.args.check_every == 0:
                self.check()
                known = None
            if i % self.args.report_every == 0:
                rate = i / (time.monotonic() - started)
                changes, problems = len(self.state_changes), sum(self.problems.values())
                print(
                    f"{i} frames, {rate:.0f}/s, refused {self.outcomes['refused']}, "
                    f"state changes {changes}, problems {problems}",
                    flush=True,
                )
        self.check()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--check-every", type=int, default=2000)
    ap.add_argument("--report-every", type=int, default=50_000)
    ap.add_argument("--namespace", default="fuzz")
    args = ap.parse_args()

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)  # stop the pod and Redis on the way out
    redis_server = RedisServerProcess().start()
    args.redis_url_used = redis_server.url
    # the default heartbeat timeout of 4.x-style registrations outlives the run, so no broker
    # expires (and changes the tables) while a refused request is being checked
    pod = NamesrvProcess(
        redis_server.url, args.namespace, env={"NAMESRV_BROKER_TIMEOUT_MS": "604800000"}
    ).start()
    run = Run(args, redis_server.url, pod)
    interrupted_at = None
    try:
        run.run()
    except KeyboardInterrupt:  # a stopped run still reports what it did
        interrupted_at = run.sent
    finally:
        log = pod.log_path.read_text(errors="replace")
        pod.stop()
        redis_server.stop()
    tracebacks = log.count("Traceback")
    if interrupted_at is not None:
        print(f"\ninterrupted after {interrupted_at} of {args.frames} frames")
    rate = run.sent / run.elapsed if run.elapsed else 0.0
    print(f"\nframes: {run.sent} in {run.elapsed:.0f} s ({rate:.0f}/s)")
    print(f"crashes: {run.crashes}   tracebacks in the pod's log: {tracebacks}")
    print(f"state changes after a refusal: {len(run.state_changes)}")
    for s in run.state_changes[:20]:
        print("   ", s)
    print(f"check problems: {dict(run.problems) or 0}")
    print("outcomes:")
    for k, v in run.outcomes.most_common():
        print(f"  {v:9d}  {k}")
    print("refusals by kind:")
    for k, v in run.refusals.most_common(40):
        print(f"  {v:9d}  {k}")
    if len(run.refusals) > 40:
        print(f"  ... {len(run.refusals) - 40} more kinds")


if __name__ == "__main__":
    main()
