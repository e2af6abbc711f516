"""The numbers of a ``bench capacity`` scenario, computed from what its processes recorded,
and the tables it prints."""

from __future__ import annotations

import bisect
from array import array
from collections import Counter
from typing import Any

from namesrv_redis.bench.clients import RouteAnswers
from namesrv_redis.bench.fleet import CHANGED, KINDS, STORM, UNCHANGED, Registrations
from namesrv_redis.bench.loadgen import LoadResult
from namesrv_redis.bench.redis_stats import command_costs
from namesrv_redis.bench.stats import summarize_us

NO_ROUTE = 17
"""TOPIC_NOT_EXIST: the right answer for a topic whose every broker died."""


def _ms(summary: dict[str, float]) -> dict[str, float]:
    """A latency summary in microseconds, turned into milliseconds."""
    return {k: (v if k == "count" else round(v / 1000, 2)) for k, v in summary.items()}


def _in(t: array[float], window: tuple[float, float]) -> list[int]:
    lo, hi = window
    return [i for i, x in enumerate(t) if lo <= x < hi]


def _registrations(regs: Registrations, idx: list[int], seconds: float) -> dict[str, Any]:
    lat = [regs.latency_us[i] for i in idx if regs.code[i] == 0]
    out: dict[str, Any] = {
        "count": len(idx),
        "per_s": round(len(idx) / seconds, 1) if seconds > 0 else 0.0,
        "latency_ms": _ms(summarize_us(lat)),
        "errors": {
            str(k): v for k, v in Counter(regs.code[i] for i in idx if regs.code[i]).items()
        },
    }
    for kind in (UNCHANGED, CHANGED):
        sub = [regs.latency_us[i] for i in idx if regs.kind[i] == kind and regs.code[i] == 0]
        if sub:
            out[KINDS[kind]] = _ms(summarize_us(sub))
    return out


def _routes(answers: RouteAnswers, window: tuple[float, float]) -> dict[str, Any]:
    idx = _in(answers.t, window)
    codes = Counter(answers.code[i] for i in idx)
    lat = [answers.latency_us[i] for i in idx if answers.code[i] in (0, NO_ROUTE)]
    return {
        "count": len(idx),
        "latency_ms": _ms(summarize_us(lat)),
        "no_route": codes.get(NO_ROUTE, 0),
        "errors": {str(k): v for k, v in codes.items() if k not in (0, NO_ROUTE)},
    }


def _window_costs(m0: dict[str, Any], m1: dict[str, Any]) -> dict[str, Any]:
    dt = m1["t"] - m0["t"]
    pod_cpu = [b - a for a, b in zip(m0["pod_cpu"], m1["pod_cpu"], strict=True)]
    answers = [b - a for a, b in zip(m0["pod_answers"], m1["pod_answers"], strict=True)]
    redis_cpu = m1["redis"].cpu_s - m0["redis"].cpu_s
    return {
        "seconds": round(dt, 2),
        "pod_cpu_pct": [round(c / dt * 100, 1) for c in pod_cpu],
        "pod_answers_per_s": [round(a / dt) for a in answers],
        "pod_cpu_us_per_answer": round(sum(pod_cpu) / max(1.0, sum(answers)) * 1e6, 1),
        "redis_cpu_pct": round(redis_cpu / dt * 100, 1),
        "redis_cpu_s": redis_cpu,
        "redis_commands": command_costs(m0["redis"], m1["redis"]),
    }


def _load(result: LoadResult | None, costs: dict[str, Any] | None) -> dict[str, Any] | None:
    if result is None or costs is None:
        return None
    rps = result.ok / result.window_s if result.window_s else 0.0
    return {
        "throughput_rps": round(rps),
        "latency_ms": _ms(summarize_us(result.latencies_us)),
        "errors": dict(result.errors),
        "pod_cpu_us_per_answer": costs["pod_cpu_us_per_answer"],
        "pod_cpu_pct": costs["pod_cpu_pct"],
        "redis_cpu_pct": costs["redis_cpu_pct"],
    }


def _detection(
    detected: dict[int, list[float | None]],
    last_ack: dict[int, list[float]],
    timeout_s: float,
    death_at: float,
) -> dict[str, Any]:
    after_timeout: list[int] = []
    since_death: list[int] = []
    missed = 0
    for b, per_pod in detected.items():
        for pod, seen in enumerate(per_pod):
            if seen is None:
                missed += 1
                continue
            acked = last_ack.get(b, [0.0] * len(per_pod))[pod]
            after_timeout.append(max(0, int((seen - acked - timeout_s) * 1e6)))
            since_death.append(int((seen - death_at) * 1e6))
    return {
        "brokers": len(detected),
        "observations": len(after_timeout),
        "missed": missed,
        "after_timeout_ms": _ms(summarize_us(after_timeout)),
        "since_death_ms": _ms(summarize_us(since_death)),
    }


def _event_lag(lag: list[tuple[float, int, list[int]]], pods: int) -> list[dict[str, Any]]:
    """Per pod: the largest version gap seen and how long a write took to reach the pod (the
    next sample at which the pod had reached the version Redis had; sample resolution)."""
    out = []
    times = [t for t, _, _ in lag]
    for pod in range(pods):
        gaps, delays = [], []
        for i, (t, redis_v, pods_v) in enumerate(lag):
            gaps.append(redis_v - pods_v[pod])
            j = i
            while j < len(lag) and lag[j][2][pod] < redis_v:
                j += 1
            if j < len(lag):
                delays.append(int((times[j] - t) * 1e6))
        out.append(
            {
                "samples": len(lag),
                "max_versions_behind": max(gaps, default=0),
                "delay_ms": _ms(summarize_us(delays)),
            }
        )
    return out


def analyse(
    *,
    base: float,
    windows: dict[str, tuple[float, float]],
    marks: dict[str, tuple[dict[str, Any], dict[str, Any]]],
    registrations: Registrations,
    answers: RouteAnswers,
    detected: dict[int, list[float | None]],
    last_ack: dict[int, list[float]],
    timeout_s: float,
    lag: list[tuple[float, int, list[int]]],
    load: dict[str, LoadResult | None],
    redis_idle_cpu_pct: float,
) -> dict[str, Any]:
    regs = registrations
    costs = {k: _window_costs(a, b) for k, (a, b) in marks.items()}
    steady = windows["steady"]
    steady_regs = [i for i in _in(regs.t, steady) if regs.kind[i] in (UNCHANGED, CHANGED)]
    reg_steady = _registrations(regs, steady_regs, steady[1] - steady[0])
    storm_idx = [i for i, k in enumerate(regs.kind) if k == STORM]
    storm: dict[str, Any] = _registrations(regs, storm_idx, 1.0)
    if storm_idx:
        first = min(regs.t[i] for i in storm_idx)
        last = max(regs.t[i] + regs.latency_us[i] / 1e6 for i in storm_idx)
        storm["span_s"] = round(last - first, 2)
    storm["routes"] = _routes(answers, windows["storm"])
    storm["costs"] = costs.get("storm")
    pods = len(next(iter(marks.values()))[0]["pod_cpu"])
    busy = costs["steady"]["redis_cpu_s"] - redis_idle_cpu_pct / 100 * costs["steady"]["seconds"]
    redis_cpu_per_reg = max(0.0, busy) / max(1, reg_steady["count"]) * 1e6
    remoting = _load(load["remoting"], costs.get("load"))
    http = _load(load["http"], costs.get("http"))
    out: dict[str, Any] = {
        "registration": {
            "steady": reg_steady,
            "by_window": {
                name: _registrations(regs, _in(regs.t, w), w[1] - w[0])["latency_ms"]
                for name, w in windows.items()
            },
        },
        "routes_paced": {name: _routes(answers, w) for name, w in windows.items()},
        "route_load": {"remoting": remoting, "http": http},
        "storm": storm,
        "detection": _detection(detected, last_ack, timeout_s, windows["death"][0]),
        "event_lag": _event_lag(lag, pods),
        "redis_cpu_us_per_registration": round(redis_cpu_per_reg, 1),
        "costs": {
            k: {kk: vv for kk, vv in v.items() if kk != "redis_cpu_s"} for k, v in costs.items()
        },
    }
    if remoting and http:
        out["route_load"]["http_over_remoting"] = round(
            http["throughput_rps"] / max(1, remoting["throughput_rps"]), 2
        )
    out["timeline"] = _timeline(base, answers, regs)
    return out


def _timeline(
    base: float, answers: RouteAnswers, regs: Registrations, step: float = 0.5
) -> dict[str, Any]:
    """Paced route p99 and registrations per ``step`` seconds, for the storm plot."""
    if not answers.t:
        return {}
    end = max(answers.t) - base
    buckets = int(end / step) + 1
    lat: list[list[int]] = [[] for _ in range(buckets)]
    for t, v in zip(answers.t, answers.latency_us, strict=True):
        k = int((t - base) / step)
        if 0 <= k < buckets:
            lat[k].append(v)
    reg_counts = [0] * buckets
    order = sorted(regs.t)
    for k in range(buckets):
        lo, hi = base + k * step, base + (k + 1) * step
        reg_counts[k] = bisect.bisect_left(order, hi) - bisect.bisect_left(order, lo)
    return {
        "step_s": step,
        "route_p99_ms": [round(summarize_us(x)["p99"] / 1000, 2) if x else None for x in lat],
        "registrations": reg_counts,
    }


# --------------------------------------------------------------------------- printing


def _lat(d: dict[str, float]) -> str:
    return f"p50 {d['p50']:.2f} / p99 {d['p99']:.2f} / p99.9 {d['p999']:.2f} ms"


def print_scenario(r: dict[str, Any]) -> None:
    reg = r["registration"]["steady"]
    print(
        f"steady: {reg['per_s']} registrations/s {_lat(reg['latency_ms'])}"
        f" (changed: p50 {reg.get('changed', {}).get('p50', 0):.2f} ms), errors {reg['errors']}; "
        f"Redis CPU {r['costs']['steady']['redis_cpu_pct']}% = "
        f"{r['redis_cpu_us_per_registration']} us per registration"
    )
    for name in ("steady", "load", "storm", "death"):
        p = r["routes_paced"][name]
        print(
            f"  paced client routes ({name}): {p['count']} {_lat(p['latency_ms'])}"
            f" errors {p['errors']}"
        )
    for proto in ("remoting", "http"):
        x = r["route_load"].get(proto)
        if x:
            print(
                f"route load ({proto}): {x['throughput_rps']}/s {_lat(x['latency_ms'])}, "
                f"{x['pod_cpu_us_per_answer']} us pod CPU/answer, pods {x['pod_cpu_pct']}% CPU, "
                f"Redis {x['redis_cpu_pct']}%, errors {x['errors']}"
            )
    s = r["storm"]
    print(
        f"storm: {s['count']} registrations in {s.get('span_s', 0)} s, {_lat(s['latency_ms'])}, "
        f"errors {s['errors']}; client routes meanwhile {_lat(s['routes']['latency_ms'])}"
    )
    d = r["detection"]
    print(
        f"rack failure: {d['brokers']} brokers x {r['pods']} pods, detected "
        f"{_lat(d['after_timeout_ms'])} after the timeout, missed {d['missed']}"
    )
    lags = ", ".join(
        f"pod {i}: <= {x['max_versions_behind']} behind, delay p99 {x['delay_ms']['p99']:.2f} ms"
        for i, x in enumerate(r["event_lag"])
    )
    print(f"events: {lags}")
    k = r["redis_keys"]
    print(
        f"memory: Redis {k['bytes_per_entry']} B per topic-broker entry, "
        f"{k['bytes_per_broker']} B per broker ({r['redis_used_memory_mib']} MiB used); "
        f"pod RSS idle {r['pod_rss_idle_mib']} MiB, all {r['topics']} routes cached "
        f"{r['pod0_rss_all_cached_mib']} MiB; tables after: {r['tables_after']}",
        flush=True,
    )


def print_summary(result: dict[str, Any]) -> None:
    _print_op_costs(result["scenarios"])
    rows = [r for r in result["scenarios"] if "route_load" in r]
    if not rows:
        return
    print(
        f"\n{'scenario':<10}{'pods':>5}{'brokers':>8}{'topics':>8}{'clients':>8}"
        f"{'route/s':>9}{'p99 ms':>8}{'us/ans':>8}{'http/s':>8}{'reg/s':>7}{'reg p99':>8}"
        f"{'Redis us/reg':>13}{'storm s':>8}{'detect p99':>11}{'RSS MiB':>8}"
    )
    for r in rows:
        rem = r["route_load"]["remoting"] or {}
        http = r["route_load"]["http"] or {}
        reg = r["registration"]["steady"]
        print(
            f"{r['scenario']:<10}{r['pods']:>5}{r['estate']['brokers']:>8}{r['topics']:>8}"
            f"{r['clients']:>8}{rem.get('throughput_rps', 0):>9}"
            f"{rem.get('latency_ms', {}).get('p99', 0):>8.2f}"
            f"{rem.get('pod_cpu_us_per_answer', 0):>8}{http.get('throughput_rps', 0):>8}"
            f"{reg['per_s']:>7}{reg['latency_ms']['p99']:>8.2f}"
            f"{r['redis_cpu_us_per_registration']:>13}{r['storm'].get('span_s', 0):>8}"
            f"{r['detection']['after_timeout_ms']['p99']:>11.2f}"
            f"{r['pod0_rss_all_cached_mib']:>8}"
        )


def _print_op_costs(rows: list[dict[str, Any]]) -> None:
    """Pod and Redis CPU per broker operation (``op_costs``), one line a scenario."""
    measured = [r for r in rows if r.get("op_costs")]
    if not measured:
        return
    print(
        f"\n{'scenario':<10}{'pods':>5}  pod / Redis CPU per operation (us): "
        f"{'changed':>15}{'unchanged':>15}{'heartbeat':>15}"
    )
    for r in measured:
        for label in ("loaded", "paced"):
            c = r["op_costs"] if label == "loaded" else r["op_costs"].get("paced")
            if not c:
                continue
            cells = "".join(
                f"{c[k]['pod_cpu_us']:>8.1f} /{c[k]['redis_cpu_us']:>5.1f}"
                for k in ("changed", "unchanged", "heartbeat")
            )
            print(f"{r['scenario']:<10}{r['pods']:>5}  {label:<36}{cells}")
