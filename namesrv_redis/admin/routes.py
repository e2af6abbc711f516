"""Route answers in the shape the admin prints and compares (order-free, one row per broker
name)."""

from __future__ import annotations

from typing import Any

from namesrv_redis.admin.render import perm_text


def _addrs(bd: dict[str, Any]) -> dict[int, str]:
    return {int(k): str(v) for k, v in (bd.get("brokerAddrs") or {}).items()}


def route_rows(route: dict[str, Any]) -> list[list[Any]]:
    """Cluster, broker name, broker addresses (id=addr), read/write queues, perm."""
    queues = {q.get("brokerName"): q for q in route.get("queueDatas") or []}
    rows = []
    names = {bd.get("brokerName"): bd for bd in route.get("brokerDatas") or []}
    for name in sorted(set(names) | set(queues), key=str):
        bd = names.get(name) or {}
        q = queues.get(name) or {}
        addrs = ",".join(f"{i}={a}" for i, a in sorted(_addrs(bd).items())) or "-"
        rows.append(
            [
                bd.get("cluster", "-"),
                name,
                addrs,
                q.get("readQueueNums", "-"),
                q.get("writeQueueNums", "-"),
                perm_text(int(q["perm"])) if "perm" in q else "-",
            ]
        )
    return rows


ROUTE_HEADERS = ("Cluster Name", "Broker Name", "Broker Addrs", "Read Q", "Write Q", "Perm")


def normalised(route: dict[str, Any] | None) -> Any:
    """A route with its lists in a fixed order, so two answers compare equal when a client
    would route the same way."""
    if route is None:
        return None
    return {
        "brokerDatas": sorted(
            (
                {
                    "cluster": bd.get("cluster"),
                    "brokerName": bd.get("brokerName"),
                    "brokerAddrs": {str(k): v for k, v in sorted(_addrs(bd).items())},
                }
                for bd in route.get("brokerDatas") or []
            ),
            key=lambda b: str(b["brokerName"]),
        ),
        "queueDatas": sorted(
            (
                {k: q.get(k) for k in ("brokerName", "readQueueNums", "writeQueueNums", "perm")}
                for q in route.get("queueDatas") or []
            ),
            key=lambda q: str(q["brokerName"]),
        ),
        "orderTopicConf": route.get("orderTopicConf"),
    }


def summary(route: dict[str, Any] | None) -> str:
    """One line: ``broker-a[0=h:p] r8/w8 RW- | broker-b[...] ...`` or ``(no route)``."""
    if route is None:
        return "(no route: TOPIC_NOT_EXIST)"
    parts = []
    for _, name, addrs, r, w, perm in route_rows(route):
        parts.append(f"{name}[{addrs}] r{r}/w{w} {perm}")
    return " | ".join(parts) or "(empty route)"
