"""Output of ``namesrv-redis admin``: aligned tables in mqadmin's habits (``#Column`` headers,
left-aligned, one row per line) or JSON for scripts."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO

import orjson


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO | None = None) -> None:
    """Print ``#Header`` columns padded to the widest cell and two spaces apart (mqadmin
    pads to fixed widths; these fit the data, so long addresses never break alignment)."""
    out = out or sys.stdout
    cells = [[f"#{h}" for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        line = "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
        out.write(line.rstrip() + "\n")


def as_json(value: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    out.write(
        orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n"
    )


def json_line(value: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    out.write(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode() + "\n")
    out.flush()


def perm_text(perm: int) -> str:
    """RocketMQ's PermName.perm2String: R, W, X (inherit) or '-' for each bit."""
    return ("R" if perm & 4 else "-") + ("W" if perm & 2 else "-") + ("X" if perm & 1 else "-")
