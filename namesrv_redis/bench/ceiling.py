"""``namesrv-redis bench ceiling``: the pod's cached route answers beside the limits of this
machine, measured in one run with the same generator (``bench/loadgen.py``: C connections ×
P pipelined requests from several processes):

- **ceiling** — a minimal server in this project's stack (uvloop, ``remoting/codec.py``'s
  framing and header decoding) that answers every request with one constant pre-encoded
  answer (the pod's own route body; only the opaque changes): what any Python design here
  costs at least per answer;
- **redis** — redis-server answering a GET of a value of the same size, pipelined the same
  way over RESP: what a C server costs per answer on this machine;
- **pod** — the real name server (``serve``, its own embedded Redis, ``--workers`` as given)
  with B brokers × K topics registered over the wire and every route cached;
- **java** — optionally, the Java NameServer of a reference install (``--java-ref``: a
  directory with ``bin/start-namesrv.sh``, as the project's RocketMQ 4.9.8 reference build
  makes), with the same brokers registered.

Each round measures every server once, in turn; the table shows the median of the rounds of
throughput, server CPU per answer (the server's process tree, psutil) and p99, and the pod's
CPU per answer as a fraction of the ceiling's and of Redis' in the same round.
``python -m namesrv_redis.bench.ceiling --port P --body FILE`` runs the ceiling server alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import redis

from namesrv_redis.bench.children import stop_process
from namesrv_redis.bench.loadgen import install_uvloop
from namesrv_redis.bench.options import ROUTE_LOAD_SETTINGS
from namesrv_redis.bench.target import (
    cache_all,
    free_port,
    register_all,
    route_load,
    start_server,
)
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.remoting.codec import FrameDecoder, FrameError, success_head
from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.sim.broker import SimBroker
from namesrv_redis.store.embedded import EmbeddedRedis

LOADGEN_VERSION = 409
"""The header version the generator sends (RocketMQ 4.9.8's): the pod answers it in
standard JSON; the ceiling answers with that same body."""
SERVERS = ("ceiling", "redis", "pod", "java")
T = TypeVar("T")


# ---------------------------------------------------------------------- the ceiling server


class ConstantAnswers(asyncio.Protocol):
    """Answers every request frame with the success frame of ``body`` and the request's
    opaque; every frame of one read leaves in one write. A bad frame closes the connection."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            commands = self.decoder.feed(data)
        except FrameError:
            self.transport.close()
            return
        body, size = self.body, len(self.body)
        out: list[bytes] = []
        for cmd in commands:
            if not cmd.is_oneway and not cmd.is_response:
                out += (success_head(cmd.opaque, size), body)
        if out:
            self.transport.write(b"".join(out))


async def serve_constant(host: str, port: int, body: bytes) -> None:
    """The ceiling server, until SIGTERM."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ConstantAnswers(body), host, port, backlog=1024)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


@contextlib.contextmanager
def start_ceiling(body: bytes, *, pin: bool) -> Iterator[dict[str, Any]]:
    """The ceiling server in its own process, answering ``body``."""
    port = free_port()
    with tempfile.NamedTemporaryFile(prefix="ceiling-body-", delete=False) as f:
        f.write(body)
    cmd = [sys.executable, "-m", "namesrv_redis.bench.ceiling", "--port", str(port)]
    cmd += ["--body", f.name]
    proc = subprocess.Popen(["taskset", "-c", "1", *cmd] if pin else cmd)
    try:
        _wait_listening(port, proc.poll, "the ceiling server")
        yield {"host": "127.0.0.1", "port": port, "pid": proc.pid}
    finally:
        stop_process(proc)
        os.unlink(f.name)


def _wait_listening(
    port: int, exited: Callable[[], int | None], what: str, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if exited() is not None:
            raise RuntimeError(f"{what} exited before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f} s")


# ---------------------------------------------------------------------- Java (optional)


@contextlib.contextmanager
def start_java(install: Path) -> Iterator[dict[str, Any]]:
    """The Java NameServer of a reference install (``bin/start-namesrv.sh`` and
    ``bin/stop-namesrv.sh``, given ``NAMESRV_PORT``; the pid in ``run/namesrv-PORT.pid``) on a
    free loopback port."""
    port = free_port()
    env = {**os.environ, "NAMESRV_PORT": str(port), "RMQ_REF": str(install)}
    subprocess.run(
        [str(install / "bin" / "start-namesrv.sh")], env=env, check=True, stdout=subprocess.DEVNULL
    )
    try:
        pid = int((install / "run" / f"namesrv-{port}.pid").read_text().strip())
        yield {"host": "127.0.0.1", "port": port, "pid": pid}
    finally:
        subprocess.run(
            [str(install / "bin" / "stop-namesrv.sh")],
            env=env,
            check=False,
            stdout=subprocess.DEVNULL,
        )


# ---------------------------------------------------------------------- the run


def _brokers(brokers: int, topics: int) -> list[SimBroker]:
    sims = []
    for b in range(brokers):
        sim = SimBroker("BenchCluster", f"bench-broker-{b}", f"127.0.0.1:{20000 + b}")
        sim.add_topics([f"bench-topic-{t}" for t in range(topics)])
        sims.append(sim)
    return sims


class _Registered:
    """Brokers registered with one server over connections kept open and re-registered
    every 20 s (the liveness timeout is 120 s), on an event loop of its own in a thread: the
    measurements block the caller."""

    def __init__(self, host: str, port: int, sims: list[SimBroker], topics: list[str]) -> None:
        self.host, self.port, self.sims, self.topics = host, port, sims, topics
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ceiling-brokers")
        self.clients: list[RemotingClient] = []
        self.keep_alive: asyncio.Task[None] | None = None

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def __enter__(self) -> _Registered:
        self.thread.start()
        try:
            self.clients = self._call(register_all(self.host, self.port, self.sims))
            self._call(cache_all(self.host, self.port, self.topics))
            self.keep_alive = self._call(self._start_keep_alive())
        except BaseException:
            self.__exit__()
            raise
        return self

    async def _start_keep_alive(self) -> asyncio.Task[None]:
        async def reregister() -> None:
            while True:
                await asyncio.sleep(20)
                for sim, client in zip(self.sims, self.clients, strict=True):
                    await sim.register(client, timeout=60)

        return asyncio.create_task(reregister())

    def body(self, topic: str) -> bytes:
        """The server's route answer for ``topic``, as the generator's clients get it."""

        async def ask() -> bytes:
            client = await RemotingClient.connect(self.host, self.port)
            try:
                resp = await client.request(
                    RequestCode.GET_ROUTEINFO_BY_TOPIC,
                    {"topic": topic},
                    version=LOADGEN_VERSION,
                    timeout=30,
                )
            finally:
                await client.close()
            if resp is None or resp.code != 0 or not resp.body:
                raise RuntimeError(f"no route for {topic}: {resp}")
            return bytes(resp.body)

        return self._call(ask())

    async def _close(self) -> None:
        if self.keep_alive is not None:
            self.keep_alive.cancel()
        for c in self.clients:
            await c.close()

    def __exit__(self, *exc: object) -> None:
        self._call(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def _measure(
    args: argparse.Namespace, srv: dict[str, Any], keys: list[str], protocol: str
) -> dict[str, Any]:
    exclude = () if protocol == "resp" else ("redis-server",)
    return route_load(args, srv["host"], srv["port"], keys, protocol, srv["pid"], exclude=exclude)


def _row(name: str, r: dict[str, Any]) -> str:
    return (
        f"{name:<10}{r['throughput_rps']:>11}{r.get('server_cpu_us_per_req', 0):>12}"
        f"{r['latency_us']['p99'] / 1000:>10.2f}{r.get('server_rss_mib', 0):>10}"
        f"{r['generator_cpu_us_per_req']:>10}{sum(r['errors'].values()):>7}"
    )


HEADER = (
    f"{'server':<10}{'answers/s':>11}{'srv us/ans':>12}{'p99 ms':>10}{'RSS MiB':>10}"
    f"{'gen us/r':>10}{'errs':>7}"
)


def _ratios(r: dict[str, dict[str, Any]]) -> dict[str, float]:
    cpu = {k: v.get("server_cpu_us_per_req", 0.0) for k, v in r.items()}
    out: dict[str, float] = {}
    for base in ("ceiling", "redis", "java"):
        if cpu.get("pod") and cpu.get(base):
            out[f"pod_cpu_vs_{base}"] = round(cpu["pod"] / cpu[base], 2)
    if "java" in r and r["java"]["throughput_rps"]:
        out["pod_rps_vs_java"] = round(r["pod"]["throughput_rps"] / r["java"]["throughput_rps"], 2)
    return out


def summarize(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Medians over the rounds of each server's figures and of the per-round ratios."""
    out: dict[str, Any] = {}
    for name in SERVERS:
        rs = [r[name] for r in rounds if name in r]
        if rs:
            out[name] = {
                "throughput_rps": round(statistics.median(r["throughput_rps"] for r in rs)),
                "server_cpu_us_per_req": round(
                    statistics.median(r.get("server_cpu_us_per_req", 0.0) for r in rs), 2
                ),
                "p99_us": statistics.median(r["latency_us"]["p99"] for r in rs),
                "server_rss_mib": statistics.median(r.get("server_rss_mib", 0.0) for r in rs),
                "errors": sum(sum(r["errors"].values()) for r in rs),
            }
    ratios = [_ratios(r) for r in rounds]
    out["ratios"] = {
        k: round(statistics.median(x[k] for x in ratios if k in x), 2)
        for k in sorted({k for x in ratios for k in x})
    }
    return out


def run_ceiling_bench(args: argparse.Namespace) -> int:
    java = Path(args.java_ref) if args.java_ref else None
    if java is not None and not (java / "bin" / "start-namesrv.sh").is_file():
        print(f"--java-ref {java}: no bin/start-namesrv.sh there", file=sys.stderr)
        return 2
    sims = _brokers(args.brokers, args.topics)
    topics = [f"bench-topic-{t}" for t in range(args.topics)]
    rounds: list[dict[str, dict[str, Any]]] = []
    load0 = os.getloadavg()
    with contextlib.ExitStack() as stack:
        pod_redis = EmbeddedRedis(port=free_port())
        pod_redis.start_sync()
        stack.callback(pod_redis.stop_sync)
        pod = stack.enter_context(
            start_server(pod_redis.url, "bench", workers=args.workers, cache=True, pin=args.pin)
        )
        pod_reg = stack.enter_context(_Registered(pod["host"], pod["port"], sims, topics))
        body = pod_reg.body(topics[0])
        ceiling = stack.enter_context(start_ceiling(body, pin=args.pin))

        gets = EmbeddedRedis(port=free_port())  # its own: nothing else runs on it
        gets.start_sync()
        stack.callback(gets.stop_sync)
        assert gets.proc is not None
        with redis.Redis.from_url(gets.url) as r:
            r.set("bench-route", body)
        if args.pin:
            subprocess.run(
                ["taskset", "-a", "-cp", "1", str(gets.proc.pid)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        redis_srv = {"host": "127.0.0.1", "port": gets.port, "pid": gets.proc.pid}

        targets: list[tuple[str, dict[str, Any], list[str], str]] = [
            ("ceiling", ceiling, topics, "remoting"),
            ("redis", redis_srv, ["bench-route"], "resp"),
            ("pod", pod, topics, "remoting"),
        ]
        if java is not None:
            jsrv = stack.enter_context(start_java(java))
            stack.enter_context(_Registered(jsrv["host"], jsrv["port"], sims, topics))
            targets.append(("java", jsrv, topics, "remoting"))
        print(
            f"body: {len(body)} bytes; {args.brokers} brokers x {args.topics} topics; "
            f"{args.connections} connections x {args.pipeline} in flight; "
            f"{args.rounds} rounds of {args.duration:g} s after {args.warmup:g} s"
        )
        for i in range(args.rounds):
            print(f"round {i + 1}\n{HEADER}")
            results: dict[str, dict[str, Any]] = {}
            for name, srv, keys, protocol in targets:
                results[name] = _measure(args, srv, keys, protocol)
                print(_row(name, results[name]))
            print("  " + ", ".join(f"{k} {v}" for k, v in _ratios(results).items()))
            rounds.append(results)
    summary = summarize(rounds)
    load1 = os.getloadavg()
    print(f"median of {len(rounds)} rounds\n{HEADER}")
    for name in SERVERS:
        if name in summary:
            s = summary[name]
            print(
                f"{name:<10}{s['throughput_rps']:>11}{s['server_cpu_us_per_req']:>12}"
                f"{s['p99_us'] / 1000:>10.2f}{s['server_rss_mib']:>10}{'':>10}{s['errors']:>7}"
            )
    print("pod's CPU per answer: " + ", ".join(f"{k} {v}" for k, v in summary["ratios"].items()))
    print(f"load average before {load0[0]:.2f}, after {load1[0]:.2f}")
    result = {
        "settings": {k: getattr(args, k) for k in (*ROUTE_LOAD_SETTINGS, "rounds")},
        "body_bytes": len(body),
        "load_average": [round(load0[0], 2), round(load1[0], 2)],
        "rounds": rounds,
        "median": summary,
    }
    errors = sum(s["errors"] for k, s in summary.items() if k != "ratios")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps({"median": summary, "load_average": result["load_average"]}))
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="the ceiling server of `namesrv-redis bench ceiling`")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--body", required=True, help="file holding the answer's body")
    a = p.parse_args(argv)
    install_uvloop()
    asyncio.run(serve_constant(a.host, a.port, Path(a.body).read_bytes()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
