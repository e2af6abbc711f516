"""Every Lua script refuses every bad argument before its first write (issue 12, point 1).

A Redis script error does not roll back what the script already wrote, so a script that
failed half-way would leave partial state (a live broker without TTL, served forever). Each
argument of each script is replaced by hostile values: the script either refuses it and the
namespace is byte-for-byte unchanged (DUMP of every key, and whether it has a TTL), or accepts
it and ``check`` stays clean. The values each script must refuse are listed explicitly, so
the test fails when a check goes missing.
"""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ResponseError

from namesrv_redis.rocketmq.model import QueueData
from namesrv_redis.store.check import check_namespace
from namesrv_redis.store.keys import ORDER_TOPIC_CONFIG
from namesrv_redis.store.route_store import BrokerRegistration, RouteStore, queue_configs

NOW = "1700000000000"
LONG_MAX = str(2**63 - 1)
LONG_TOO_BIG = str(2**63)
LONG_TOO_SMALL = str(-(2**63) - 1)
NOT_INTEGERS = ["", "x", "1.5", "1e3", " 1", "01", "-0", "+1", "nan", "inf", "0x10", "1_0"]

HOSTILE = [
    *NOT_INTEGERS,
    "0",
    "-1",
    "9" * 25,
    LONG_MAX,
    LONG_TOO_BIG,
    LONG_TOO_SMALL,
    "2147483648",
    "{}",
    "[]",
    "@",
    "%",
    "a@b%40c",
    "\x00\xff\n",
    "true",
    "x" * 5000,
]

# A valid call of each script, against the namespace `populate` builds.
BASE: dict[str, list[str]] = {
    "register_broker": [
        "C1",
        "10.0.0.9:10911",
        "broker-z",
        "0",
        "10.0.0.9:10912",
        NOW,
        "30000",
        '{"counter":1,"timestamp":1}',
        "0",
        "conn-9",
        '["10.0.0.9:1"]',
        "",
        "",
        "0",
        "0",
        "full",
        "",
        "",
        ORDER_TOPIC_CONFIG,
        "2",
        *("T1", "8", "8", "6", "0"),
        *("T9", "4", "4", "6", "0"),
        "2500",
    ],
    "remove_broker": ["unregister", "C1", "10.0.0.1:10911", "broker-a", "", NOW, "2500"],
    "stage_topics": ["g1", "0", "1", "60000", "1", *("T5", "8", "8", "6", "0")],
    "apply_pending": ["broker-a", "2500"],
    "heartbeat": ["C1", "10.0.0.1:10911", NOW, "30000", "conn-9"],
    "query_data_version": [
        "C1",
        "10.0.0.1:10911",
        '{"counter":2,"timestamp":1}',
        NOW,
        "30000",
        "conn-9",
    ],
    "repair_broker": [
        "C1",
        "10.0.0.1:10911",
        "broker-a",
        "0",
        '{"counter":0,"timestamp":0}',
        "0",
        "10.0.0.1:10912",
        "",
        NOW,
        "60000",
        "conn-10.0.0.1:10911",
        "",
        "",
        "2",
        *("T1", "8", "8", "6", "0"),
        *("T8", "4", "4", "6", "0"),
    ],
    "repair_drift": ["2", "orphan", "T1", "ghost", "unlist", "T1", ""],
    "write_perm": ["broker-a", "wipe", "2500"],
    "delete_topic": ["T1", ""],
    "register_topic": ["T7", "1", "broker-a", "4", "4", "6", "0"],
    "kv_put": ["ns", "k", "v", ORDER_TOPIC_CONFIG],
    "kv_delete": ["ns", "k0", ORDER_TOPIC_CONFIG],
    "config_update": ["orderMessageEnable", "true"],
    "route": ["T1", ORDER_TOPIC_CONFIG],
    "cluster_info": [],
    "probe_expiry": ["pod-1", "300"],
}

_INT = [*NOT_INTEGERS]
_JAVA_INT = [*_INT, "2147483648", "-2147483649", "9" * 25]
_LONG = [*_INT, LONG_TOO_BIG, LONG_TOO_SMALL, "9" * 25]
_NOW = [*_INT, "-1", "9" * 25]
_NAME = [""]

# (script, 0-based argument index) -> values that script must refuse
MUST_REFUSE: dict[tuple[str, int], list[str]] = {
    ("register_broker", 0): _NAME,
    ("register_broker", 1): _NAME,
    ("register_broker", 2): _NAME,
    ("register_broker", 3): _LONG,
    ("register_broker", 5): _NOW,
    ("register_broker", 6): [*_INT, "0", "-1", "99", "604800001", LONG_MAX, "1" * 25],
    ("register_broker", 7): ["", "x", "{", "1"],
    ("register_broker", 8): _LONG,
    ("register_broker", 10): ["", "x", "[", "1"],
    ("register_broker", 12): ["yes", "TRUE", "1"],
    ("register_broker", 13): ["", "2", "true"],
    ("register_broker", 14): ["", "2", "true"],
    ("register_broker", 15): ["", "FULL", "x"],
    ("register_broker", 19): [*_INT, "-1", "0", "1", "3", "9" * 25],
    ("register_broker", 20): _NAME,
    **{("register_broker", i): _JAVA_INT for i in (21, 22, 23, 24, 26, 27, 28, 29)},
    ("register_broker", 25): _NAME,
    ("remove_broker", 0): ["", "x", "UNREGISTER"],
    ("register_broker", 30): [*_INT, "0", "10001", "9" * 25],
    ("remove_broker", 5): _NOW,
    ("remove_broker", 6): [*_INT, "0", "10001", "9" * 25],
    ("stage_topics", 0): ["", "a:b", "a b", "x{y}"],
    ("stage_topics", 1): [*_INT, "-1", "1", "9" * 25],
    ("stage_topics", 2): [*_INT, "0", "-1", "1000001", "9" * 25],
    ("stage_topics", 3): [*_INT, "999", "86400001", "9" * 25],
    ("stage_topics", 4): [*_INT, "-1", "0", "2", "10001", "9" * 25],
    ("stage_topics", 5): _NAME,
    **{("stage_topics", i): _JAVA_INT for i in (6, 7, 8, 9)},
    ("apply_pending", 0): _NAME,
    ("apply_pending", 1): [*_INT, "0", "10001", "9" * 25],
    ("heartbeat", 2): _NOW,
    ("heartbeat", 3): [*_INT, "0", "-1", "99", "604800001", LONG_MAX],
    ("query_data_version", 2): ["", "x", "1"],
    ("query_data_version", 3): _NOW,
    ("query_data_version", 4): [*_INT, "0", "-1", "99", "604800001", LONG_MAX],
    ("repair_broker", 0): _NAME,
    ("repair_broker", 1): _NAME,
    ("repair_broker", 2): _NAME,
    ("repair_broker", 3): _LONG,
    ("repair_broker", 4): ["", "x", "{", "1"],
    ("repair_broker", 5): _LONG,
    ("repair_broker", 8): _NOW,
    ("repair_broker", 9): [*_INT, "0", "-1", "99", "604800001", LONG_MAX],
    ("repair_broker", 12): ["yes", "TRUE", "1"],
    ("repair_broker", 13): [*_INT, "-1", "0", "1", "3", "9" * 25],
    ("repair_broker", 14): _NAME,
    **{("repair_broker", i): _JAVA_INT for i in (15, 16, 17, 18, 20, 21, 22, 23)},
    ("repair_broker", 19): _NAME,
    ("repair_drift", 0): [*_INT, "-1", "0", "1", "3", "9" * 25],
    ("repair_drift", 1): ["", "x", "ORPHAN"],
    ("repair_drift", 2): _NAME,
    ("repair_drift", 3): _NAME,
    ("repair_drift", 4): ["", "x", "LIST"],
    ("repair_drift", 5): _NAME,
    ("write_perm", 1): ["", "x", "WIPE"],
    ("write_perm", 2): [*_INT, "0", "10001", "9" * 25],
    ("delete_topic", 0): _NAME,
    ("register_topic", 0): _NAME,
    ("register_topic", 1): [*_INT, "-1", "0", "2", "9" * 25],
    ("register_topic", 2): _NAME,
    **{("register_topic", i): _JAVA_INT for i in (3, 4, 5, 6)},
    ("config_update", 0): _NAME,
    ("probe_expiry", 0): _NAME,
    ("probe_expiry", 1): [*_INT, "-1", "0", "60001", "9" * 25],
}


async def populate(redis: Any, namespace: str) -> RouteStore:
    """Two groups (a master and slave, a 5.x acting-master group), filter servers, KV."""
    store = RouteStore(redis, namespace)
    await store.load_scripts()
    topics = queue_configs([("T1", 8, 8, 6, 0), ("T2", 4, 4, 6, 0)])
    for name, addr, bid, acting in (
        ("broker-a", "10.0.0.1:10911", 0, None),
        ("broker-a", "10.0.0.2:10911", 1, None),
        ("broker-b", "10.0.0.3:10911", 0, True),
    ):
        await store.register_broker(
            BrokerRegistration(
                cluster="C1",
                broker_addr=addr,
                broker_name=name,
                broker_id=bid,
                ha_server_addr=addr.replace("10911", "10912"),
                topics=topics,
                filter_servers=["f:1"],
                enable_acting_master=acting,
                heartbeat_timeout_ms=60_000,
                conn_id=f"conn-{addr}",
            )
        )
    await store.register_topic("T3", [QueueData("broker-b", 2, 2, 6, 0)])
    await store.put_kv("ns", "k0", "v0")
    await store.put_kv(ORDER_TOPIC_CONFIG, "T1", "broker-a:8")
    await store.update_config({"clusterTest": "false"})
    assert await check_namespace(redis, namespace) == []
    return store


Snapshot = dict[bytes, tuple[bytes, Any, bool]]
"""key -> (its DUMP, its exact contents, whether it has a TTL). DUMP alone is not canonical (a
hash table restored from a DUMP may iterate in another order), so contents are compared."""


async def snapshot(redis: Any, prefix: str) -> Snapshot:
    """Every key of the namespace, byte for byte."""
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
    keys = [k async for k in redis.scan_iter(match=pattern, count=1000)]
    async with redis.pipeline(transaction=False) as pipe:
        for k in keys:
            pipe.dump(k)
            pipe.pttl(k)
            pipe.type(k)
        rows = await pipe.execute()
    types = [_s(rows[3 * i + 2]) for i in range(len(keys))]
    async with redis.pipeline(transaction=False) as pipe:
        for k, t in zip(keys, types, strict=True):
            {
                "string": lambda k=k: pipe.get(k),
                "hash": lambda k=k: pipe.hgetall(k),
                "set": lambda k=k: pipe.smembers(k),
                "zset": lambda k=k: pipe.zrange(k, 0, -1, withscores=True),
            }[t]()
        contents = await pipe.execute()
    return {
        k: (rows[3 * i], _canonical(contents[i]), rows[3 * i + 1] >= 0) for i, k in enumerate(keys)
    }


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _canonical(v: Any) -> Any:
    if isinstance(v, dict):
        return sorted(v.items())
    if isinstance(v, set):
        return sorted(v)
    return v


def same(a: Snapshot, b: Snapshot) -> bool:
    return {k: v[1:] for k, v in a.items()} == {k: v[1:] for k, v in b.items()}


def cases() -> list[tuple[str, int, str]]:
    out: list[tuple[str, int, str]] = []
    for script, base in BASE.items():
        for i in range(len(base)):
            values = dict.fromkeys([*HOSTILE, *MUST_REFUSE.get((script, i), [])])
            out += [(script, i, v) for v in values]
    return out


class Namespaces:
    """One populated namespace, restored from its DUMPs after a call that changed it."""

    def __init__(self, redis: Any, namespace: str) -> None:
        self.redis, self.namespace = redis, namespace
        self.store: RouteStore | None = None
        self.before: Snapshot = {}
        self.ttls: dict[bytes, int] = {}

    async def current(self) -> RouteStore:
        if self.store is None:
            self.store = await populate(self.redis, self.namespace)
            self.before = await snapshot(self.redis, self.store.keys.prefix)
            self.ttls = {k: await self.redis.pttl(k) for k in self.before}
        return self.store

    async def restore(self) -> None:
        assert self.store is not None
        now = await snapshot(self.redis, self.store.keys.prefix)
        if now.keys() - self.before.keys():
            await self.redis.delete(*(now.keys() - self.before.keys()))
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, (dump, _, _) in self.before.items():
                pipe.restore(key, max(self.ttls[key], 0), dump, replace=True)
            await pipe.execute()


async def call(store: RouteStore, script: str, args: list[str]) -> Any:
    return await getattr(store.scripts, script)(keys=[store.keys.prefix], args=args)


async def refused_without_writing(
    store: RouteStore,
    redis: Any,
    script: str,
    args: list[str],
    before: Snapshot | None = None,
) -> bool:
    """Run one call; True when it was refused (and then nothing changed)."""
    if before is None:
        before = await snapshot(redis, store.keys.prefix)
    try:
        await call(store, script, args)
    except ResponseError as e:
        assert "invalid argument" in str(e), f"{script} failed without a clear refusal: {e}"
        after = await snapshot(redis, store.keys.prefix)
        assert same(after, before), f"{script} {args!r} refused but wrote"
        return True
    return False


async def test_every_argument_of_every_script(redis: Any, namespace: str) -> None:
    spaces = Namespaces(redis, namespace)
    missing: list[str] = []
    for script, i, value in cases():
        store = await spaces.current()
        args = list(BASE[script])
        args[i] = value
        if await refused_without_writing(store, redis, script, args, spaces.before):
            continue
        if value in MUST_REFUSE.get((script, i), []):
            missing.append(f"{script} ARGV[{i + 1}]={value[:40]!r}")
        problems = await check_namespace(redis, store.keys.namespace)
        assert problems == [], f"{script} ARGV[{i + 1}]={value[:40]!r} accepted: {problems}"
        await spaces.restore()
    assert missing == [], f"accepted although invalid: {missing}"


@pytest.mark.parametrize("script", sorted(BASE))
async def test_argument_count_must_match(redis: Any, namespace: str, script: str) -> None:
    store = await populate(redis, namespace)
    base = BASE[script]
    variants = [[*base, "extra"]] + ([base[:-1]] if base else [])
    if script == "config_update":
        variants = [[*base, "dangling"], ["clusterTest"]]
    for args in variants:
        assert await refused_without_writing(store, redis, script, args), (script, args)
    # the valid call itself is accepted (the base is not refused by accident)
    await call(store, script, base)
    assert await check_namespace(redis, namespace) == []
