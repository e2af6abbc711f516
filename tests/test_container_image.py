"""docker/Dockerfile's runtime contract, run for real without a container engine.

No engine can build the image here: podman and buildah install from Debian, but the base
image (``python:3.11-slim``) comes from a container registry this machine cannot reach. So
this test does what the image does at run time, read from the Dockerfile itself: it creates
the image's user with the Dockerfile's own ``useradd`` flags (its paths under a scratch root,
a free uid and a unique name), sets the image's ``ENV`` (same scratch root) and ``HOME`` from
that user's passwd entry as the engine does, and runs ``ENTRYPOINT`` + ``CMD`` as that user
(``setpriv``) in its ``WORKDIR``, from a fresh virtualenv where ``pip install .`` ran on a
fresh clone (the image's ``RUN pip install .``). Then ``/readyz`` must answer 200 and the
``HEALTHCHECK`` command succeed, in both modes: the embedded default (its data directory is
created, owned by the user) and a Redis URL. ``docker stop`` (SIGTERM) must end it cleanly.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import RedisServerProcess, free_port
from tests.serverproc import ROOT

if TYPE_CHECKING:
    from tests.freshvenv import Newcomer

pytest_plugins = ["tests.freshvenv"]

DOCKERFILE = ROOT / "docker" / "Dockerfile"


@dataclass
class Image:
    """What a Dockerfile says about the container it makes (the last of each instruction)."""

    user: str = "root"
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    runs: list[list[str]] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    def useradd(self) -> list[str]:
        """The ``useradd …`` command of the RUN instructions."""
        for run in self.runs:
            for i, word in enumerate(run):
                if word == "useradd":
                    end = next((j for j in range(i, len(run)) if run[j] in ("&&", ";")), len(run))
                    return run[i:end]
        raise AssertionError("the Dockerfile creates no user")


def instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments), with continuation lines joined and comments dropped."""
    logical = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        logical += line.rstrip()
        if logical.endswith("\\"):
            logical = logical[:-1] + " "
            continue
        if logical.strip():
            word, _, rest = logical.strip().partition(" ")
            yield word.upper(), rest.strip()
        logical = ""


def parse(text: str) -> Image:
    image = Image()
    for word, rest in instructions(text):
        if word == "USER":
            image.user = rest
        elif word == "WORKDIR":
            image.workdir = rest
        elif word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                image.env[key] = value
        elif word == "ENTRYPOINT":
            image.entrypoint = json.loads(rest)
        elif word == "CMD":
            image.cmd = json.loads(rest)
        elif word == "HEALTHCHECK":
            image.healthcheck = json.loads(rest[rest.index("CMD") + 3 :])
        elif word == "COPY":
            image.copied += rest.split()[:-1]
        elif word == "RUN":
            image.runs.append(shlex.split(rest))
        elif word == "VOLUME":
            image.volumes += json.loads(rest)
    return image


IMAGE = parse(DOCKERFILE.read_text())


def option(argv: list[str], *names: str) -> str | None:
    for i, word in enumerate(argv):
        if word in names:
            return argv[i + 1]
    return None


def test_parser_reads_what_the_engine_reads() -> None:
    image = parse(
        'FROM x\nWORKDIR /w\nRUN a && useradd --uid 5 \\\n  -m u && b\nENV A=1 B="two words"\n'
        'USER 5:5\nCMD ["--x"]\nENTRYPOINT ["e", "serve"]\n# USER root\n'
    )
    assert (image.user, image.workdir) == ("5:5", "/w")
    assert image.env == {"A": "1", "B": "two words"}
    assert image.entrypoint + image.cmd == ["e", "serve", "--x"]
    assert image.useradd() == ["useradd", "--uid", "5", "-m", "u"]


def test_image_runs_unprivileged_with_its_data_under_a_home_it_creates() -> None:
    useradd = IMAGE.useradd()
    uid = IMAGE.user.split(":")[0]
    assert uid not in ("root", "0"), "the image must not run as root"
    assert option(useradd, "--uid", "-u") == uid, "USER is the user useradd creates"
    assert {"--create-home", "-m"} & set(useradd), "the user needs a home it can write"
    home = option(useradd, "--home-dir", "-d")
    assert home is not None
    data_dir = IMAGE.env.get("NAMESRV_DATA_DIR", f"{home}/namesrv/redis")
    assert data_dir.startswith(home + "/"), "the embedded Redis' files live in the user's home"
    assert home in IMAGE.volumes, "the data survives the container: the home is a volume"
    # pyproject's license-files must exist where `pip install .` builds the wheel
    assert {"LICENSE", "NOTICE"} <= set(IMAGE.copied)


@dataclass
class ImageUser:
    name: str
    uid: int
    gid: int
    home: Path
    root: Path  # the scratch root standing for the image's filesystem

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")


def free_uid(start: int) -> int:
    uid = start
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


@pytest.fixture
def image_user(newcomer: Newcomer) -> Iterator[ImageUser]:
    """The Dockerfile's useradd, run here: its flags, its paths under a scratch root."""
    if os.geteuid() != 0 or not (shutil.which("useradd") and shutil.which("setpriv")):
        if os.environ.get("CI"):
            pytest.fail("the image test needs root, useradd and setpriv")
        pytest.skip("needs root, useradd and setpriv")
    root = newcomer.base / f"rootfs-{uuid.uuid4().hex[:8]}"
    argv = IMAGE.useradd()
    name = f"nsr{uuid.uuid4().hex[:8]}"
    uid = free_uid(int(option(argv, "--uid", "-u") or 10001))
    cmd = [argv[0]]
    i = 1
    while i < len(argv) - 1:  # the last word is the name
        word = argv[i]
        if word in ("--uid", "-u"):
            cmd += [word, str(uid)]
            i += 2
        elif word in ("--home-dir", "-d"):
            home = root / argv[i + 1].lstrip("/")
            home.parent.mkdir(parents=True, exist_ok=True)
            cmd += [word, str(home)]
            i += 2
        else:
            cmd.append(word)
            i += 1
    root.mkdir(exist_ok=True)
    for parent in (root, *[p for p in root.rglob("*") if p.is_dir()]):
        parent.chmod(0o755)
    subprocess.run([*cmd, name], check=True, capture_output=True)
    try:
        entry = pwd.getpwnam(name)
        yield ImageUser(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir), root)
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["embedded", "redis-url"])
def test_image_command_as_its_user(mode: str, newcomer: Newcomer, image_user: ImageUser) -> None:
    http_port = free_port()
    env = {
        "PATH": f"{newcomer.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(image_user.home),  # the engine sets HOME from the user's passwd entry
        **{k: str(image_user.path(v)) if v.startswith("/") else v for k, v in IMAGE.env.items()},
        # `docker run -p`: the ports move to free ones, on loopback
        "NAMESRV_LISTEN_PORT": str(free_port()),
        "NAMESRV_HTTP_PORT": str(http_port),
        "NAMESRV_LISTEN_HOST": "127.0.0.1",
        "NAMESRV_HTTP_HOST": "127.0.0.1",
    }
    redis = RedisServerProcess().start() if mode == "redis-url" else None
    if redis is not None:
        env["NAMESRV_REDIS_URL"] = redis.url
    as_user = ["setpriv", f"--reuid={image_user.uid}", f"--regid={image_user.gid}"]
    as_user.append("--clear-groups")
    workdir = image_user.path(IMAGE.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = image_user.root / "container.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*as_user, *IMAGE.entrypoint, *IMAGE.cmd],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        status = 0
        deadline = time.monotonic() + 120
        while status != 200 and time.monotonic() < deadline and proc.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{http_port}/readyz").status_code
            except httpx.HTTPError:
                time.sleep(0.5)
        log_text = log_path.read_text(errors="replace")
        assert status == 200, f"/readyz answered {status}; exit {proc.poll()}:\n{log_text}"
        check = [w.replace(":8080/", f":{http_port}/") for w in IMAGE.healthcheck]
        health = subprocess.run([*as_user, *check], env=env, capture_output=True, timeout=30)
        assert health.returncode == 0, health
        data_dir = Path(env.get("NAMESRV_DATA_DIR", image_user.home / "namesrv" / "redis"))
        if mode == "embedded":
            assert data_dir.is_dir(), log_text
            assert data_dir.stat().st_uid == image_user.uid
        else:
            assert not data_dir.exists(), "a Redis URL needs no local data"
        proc.send_signal(signal.SIGTERM)  # docker stop
        assert proc.wait(60) == 0, log_path.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if redis is not None:
            redis.stop()
