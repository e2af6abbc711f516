"""PNG plots of ``bench capacity`` results (needs matplotlib: ``pip install
'namesrv-redis[plots]'``): scale-out against pods, latency and cost per profile, memory per
profile, and the storm and rack-failure timeline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from namesrv_redis.bench.plotting import pyplot


def write_plots(result: dict[str, Any], out_dir: Path) -> list[Path]:
    plt = pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = result["scenarios"]
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = out_dir / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    # scale-out: the scenarios sharing the scale profile's name at several pod counts
    by_name: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_name.setdefault(r["scenario"], []).append(r)
    scaled = max(by_name.values(), key=len)
    if len(scaled) > 1:
        scaled = sorted(scaled, key=lambda r: r["pods"])
        pods = [r["pods"] for r in scaled]
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
        rem = [r["route_load"]["remoting"] for r in scaled]
        axes[0].plot(pods, [x["throughput_rps"] for x in rem], "o-", label="route answers/s")
        axes[0].set_title("route throughput (all pods)")
        axes[0].set_xlabel("pods")
        axes[0].set_xticks(pods)
        axes[1].plot(pods, [x["pod_cpu_us_per_answer"] for x in rem], "o-", label="pod CPU")
        axes[1].plot(
            pods,
            [r["redis_cpu_us_per_registration"] for r in scaled],
            "s-",
            label="Redis CPU per registration",
        )
        axes[1].set_title("CPU per answer / per registration (µs)")
        axes[1].set_xlabel("pods")
        axes[1].set_xticks(pods)
        axes[1].legend(fontsize=8)
        for key, style in (("p50", "o-"), ("p99", "s-")):
            axes[2].plot(
                pods,
                [r["registration"]["steady"]["latency_ms"][key] for r in scaled],
                style,
                label=f"registration {key}",
            )
            axes[2].plot(
                pods, [x["latency_ms"][key] for x in rem], style, label=f"route (loaded) {key}"
            )
        axes[2].set_title("latency (ms)")
        axes[2].set_xlabel("pods")
        axes[2].set_xticks(pods)
        axes[2].legend(fontsize=8)
        save(fig, "capacity-scaleout.png")

    singles = [r for r in rows if r["pods"] == 1]
    if singles:
        names = [f"{r['scenario']}\n{r['estate']['brokers']}b/{r['topics']}t" for r in singles]
        x = list(range(len(singles)))
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        w = 0.2
        series: list[tuple[str, Callable[[dict[str, Any]], float]]] = [
            ("route p99 (paced)", lambda r: r["routes_paced"]["steady"]["latency_ms"]["p99"]),
            ("route p99 (loaded)", lambda r: r["route_load"]["remoting"]["latency_ms"]["p99"]),
            ("registration p50", lambda r: r["registration"]["steady"]["latency_ms"]["p50"]),
            ("registration p99", lambda r: r["registration"]["steady"]["latency_ms"]["p99"]),
        ]
        for i, (label, get) in enumerate(series):
            axes[0].bar([v + (i - 1.5) * w for v in x], [get(r) for r in singles], w, label=label)
        axes[0].set_xticks(x, names)
        axes[0].set_title("latency by profile, one pod (ms)")
        axes[0].legend(fontsize=8)
        axes[1].bar(
            [v - w / 2 for v in x],
            [r["redis_keys"]["entry_bytes"] / 2**20 for r in singles],
            w,
            label="Redis: topic-broker entries",
        )
        axes[1].bar(
            [v - w / 2 for v in x],
            [r["redis_keys"]["broker_bytes"] / 2**20 for r in singles],
            w,
            bottom=[r["redis_keys"]["entry_bytes"] / 2**20 for r in singles],
            label="Redis: per-broker keys",
        )
        axes[1].bar(
            [v + w / 2 for v in x],
            [r["pod0_rss_all_cached_mib"] for r in singles],
            w,
            label="pod RSS, every route cached",
        )
        axes[1].set_xticks(x, names)
        axes[1].set_title("memory by profile (MiB)")
        axes[1].legend(fontsize=8)
        save(fig, "capacity-profiles.png")

    for r in rows:
        tl = r.get("timeline") or {}
        if not tl or r["pods"] != 1:
            continue
        step = tl["step_s"]
        t = [i * step for i in range(len(tl["registrations"]))]
        fig, ax = plt.subplots(figsize=(11, 3.6))
        ax.plot(t, [v if v is not None else float("nan") for v in tl["route_p99_ms"]], "-")
        ax.set_ylabel("client route p99 (ms)")
        ax.set_xlabel("seconds")
        ax2 = ax.twinx()
        ax2.plot(t, [c / step for c in tl["registrations"]], "-", color="tab:orange", alpha=0.6)
        ax2.set_ylabel("registrations/s", color="tab:orange")
        for name, (a, b) in r["windows"].items():
            ax.axvspan(a, b, alpha=0.08)
            ax.text(a, ax.get_ylim()[1] * 0.92, name, fontsize=8)
        ax.set_title(f"{r['scenario']}: storm and rack failure, one pod")
        save(fig, f"capacity-timeline-{r['scenario']}.png")
    return written
