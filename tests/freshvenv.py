"""A newcomer's machine, as a pytest plugin (``pytest_plugins = ["tests.freshvenv"]``): a
fresh ``git clone`` of this repository and a fresh virtualenv in which README.md's install
command ran, verbatim, in the clone. Built once per session (a fresh install is slow) and
shared by every module that names this plugin.

The virtualenv is made by the machine's own ``python3`` (Debian's, as README.md assumes),
never from the interpreter running the suite, so the result does not depend on how that one
was installed; it has no access to any other environment's packages. Its directory is
readable by every user, so the container-image test can run it as an unprivileged user.

The clone is of the checkout's last commit (``HEAD``): uncommitted changes are not in it,
exactly as a newcomer would not have them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.serverproc import ROOT

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
SYSTEM_PYTHONS = ("/usr/bin/python3.11", "/usr/bin/python3", "/usr/local/bin/python3.11")


def readme_opening() -> tuple[str, str]:
    """README.md's first block, ``INSTALL && SERVE``: the two commands a newcomer runs first."""
    first = FENCE.findall(README.read_text())[0][1].strip()
    install, serve = first.split(" && ")
    return install, serve


def system_python() -> str:
    """The machine's own Python 3.11+ with ``venv`` (not the one running this suite)."""
    for path in SYSTEM_PYTHONS:
        if not os.access(path, os.X_OK):
            continue
        probe = subprocess.run(
            [path, "-c", "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"],
            capture_output=True,
        )
        if probe.returncode == 0:
            return path
    message = f"no system Python 3.11 with venv among {SYSTEM_PYTHONS}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Newcomer:
    base: Path
    clone: Path
    venv: Path
    home: Path
    install: str  # README.md's install command, run in the clone
    serve: str  # and its serve command
    install_log: str

    def env(self, **extra: str) -> dict[str, str]:
        """A shell of the newcomer: the venv activated, nothing of this checkout on the path."""
        drop = ("PYTHONPATH", "PYTEST_ADDOPTS", "VIRTUAL_ENV", "PYTHONHOME")
        env = {
            k: v for k, v in os.environ.items() if k not in drop and not k.startswith("NAMESRV_")
        }
        path = [str(self.venv / "bin")]
        path += [p for p in env.get("PATH", "").split(os.pathsep) if not _suite_bin(p)]
        return {
            **env,
            "PATH": os.pathsep.join(path),
            "VIRTUAL_ENV": str(self.venv),
            "HOME": str(self.home),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            **extra,
        }


def _suite_bin(entry: str) -> bool:
    """A PATH entry that belongs to the suite's interpreter (its bin/, pyenv's shims)."""
    own = {str(Path(prefix) / "bin") for prefix in (sys.prefix, sys.base_prefix)}
    return entry.rstrip("/") in own or "/.pyenv/" in entry


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{out[-4000:]}"
    return out


@pytest.fixture(scope="session")
def newcomer() -> Iterator[Newcomer]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    python = system_python()
    base = Path(tempfile.mkdtemp(prefix="namesrv-newcomer-"))
    base.chmod(0o755)
    clone, venv, home = base / "namesrv-redis", base / "venv", base / "home"
    home.mkdir()
    install, serve = readme_opening()
    come = Newcomer(base, clone, venv, home, install, serve, "")
    try:
        _run(["git", "clone", "--quiet", str(ROOT), str(clone)], base, come.env())
        _run([python, "-m", "venv", str(venv)], base, come.env())
        come.install_log = _run(["bash", "-euo", "pipefail", "-c", install], clone, come.env())
        yield come
    finally:
        shutil.rmtree(base, ignore_errors=True)
