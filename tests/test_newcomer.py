"""The newcomer: from a fresh ``git clone`` in a fresh virtualenv (``tests/freshvenv.py``),
README.md's opening commands and every ``sh`` block of every page under docs/, run as written.
Any non-zero exit, any traceback and any ERROR log line fails the test.

- README.md: its install command ran when the virtualenv was built; its ``serve`` starts the
  embedded default, answers ``/readyz``, and stops cleanly on Ctrl-C (SIGINT to its process
  group, as a terminal sends it), leaving its data directory under ``~``.
- docs/*.md: all ``sh`` blocks of a page in one bash (``set -euo pipefail``), in order, with
  the virtualenv on ``PATH`` and the clone as working directory. Only addresses are rewritten,
  to free ports or to real servers standing for the page's estate (a redis-server, a pod with
  a broker registered, a replay of the Java NameServer): the same rewriting
  ``tests/test_docs_commands.py`` uses, which checks those pages' output in detail.

``text`` blocks are output samples or need what this machine lacks (a JVM, a Kubernetes
cluster, a TLS Redis elsewhere, a run of many minutes); ``test_docs_commands.py`` keeps every
fence labelled, so a command block cannot escape both lists unnoticed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import RedisServerProcess, free_port
from tests.java_replay import JavaReplayServer
from tests.serverproc import ROOT, NamesrvProcess
from tests.test_docs_commands import FENCE, estate, local_subs

if TYPE_CHECKING:
    from tests.freshvenv import Newcomer

pytest_plugins = ["tests.freshvenv"]
__all__ = ["estate"]  # the module-scoped estate of test_docs_commands, used here too

Estate = tuple[RedisServerProcess, NamesrvProcess, JavaReplayServer]
TRACEBACK = "Traceback (most recent call last)"
ERROR_LINE = re.compile(r"^.*\bERROR\b.*$", re.M)
# what a page's commands must print, beyond exiting cleanly (the estate pages' output is
# checked in detail by tests/test_docs_commands.py)
EXPECTED = {
    "quickstart.md": (
        '{"status":"ready"}',
        "DefaultCluster  broker-a      0     127.0.0.1:10911",
        '"brokerName":"broker-a"',  # the HTTP route
        "<title>namesrv-redis console</title>",  # the console ships in the wheel
    ),
}
# The environment, never the commands, makes room for a loaded machine: attack_load.py's
# 17,000-topic registration must be acknowledged, and six suites share these two cores.
PAGE_ENV = {"benchmarks.md": {"NAMESRV_REDIS_WRITE_TIMEOUT_MILLIS": "20000"}}
ESTATE_PAGES = ("troubleshooting.md", "operations.md", "migration.md")


def sh_blocks(page: Path) -> list[str]:
    return [body for kind, body in FENCE.findall(page.read_text()) if kind == "sh"]


PAGES = sorted(p.name for p in (ROOT / "docs").glob("*.md") if sh_blocks(p))


def assert_clean(what: str, returncode: int, out: str) -> None:
    assert returncode == 0, f"{what} exited {returncode}:\n{out[-6000:]}"
    assert TRACEBACK not in out, f"{what} printed a traceback:\n{out[-6000:]}"
    errors = ERROR_LINE.findall(out)
    assert not errors, f"{what} logged errors: {errors}\n{out[-6000:]}"


def page_subs(page: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The addresses a page names, mapped to the servers this test gives it."""
    if page == "quickstart.md":  # it starts its own server: free ports instead of 9876/8080
        return {"9876": str(free_port()), "8080": str(free_port())}
    if page not in ESTATE_PAGES:
        return {}
    redis, pod, java = request.getfixturevalue("estate")
    return {
        **local_subs(redis, pod),
        "java-ns:9876": java.addr,
        "namesrv:9876": pod.addr,
        # the captured Java estate's KV namespace (it has no ORDER_TOPIC_CONFIG listing)
        "ORDER_TOPIC_CONFIG": "probe_ns",
    }


@pytest.mark.slow
def test_readme_install_then_serve_then_ctrl_c(newcomer: Newcomer, tmp_path: Path) -> None:
    install, serve = newcomer.install, newcomer.serve
    assert (install, serve) == ("pip install .", "namesrv-redis serve")
    assert "Successfully installed" in newcomer.install_log, newcomer.install_log[-2000:]
    assert (newcomer.venv / "bin" / "namesrv-redis").is_file()
    http_port = free_port()
    env = newcomer.env(
        HOME=str(tmp_path),
        # the defaults 9876/8080 may be taken on a shared machine: the environment moves them
        NAMESRV_LISTEN_PORT=str(free_port()),
        NAMESRV_HTTP_PORT=str(http_port),
        NAMESRV_LISTEN_HOST="127.0.0.1",
        NAMESRV_HTTP_HOST="127.0.0.1",
    )
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {serve}"],
            cwd=newcomer.clone,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, like a terminal's foreground job
        )
    try:
        ready = False
        deadline = time.monotonic() + 120
        while not ready and time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{http_port}/readyz").status_code == 200
            except httpx.HTTPError:
                time.sleep(0.5)
        assert ready, f"no ready pod:\n{log_path.read_text(errors='replace')[-6000:]}"
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
        returncode = proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert (tmp_path / "namesrv" / "redis").is_dir()  # the embedded default's data, under ~
    log = log_path.read_text(errors="replace")
    assert_clean(serve, returncode, log)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_docs_page_as_written(
    page: str, newcomer: Newcomer, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    script = "\n".join(sh_blocks(newcomer.clone / "docs" / page))
    for old, new in page_subs(page, request).items():
        script = script.replace(old, new)
    proc = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=newcomer.clone,
        env=newcomer.env(HOME=str(tmp_path), **PAGE_ENV.get(page, {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        with contextlib.suppress(ProcessLookupError):  # what the page left running
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert_clean(f"docs/{page}:\n{script}\n---", proc.returncode, out)
    for expected in EXPECTED.get(page, ()):
        assert expected in out, f"docs/{page} did not print {expected!r}:\n{out[-6000:]}"
