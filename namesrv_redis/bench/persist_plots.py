"""PNG plots of ``bench persistence`` results (needs matplotlib: ``pip install
'namesrv-redis[plots]'``): write latency per mode, and survival and recovery per mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from namesrv_redis.bench.plotting import pyplot


def write_plots(result: dict[str, Any], out_dir: Path) -> list[Path]:
    plt = pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    modes = [m["mode"] for m in result["modes"]]
    x = list(range(len(modes)))
    w = 0.2

    fig, ax = plt.subplots(figsize=(8, 4.2))
    series = [
        ("registration p50", "registration", "p50"),
        ("registration p99", "registration", "p99"),
        ("KV write p50", "kv_write", "p50"),
        ("KV write p99", "kv_write", "p99"),
    ]
    for i, (label, part, pct) in enumerate(series):
        values = [m[part]["latency_us"][pct] / 1000 for m in result["modes"]]
        ax.bar([v + (i - 1.5) * w for v in x], values, w, label=label)
    ax.set_xticks(x, modes)
    ax.set_ylabel("ms (log scale)")
    ax.set_yscale("log")
    ax.set_title("Write latency under load, per persistence mode")
    ax.legend(fontsize=8)
    fig.tight_layout()
    latency = out_dir / "persistence-latency.png"
    fig.savefig(latency, dpi=110)
    plt.close(fig)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    regs = [100 * (m["survival"]["registrations"] or 0) for m in result["modes"]]
    kv = [100 * (m["survival"]["kv"] or 0) for m in result["modes"]]
    ax1.bar([v - w / 2 for v in x], regs, w, label="registrations kept")
    ax1.bar([v + w / 2 for v in x], kv, w, label="KV writes kept")
    ax1.set_xticks(x, modes, rotation=20)
    ax1.set_ylim(0, 105)
    ax1.set_ylabel("% of acknowledged writes after kill -9")
    ax1.set_title("Survival of a crash")
    ax1.legend(fontsize=8)
    timeout = result["settings"]["recovery_timeout_s"]
    rec = [m["recovery"]["median_s"] for m in result["modes"]]
    bars = ax2.bar(x, [timeout if r is None else r for r in rec], 0.5)
    for bar, r in zip(bars, rec, strict=True):
        if r is None:
            bar.set_hatch("//")
            bar.set_alpha(0.4)
            ax2.text(bar.get_x() + bar.get_width() / 2, timeout, "never", ha="center", va="bottom")
    ax2.set_xticks(x, modes, rotation=20)
    ax2.set_ylabel("s from kill -9 (median)")
    ax2.set_title("Until every route answers again (no re-registration)")
    fig.tight_layout()
    survival = out_dir / "persistence-survival.png"
    fig.savefig(survival, dpi=110)
    plt.close(fig)
    return [latency, survival]
