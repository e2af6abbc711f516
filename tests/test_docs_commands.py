"""The docs' commands, checked in detail with this checkout's code: the ``sh`` blocks of
docs/operations.md, migration.md and troubleshooting.md (all blocks of one page in one bash,
in order, ``set -euo pipefail``) against a real redis-server, a ``serve`` pod with a broker
registered as ``127.0.0.1:10911`` (as in the captured Java estate) and a replay of the Java
NameServer's captured answers standing for ``java-ns:9876``, with only addresses rewritten;
what they print is asserted. The Kubernetes manifests are checked structurally and their
probes asked of a real pod. docs/admin.md's terminal sessions (``text`` blocks of
``$ command``, output, ``(exit N)``) are replayed against a like estate.

``text`` blocks are output samples or need what CI lacks (a JVM, a Kubernetes cluster, a
remote TLS Redis, a run of many minutes); every fence of docs/ must say which it is.
``tests/test_newcomer.py`` runs every page's ``sh`` blocks again, from a fresh clone in a
fresh virtualenv (quickstart's output is checked there, as it installs the clone).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from namesrv_redis.cli import build_parser
from namesrv_redis.settings.config import Settings
from namesrv_redis.sim.broker import SimBroker
from tests.brokerthread import BrokerThread
from tests.conftest import RedisServerProcess
from tests.java_replay import JavaReplayServer
from tests.serverproc import ROOT, NamesrvProcess

DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def blocks(page: str, lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall((DOCS / page).read_text()) if kind == lang]


def run_page(page: str, subs: dict[str, str], env: dict[str, str], cwd: Path) -> str:
    script = "\n".join(blocks(page, "sh"))
    assert script.strip(), f"{page} has no sh block"
    for old, new in subs.items():
        script = script.replace(old, new)
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, f"{page} failed ({run.returncode}):\n{script}\n---\n{out}"
    return out


def shim_env(tmp_path: Path) -> dict[str, str]:
    """``namesrv-redis`` and ``python -m namesrv_redis…`` run this checkout's code.

    Both are scripts that ``exec`` this interpreter by its own path, never a symlink to it: a
    virtualenv's python finds its environment (``pyvenv.cfg``) next to the path it was started
    by, so a symlink elsewhere would run the base interpreter without the venv's packages."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, argv in (("namesrv-redis", "-m namesrv_redis.cli "), ("python", "")):
        shim = bindir / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {argv}"$@"\n')
        shim.chmod(0o755)
    (tmp_path / "scripts").symlink_to(ROOT / "scripts")
    return {
        **os.environ,
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }


@pytest.fixture(scope="module")
def estate() -> Iterator[tuple[RedisServerProcess, NamesrvProcess, JavaReplayServer]]:
    redis = RedisServerProcess().start()
    pod = NamesrvProcess(redis.url, "default").start()
    sim = SimBroker("DefaultCluster", "broker-a", "127.0.0.1:10911")
    sim.add_topics(["TopicTest", "TBW102"], queues=8)
    broker = BrokerThread(pod.port, sim).start()
    java = JavaReplayServer().start()
    yield redis, pod, java
    java.stop()
    broker.stop()
    pod.stop()
    redis.stop()


# A page's developer-install line: this suite's environment is that install already, and the
# checkout's pages must never reinstall the interpreter running them (test_newcomer.py runs
# the line for real, in its fresh virtualenv).
DEV_INSTALL = "pip install -q -e '.[test]'"


def local_subs(redis: RedisServerProcess, pod: NamesrvProcess) -> dict[str, str]:
    return {
        "localhost:9876": pod.addr,
        "localhost:8080": f"127.0.0.1:{pod.http_port}",
        "localhost:6379": f"127.0.0.1:{redis.port}",
        "-p 6379": f"-p {redis.port}",
    }


@pytest.mark.slow
def test_troubleshooting_commands(
    estate: tuple[RedisServerProcess, NamesrvProcess, JavaReplayServer], tmp_path: Path
) -> None:
    redis, pod, _ = estate
    out = run_page("troubleshooting.md", local_subs(redis, pod), shim_env(tmp_path), tmp_path)
    assert "TOPIC_NOT_EXIST" in out and "exit code 3" in out
    assert "namesrv_redis_up 1.0" in out
    assert "consistent:" in out


@pytest.mark.slow
def test_operations_commands_and_manifests(
    estate: tuple[RedisServerProcess, NamesrvProcess, JavaReplayServer], tmp_path: Path
) -> None:
    redis, pod, _ = estate
    subs = {DEV_INSTALL: "true", **local_subs(redis, pod)}
    out = run_page("operations.md", subs, shim_env(tmp_path), tmp_path)
    assert '{"status":"ok"}' in out and '{"status":"ready"}' in out
    assert 'namesrv_estate_brokers{namespace="default"} 1.0' in out
    assert "pod RSS idle" in out

    docs = [d for b in blocks("operations.md", "yaml") for d in yaml.safe_load_all(b) if d]
    kinds = {d["kind"]: d for d in docs}
    assert {"Deployment", "Service", "Secret"} <= set(kinds)
    dep, svc = kinds["Deployment"], kinds["Service"]
    template = dep["spec"]["template"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert svc["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    (container,) = template["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"remoting": 9876, "http": 8080}
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= set(ports)
    build_parser().parse_args(["serve", *container["args"]])  # options that exist
    for e in container["env"]:
        assert e["name"].startswith("NAMESRV_")
        assert e["name"][8:].lower() in Settings.model_fields, e["name"]
    secret_keys = set(kinds["Secret"]["stringData"])
    for e in container["env"]:
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        assert ref is None or ref["key"] in secret_keys
    with httpx.Client(base_url=f"http://127.0.0.1:{pod.http_port}") as http:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["port"] == "http"
            assert http.get(get["path"]).status_code == 200, probe
        annotations = template["metadata"]["annotations"]
        assert http.get(annotations["prometheus.io/path"]).status_code == 200


@pytest.mark.slow
def test_migration_commands(
    estate: tuple[RedisServerProcess, NamesrvProcess, JavaReplayServer], tmp_path: Path
) -> None:
    _, pod, java = estate
    subs = {
        "java-ns:9876": java.addr,
        "namesrv:9876": pod.addr,
        # the captured Java estate's KV namespace (it has no ORDER_TOPIC_CONFIG listing)
        "ORDER_TOPIC_CONFIG": "probe_ns",
    }
    out = run_page("migration.md", subs, shim_env(tmp_path), tmp_path)
    assert "same route" in out
    assert f"copied 1 key(s) of probe_ns from {java.addr} to {pod.addr}" in out
    assert f"{java.addr}  poll  TopicTest  now:" in out
    assert f"{pod.addr}  sse   TopicTest  now:" in out
    configs = (tmp_path / "configs.txt").read_text()
    assert f"============{java.addr}============" in configs
    assert f"============{pod.addr}============" in configs


def test_every_docs_fence_says_what_it_is() -> None:
    """A fence without a language would be neither run (``sh``) nor declared output or out of
    reach (``text``): each block of docs/ is one or the other, or a data format."""
    unlabelled = [
        f"{page.name}: {body.splitlines()[0] if body.strip() else '(empty)'}"
        for page in sorted(DOCS.glob("*.md"))
        for kind, body in FENCE.findall(page.read_text())
        if not kind
    ]
    assert not unlabelled, unlabelled


def test_shims_keep_the_running_environment(tmp_path: Path) -> None:
    """The page's ``python`` is this interpreter in its own environment (a virtualenv's python
    reached through a symlink elsewhere would lose the venv and its packages)."""
    env = shim_env(tmp_path)
    code = "import sys, namesrv_redis; print(sys.prefix, namesrv_redis.__file__)"
    out = subprocess.run(
        ["python", "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [sys.prefix, str(ROOT / "namesrv_redis" / "__init__.py")]


PROMPT = "$ "
EXIT_NOTE = re.compile(r"^\(exit (\d+)\)$")


def transcripts(page: str) -> list[tuple[str, list[str], int]]:
    """``text`` blocks written as a terminal session: (command, output lines, exit code)."""
    sessions: list[tuple[str, list[str], int]] = []
    for body in blocks(page, "text"):
        for line in body.splitlines():
            if line.startswith(PROMPT):
                sessions.append((line[len(PROMPT) :], [], 0))
            elif sessions and (note := EXIT_NOTE.match(line)):
                sessions[-1] = (sessions[-1][0], sessions[-1][1], int(note.group(1)))
            elif sessions and line.strip():
                sessions[-1][1].append(line)
    return sessions


@pytest.mark.slow
def test_admin_transcripts_are_what_the_cli_prints(tmp_path: Path) -> None:
    """docs/admin.md shows terminal sessions (``$ command``, its output, ``(exit N)``). Each
    command runs, in order, against an estate like the page's (broker-a with its three topics
    on our pod, the Java NameServer's captured answers for ``java-ns:9876``): it exits with the
    documented code, and every documented output line is printed (compared word by word, as
    the rewritten addresses change the column widths), except liveness countdowns, data
    versions and timestamps, which differ from run to run."""
    sessions = transcripts("admin.md")
    assert len(sessions) >= 10
    redis = RedisServerProcess().start()
    pod = NamesrvProcess(redis.url, "default").start()
    sim = SimBroker("DefaultCluster", "broker-a", "127.0.0.1:10911")
    sim.add_topics(["TopicTest", "OrderTopic", "SELF_TEST_TOPIC"], queues=8)
    broker = BrokerThread(pod.port, sim).start()
    java = JavaReplayServer().start()
    subs = {"java-ns:9876": java.addr, "127.0.0.1:9876": pod.addr}
    env = shim_env(tmp_path)
    try:
        for command, expected, code in sessions:
            for old, new in subs.items():
                command = command.replace(old, new)
                expected = [line.replace(old, new) for line in expected]
            if command.split()[:3] == ["namesrv-redis", "admin", "watch"]:
                command += " --duration 2"  # the page's watch runs until Ctrl-C
            run = subprocess.run(
                ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=120
            )
            out = run.stdout + run.stderr
            assert run.returncode == code, f"{command}: exit {run.returncode}\n{out}"
            printed = [line.split() for line in out.splitlines()]
            for line in expected:
                if re.search(r"\d{4}-\d\d-\d\dT|\d+\.\d\s+\d+$", line):
                    continue  # a timestamp, or a countdown and data version
                assert line.split() in printed, f"{command}: {line!r} not in\n{out}"
    finally:
        java.stop()
        broker.stop()
        pod.stop()
        redis.stop()
