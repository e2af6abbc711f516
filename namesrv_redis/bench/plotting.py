"""matplotlib for the benchmarks' ``--plots`` (an optional extra: ``pip install
'namesrv-redis[plots]'``), loaded only when plots are asked for."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend; a clear exit when it is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise SystemExit(
            "plots need matplotlib: pip install 'namesrv-redis[plots]' (or matplotlib)"
        ) from e
    return plt
