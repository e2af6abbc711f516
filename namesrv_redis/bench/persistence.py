"""``namesrv-redis bench persistence``: what each Redis persistence mode costs and keeps.

For each mode (none, rdb, aof-everysec, aof-always, and the Java-like baseline whose state is
only in the server's memory with KV in a file) it starts a real ``redis-server`` configured for
that mode and a ``serve`` pod in front of it, then:

1. **load**: B brokers re-register in a closed loop with a new data version each time, a KV
   writer puts fresh keys, route readers ask for routes. Measured: registration latency and
   throughput, KV write latency, route latency under that load, CPU of the process holding the
   state (redis-server; the whole server for the baseline), bytes on disk.
2. **crashes**: the same workload again, ``kill -9`` of the state holder at a random moment,
   restart on the same files at once. Measured: the share of the registrations and KV writes
   acknowledged in that window that are still there, and the time from the kill until every
   route the brokers had registered answers again, with the brokers quiet (no re-registration:
   what comes back is what persistence kept; a lost route returns only with the broker's next
   periodic registration, every 30 s by RocketMQ's default).

Prints a table, writes ``--json FILE`` and, with matplotlib installed (the ``plots`` extra),
``--plots DIR`` PNGs. See docs/persistence.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
from redis.exceptions import RedisError

from namesrv_redis.bench.persist_backends import BASELINE, Backend, disk_bytes, make_backend
from namesrv_redis.bench.persist_workload import Ledger, Pace, Workload
from namesrv_redis.bench.stats import summarize_us
from namesrv_redis.settings.persistence_modes import MODES, RDB_SAVE

ALL_MODES = (BASELINE, *MODES)
T = TypeVar("T")


@dataclass
class PersistSpec:
    modes: tuple[str, ...] = ALL_MODES
    brokers: int = 10
    topics: int = 100
    route_conns: int = 2
    load_s: float = 15.0
    """the paced phase (latencies)"""
    reg_rate: float = 200.0
    kv_rate: float = 20.0
    route_rate: float = 500.0
    max_s: float = 8.0
    """the closed-loop phase (throughput, CPU per registration)"""
    rounds: int = 3
    """the phases of all modes take turns, in rotating order, this many times"""
    kills: int = 6
    crash_after_s: tuple[float, float] = (1.0, 4.0)
    recovery_timeout_s: float = 10.0
    seed: int = 1
    rebuild: bool = False
    """Pods re-apply their connected brokers' registrations after a crash (docs/ha.md)."""


QUICK = {
    "brokers": 4,
    "topics": 20,
    "load_s": 4.0,
    "reg_rate": 100.0,
    "route_rate": 300.0,
    "max_s": 3.0,
    "rounds": 2,
    "kills": 3,
    "crash_after_s": (0.5, 1.5),
    "recovery_timeout_s": 3.0,
}


def _cpu_s(proc: Any) -> float:
    try:
        t = psutil.Process(proc.pid).cpu_times()
        return float(t.user + t.system)
    except (psutil.Error, AttributeError):
        return 0.0


def _share(kept: int, acked: int) -> float | None:
    return round(kept / acked, 4) if acked else None


async def _retrying(call: Callable[[], Awaitable[T]], attempts: int = 20) -> T:
    """A read of the restarted state holder: its first connections may still fail."""
    for i in range(attempts):
        try:
            return await call()
        except (RedisError, OSError, ConnectionError, TimeoutError):
            if i == attempts - 1:
                raise
            await asyncio.sleep(0.1)
    raise AssertionError("unreachable")


async def crash_once(
    backend: Backend, wl: Workload, run_s: float, recovery_timeout_s: float
) -> dict[str, Any]:
    """Run the workload ``run_s`` seconds, ``kill -9`` the state holder, restart it; count what
    survived of what was acknowledged, and time until every route answers again."""
    ledger = Ledger()
    async with wl.running(ledger):
        await asyncio.sleep(run_s)
        t_kill = time.perf_counter()
        backend.kill_state()
    backend.start_state()
    restart_s = time.perf_counter() - t_kill
    wanted = wl.wanted_routes(ledger)
    recovery: float | None = None
    while time.perf_counter() - t_kill < recovery_timeout_s:
        try:
            if await backend.routes_answer(wanted):
                recovery = time.perf_counter() - t_kill
                break
        except (RedisError, OSError, ConnectionError, TimeoutError):
            pass
        await asyncio.sleep(0.05)
    kept_regs = await _retrying(lambda: backend.surviving_registrations(ledger.registrations))
    kept_kv = await _retrying(lambda: backend.surviving_kv(ledger.kv_keys))
    return {
        "killed_after_s": round(run_s, 3),
        "acked_registrations": len(ledger.registrations),
        "kept_registrations": kept_regs,
        "acked_kv": len(ledger.kv_keys),
        "kept_kv": kept_kv,
        "restart_s": round(restart_s, 3),
        "full_routes_after_s": None if recovery is None else round(recovery, 3),
    }


@dataclass
class _Run:
    """One mode under test: its backend, its workload, and what its phases recorded."""

    backend: Backend
    wl: Workload
    paced: Ledger = field(default_factory=Ledger)
    flat: Ledger = field(default_factory=Ledger)
    paced_s: float = 0.0
    flat_s: float = 0.0
    cpu_s: float = 0.0

    async def paced_phase(self, spec: PersistSpec, seconds: float) -> None:
        """Latencies at a steady rate: service times, not queueing."""
        t0 = time.perf_counter()
        async with self.wl.running(self.paced, Pace(spec.reg_rate, spec.kv_rate, spec.route_rate)):
            await asyncio.sleep(seconds)
        self.paced_s += time.perf_counter() - t0

    async def closed_phase(self, seconds: float) -> None:
        """Closed loops: registrations per second, and the state holder's CPU."""
        cpu0, t0 = _cpu_s(self.backend.state_proc), time.perf_counter()
        async with self.wl.running(self.flat):
            await asyncio.sleep(seconds)
        self.flat_s += time.perf_counter() - t0
        self.cpu_s += _cpu_s(self.backend.state_proc) - cpu0

    def load_result(self) -> dict[str, Any]:
        paced, flat = self.paced, self.flat
        regs = len(flat.registrations)
        return {
            "mode": self.backend.mode,
            "registration": {
                "max_per_s": round(regs / self.flat_s, 1),
                "paced_per_s": round(len(paced.registrations) / self.paced_s, 1),
                "latency_us": summarize_us(paced.reg_us),
                "latency_at_max_us": summarize_us(flat.reg_us),
            },
            "kv_write": {
                "paced_per_s": round(len(paced.kv_keys) / self.paced_s, 1),
                "latency_us": summarize_us(paced.kv_us),
            },
            "route": {
                "paced_per_s": round(len(paced.route_us) / self.paced_s, 1),
                "latency_us": summarize_us(paced.route_us),
            },
            "state_cpu_pct_at_max": round(100 * self.cpu_s / self.flat_s, 1),
            "state_cpu_us_per_registration": round(self.cpu_s / max(1, regs) * 1e6, 1),
            "disk_bytes": disk_bytes(self.backend.dir),
            "load_errors": {**paced.errors, **{f"max_{k}": v for k, v in flat.errors.items()}},
        }


def crash_summary(crashes: list[dict[str, Any]], timeout_s: float) -> dict[str, Any]:
    recovered = [c["full_routes_after_s"] for c in crashes if c["full_routes_after_s"] is not None]
    return {
        "crashes": crashes,
        "survival": {
            "registrations": _share(
                sum(c["kept_registrations"] for c in crashes),
                sum(c["acked_registrations"] for c in crashes),
            ),
            "kv": _share(sum(c["kept_kv"] for c in crashes), sum(c["acked_kv"] for c in crashes)),
        },
        "recovery": {
            "recovered": len(recovered),
            "of": len(crashes),
            "median_s": round(statistics.median(recovered), 3) if recovered else None,
            "max_s": max(recovered) if recovered else None,
            "timeout_s": timeout_s,
        },
    }


async def measure(
    backends: list[Backend], spec: PersistSpec, rng: random.Random
) -> list[dict[str, Any]]:
    """All modes are up at once and take turns, in ``spec.rounds`` rounds of rotating order,
    so that what else the machine does spreads over every mode alike; then each mode's
    crashes."""
    runs: list[_Run] = []
    try:
        for b in backends:
            await b.open()
            wl = Workload(
                b.host, b.port, spec.brokers, spec.topics, spec.route_conns, rng.randrange(1000)
            )
            runs.append(_Run(b, wl))
            await wl.register_all(Ledger())
        for r in range(spec.rounds):
            order = runs[r % len(runs) :] + runs[: r % len(runs)]
            for run in order:
                await run.paced_phase(spec, spec.load_s / spec.rounds)
            for run in order:
                await run.closed_phase(spec.max_s / spec.rounds)
        results = []
        for run in runs:
            out = run.load_result()
            await run.wl.register_all(Ledger())  # idle while the others ran: fresh again
            crashes = [
                await crash_once(
                    run.backend, run.wl, rng.uniform(*spec.crash_after_s), spec.recovery_timeout_s
                )
                for _ in range(spec.kills)
            ]
            out.update(crash_summary(crashes, spec.recovery_timeout_s))
            results.append(out)
        return results
    finally:
        for run in runs:
            await run.wl.close()
        for b in backends:
            await b.close()


def run_persistence(spec: PersistSpec, workdir: Path | None = None) -> dict[str, Any]:
    """Every mode of ``spec``; the results as one dict."""
    rng = random.Random(spec.seed)
    # the files of every mode in a fresh directory (under ``workdir``: bench the disk the
    # production Redis would write to), removed at the end
    root = Path(tempfile.mkdtemp(prefix="nsr-bench-persist-", dir=workdir))
    try:
        with contextlib.ExitStack() as stack:
            backends = [make_backend(mode, root, rebuild=spec.rebuild) for mode in spec.modes]
            for b in backends:
                stack.enter_context(b.running())
            results = asyncio.run(measure(backends, spec, rng))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            **asdict(spec),
            "rdb_save": RDB_SAVE,
            "workdir": str(root.parent),
        },
        "modes": results,
    }


# ------------------------------------------------------------------------------ report


def _ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


def format_table(result: dict[str, Any]) -> str:
    modes = result["modes"]
    base = next((m for m in modes if m["mode"] == BASELINE), None)
    head = (
        f"{'mode':<14}{'reg p50':>8}{'p99':>7}{'x base':>7}{'kv p50':>7}{'p99':>7}"
        f"{'route p50':>10}{'p99':>7}{'max reg/s':>10}{'us/reg':>7}{'disk KiB':>9}"
        f"{'regs kept':>10}{'KV kept':>8}{'full routes after':>19}"
    )
    lines = [head]
    for m in modes:
        reg = m["registration"]["latency_us"]
        kv, route = m["kv_write"]["latency_us"], m["route"]["latency_us"]
        ratio = (
            f"{reg['p50'] / base['registration']['latency_us']['p50']:.1f}"
            if base and base["registration"]["latency_us"]["p50"]
            else "-"
        )
        rec = m["recovery"]
        after = (
            f"{rec['median_s']:.2f} s ({rec['recovered']}/{rec['of']})"
            if rec["median_s"] is not None
            else f"never ({rec['recovered']}/{rec['of']})"
        )
        lines.append(
            f"{m['mode']:<14}{_ms(reg['p50']):>8}{_ms(reg['p99']):>7}{ratio:>7}"
            f"{_ms(kv['p50']):>7}{_ms(kv['p99']):>7}"
            f"{_ms(route['p50']):>10}{_ms(route['p99']):>7}"
            f"{m['registration']['max_per_s']:>10.0f}"
            f"{m['state_cpu_us_per_registration']:>7.0f}{m['disk_bytes'] / 1024:>9.0f}"
            f"{_pct(m['survival']['registrations']):>10}{_pct(m['survival']['kv']):>8}"
            f"{after:>19}"
        )
    s = result["settings"]
    lines.append(
        f"latencies in ms at {s['reg_rate']:.0f} registrations/s, {s['kv_rate']:.0f} KV writes/s, "
        f"{s['route_rate']:.0f} route reads/s for {s['load_s']} s; {s['brokers']} brokers x "
        f"{s['topics']} topics; x base: registration p50 / java-like's; max reg/s and us/reg "
        f"(CPU of the state holder per registration): closed loops for {s['max_s']} s; "
        f"{s['kills']} kill -9 per mode; 'full routes after': from the kill, brokers quiet "
        f"(no re-registration), 'never' = not within {s['recovery_timeout_s']} s; "
        f"rdb: save {s['rdb_save']!r}; pods' rebuild of connected brokers "
        f"(rebuildOnDataLoss): {'on' if s.get('rebuild') else 'off'}"
    )
    return "\n".join(lines)


def spec_from_args(args: argparse.Namespace) -> PersistSpec:
    spec = PersistSpec(**(QUICK if args.quick else {}))  # type: ignore[arg-type]
    for name in ("brokers", "topics", "kills", "seed", "route_conns", "rounds"):
        v = getattr(args, name, None)
        if v is not None:
            setattr(spec, name, v)
    for arg, name in (
        ("load_seconds", "load_s"),
        ("max_seconds", "max_s"),
        ("reg_rate", "reg_rate"),
        ("route_rate", "route_rate"),
    ):
        v = getattr(args, arg, None)
        if v is not None:
            setattr(spec, name, v)
    if args.modes:
        modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
        bad = [m for m in modes if m not in ALL_MODES]
        if bad:
            raise ValueError(f"unknown mode(s) {bad}: choose from {', '.join(ALL_MODES)}")
        spec.modes = modes
    spec.rebuild = bool(getattr(args, "rebuild", False))
    return spec


def run_persistence_bench(args: argparse.Namespace) -> int:
    try:
        spec = spec_from_args(args)
    except ValueError as e:
        print(f"namesrv-redis bench persistence: {e}")
        return 2
    result = run_persistence(spec, Path(args.workdir) if args.workdir else None)
    print(format_table(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"results: {args.json}")
    if args.plots:
        from namesrv_redis.bench.persist_plots import write_plots

        for path in write_plots(result, Path(args.plots)):
            print(f"plot: {path}")
    return 0
