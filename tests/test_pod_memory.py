"""What keeps a pod's memory small (docs/benchmarks.md, "Memory"): modules a ``serve`` process
does not load, the test-mode certificate made in a child process, and accepted registration
bodies kept deflated for a rebuild."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
import zlib
from pathlib import Path

from namesrv_redis.domain.rebuild import (
    PACK_MIN_BYTES,
    AcceptedRegistration,
    AcceptedRegistrations,
    PackedBody,
)
from namesrv_redis.rocketmq.headers import RegisterBrokerHeader

NOT_IN_A_POD = (
    "httpx",
    "rich",
    "pygments",
    "yaml",
    "cryptography.x509",
    "namesrv_redis.admin.commands",
)


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout
    return set(out.split())


def test_a_serve_process_does_not_load_the_admin_client_nor_cryptography() -> None:
    """Everything ``serve`` imports (its argument parser, the pod, the HTTP tier)."""
    loaded = _loaded_after(
        "from namesrv_redis.cli import build_parser\n"
        "build_parser().parse_args(['serve', '--listen-port', '1'])\n"
        "import namesrv_redis.process.workers, namesrv_redis.process.pod, namesrv_redis.http.app\n"
        "import namesrv_redis.http.fast_routes, namesrv_redis.http.limits\n"
        "import namesrv_redis.http.status, namesrv_redis.http.console, uvicorn\n"
    )
    assert "namesrv_redis.process.pod" in loaded and "fastapi" in loaded
    assert not loaded & set(NOT_IN_A_POD), loaded & set(NOT_IN_A_POD)


def test_the_admin_command_still_parses_and_runs_its_verbs() -> None:
    """The verbs moved to a parser module of their own: each one still reaches its code."""
    from namesrv_redis.admin.commands import VERBS
    from namesrv_redis.cli import build_parser

    for verb in VERBS:
        extra = {
            "topicRoute": ["-t", "T"],
            "wipeWritePerm": ["-b", "B"],
            "addWritePerm": ["-b", "B"],
            "deleteTopic": ["-t", "T"],
            "getKvConfig": ["-s", "N", "-k", "K"],
            "updateKvConfig": ["-s", "N", "-k", "K", "-v", "V"],
            "deleteKvConfig": ["-s", "N", "-k", "K"],
            "copyKvConfig": ["-s", "N", "--to", "h:1"],
            "kvList": ["-s", "N"],
            "updateNamesrvConfig": ["-k", "K", "-v", "V"],
            "watch": ["-t", "T"],
        }.get(verb, [])
        args = build_parser().parse_args(["admin", verb, "-n", "127.0.0.1:1", *extra])
        assert args.verb == verb
    admin = next(
        a
        for a in build_parser()._subparsers._group_actions[0].choices.values()  # type: ignore[union-attr]
        if a.prog.endswith(" admin")
    )
    assert set(admin._subparsers._group_actions[0].choices) == set(VERBS)  # type: ignore[union-attr]
    code = subprocess.run(
        [sys.executable, "-m", "namesrv_redis.cli", "admin", "topicRoute", "-n", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert code.returncode == 2 and "-t/--topic" in code.stderr  # argparse: missing option


def test_the_test_mode_certificate_is_made_in_a_child_process(tmp_path: Path) -> None:
    (tmp_path / "second").mkdir()
    loaded = _loaded_after(
        "from pathlib import Path\n"
        "from namesrv_redis.remoting.selfsigned import write_self_signed\n"
        f"cert, key = write_self_signed(Path({str(tmp_path)!r}))\n"
        f"write_self_signed(Path({str(tmp_path / 'second')!r}))\n"
    )
    assert "cryptography.x509" not in loaded
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "selfsigned.crt", tmp_path / "selfsigned.key")
    assert (tmp_path / "selfsigned.key").stat().st_mode & 0o077 == 0
    # a second pod of the same process gets the same certificate, without a second child
    assert (tmp_path / "second" / "selfsigned.crt").read_bytes() == (
        tmp_path / "selfsigned.crt"
    ).read_bytes()


def _header(compressed: bool, addr: str) -> RegisterBrokerHeader:
    return RegisterBrokerHeader.parse(
        {
            "brokerName": "b",
            "brokerAddr": addr,
            "clusterName": "c",
            "haServerAddr": "127.0.0.1:10912",
            "brokerId": "0",
            "compressed": "true" if compressed else "false",
        }
    )


def _reg(
    body: bytes | bytearray, compressed: bool = False, addr: str = "127.0.0.1:10911"
) -> AcceptedRegistration:
    return AcceptedRegistration(_header(compressed, addr), body, "t", 0, "conn", 30_000, 0.0)


async def test_a_big_accepted_body_is_kept_deflated_once_the_loop_gets_to_it() -> None:
    body = bytearray(b'{"topicConfigTable":' + b'{"TopicA":{"readQueueNums":8}},' * 20_000)
    assert len(body) >= PACK_MIN_BYTES
    kept = AcceptedRegistrations()
    reg = _reg(body)
    kept.accepted(reg)
    assert reg.body is body  # not copied, not deflated on the registration's way
    for _ in range(1000):  # a slice per loop iteration
        await asyncio.sleep(0)
        if isinstance(reg.body, PackedBody):
            break
    assert isinstance(reg.body, PackedBody) and len(reg.body.data) < len(body) // 10
    assert reg.raw_body() == bytes(body)


async def test_small_compressed_and_replaced_bodies_are_not_packed() -> None:
    kept = AcceptedRegistrations()
    small = _reg(b"{}", addr="127.0.0.1:1")
    kept.accepted(small)
    deflated = zlib.compress(b"x" * PACK_MIN_BYTES * 2)
    compressed = _reg(deflated + b"\0" * PACK_MIN_BYTES, compressed=True, addr="127.0.0.1:2")
    kept.accepted(compressed)
    big = b"y" * PACK_MIN_BYTES
    replaced = _reg(big)
    kept.accepted(replaced)
    kept.accepted(_reg(b"{}"))  # the same broker registered again before the loop came by
    for _ in range(100):
        await asyncio.sleep(0)
    assert small.body == b"{}" and small.raw_body() == b"{}"
    assert isinstance(compressed.body, bytes)
    assert replaced.body is big


def test_a_workers_supervisor_loads_no_redis_client_asyncio_nor_metrics() -> None:
    """The parent of a ``serve --workers N`` pod only reads settings and watches its workers:
    it does not pay for the Redis client, asyncio/ssl or prometheus-client (27.7 MiB of RSS
    measured, 43.7 before; docs/operations.md)."""
    loaded = _loaded_after(
        "from namesrv_redis import cli\n"
        "args = cli.build_parser().parse_args(\n"
        "    ['serve', '--workers', '2', '--redis-url', 'redis://127.0.0.1:1/0'])\n"
        "settings = cli.settings_from_args(args)\n"
        "import namesrv_redis.process.workers, namesrv_redis.store.datadir\n"
        "from namesrv_redis.store.memory import is_memory_url\n"
        "from namesrv_redis.telemetry.worker_metrics_dir import WorkerMetricsDir\n"
        "with WorkerMetricsDir():\n"
        "    pass\n"
    )
    assert "namesrv_redis.process.workers" in loaded and "pydantic" in loaded
    heavy = {"redis", "asyncio", "ssl", "prometheus_client", "fastapi", "uvloop", "uvicorn"}
    assert not loaded & heavy, loaded & heavy
