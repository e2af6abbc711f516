"""The deployment files hold: every manifest under deploy/kubernetes/ validates offline against
the real Kubernetes JSON schemas (``kubernetes-validate`` ships them), strictly, on the oldest
and newest versions checked; ports, probes and selectors agree across the ConfigMap,
Deployment, Service, PodDisruptionBudget and docker/Dockerfile, and the probe paths answer
200 on a real pod started with the ConfigMap's settings; the Sentinel overlay patches what
exists with a well-formed Sentinel URL; the systemd unit passes ``systemd-analyze verify``
(when installed) and keeps the embedded Redis' data in its state directory; a built wheel
carries LICENSE and NOTICE."""

from __future__ import annotations

import copy
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
SENTINEL = K8S / "sentinel"
UNIT = ROOT / "deploy" / "systemd" / "namesrv-redis.service"

# Oldest and newest Kubernetes versions the manifests are checked against.
K8S_VERSIONS = ("1.27.0", "latest")
HEALTHZ, READYZ = "/healthz", "/readyz"
REMOTING_PORT, HTTP_PORT = 9876, 8080  # README.md: the defaults of --listen-port, --http-port

Resource = dict[str, Any]


def load_all(path: Path) -> list[Resource]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} holds no YAML document"
    assert all(isinstance(d, dict) for d in docs), path
    return docs


def kustomization(directory: Path) -> Resource:
    (doc,) = load_all(directory / "kustomization.yaml")
    assert doc["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert doc["kind"] == "Kustomization"
    return doc


def base_resources() -> list[Resource]:
    """The resources of deploy/kubernetes/kustomization.yaml, in its order."""
    out: list[Resource] = []
    for name in kustomization(K8S)["resources"]:
        out += load_all(K8S / name)
    return out


def one(resources: list[Resource], kind: str) -> Resource:
    found = [r for r in resources if r["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge as kustomize applies it to maps (the only shape our patches use)."""
    if isinstance(target, dict) and isinstance(patch, dict):
        out = dict(target)
        for key, value in patch.items():
            out[key] = merge_patch(target[key], value) if key in target else value
        return out
    return copy.deepcopy(patch)


def sentinel_resources() -> list[Resource]:
    """deploy/kubernetes/sentinel rendered as kustomize renders it: the base plus its patches."""
    kz = kustomization(SENTINEL)
    assert [(SENTINEL / r).resolve() for r in kz["resources"]] == [K8S.resolve()]
    rendered = base_resources()
    for entry in kz["patches"]:
        for patch in load_all(SENTINEL / entry["path"]):
            key = (patch["apiVersion"], patch["kind"], patch["metadata"]["name"])
            hits = [
                i
                for i, r in enumerate(rendered)
                if (r["apiVersion"], r["kind"], r["metadata"]["name"]) == key
            ]
            assert len(hits) == 1, f"patch {entry['path']} matches {len(hits)} resources: {key}"
            rendered[hits[0]] = merge_patch(rendered[hits[0]], patch)
    return rendered


def kubernetes_validate() -> Any:
    try:
        import kubernetes_validate as kv
    except ImportError:
        if os.environ.get("CI"):  # the test extra installs it: CI must not skip
            pytest.fail("kubernetes-validate missing: it comes with the test extra")
        pytest.skip("kubernetes-validate not installed (pip install kubernetes-validate)")
    return kv


def validate(resource: Resource, version: str) -> None:
    kv = kubernetes_validate()
    if version == "latest":
        version = kv.latest_version()
    # strict: the schemas with additionalProperties false, so a misspelt field fails too
    kv.validate(resource, version, strict=True)


def container(deployment: Resource) -> Resource:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(c, dict)
    return c


def container_port(c: Resource, port: int | str) -> int:
    """The number a probe's or Service's port (a number or a port name) points at."""
    by_name = {p["name"]: p["containerPort"] for p in c["ports"]}
    numbers = set(by_name.values())
    resolved = by_name.get(port) if isinstance(port, str) else port
    assert resolved is not None and resolved in numbers, f"port {port!r} is not in {by_name}"
    return int(resolved)


def documented_env_names() -> set[str]:
    text = (ROOT / "README.md").read_text() + "".join(
        p.read_text() for p in (ROOT / "docs").glob("*.md")
    )
    return set(re.findall(r"\bNAMESRV_[A-Z0-9_]+\b", text))


def all_manifests() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


# --- Kubernetes manifests -------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", all_manifests(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_validates_against_the_kubernetes_schema(path: Path, version: str) -> None:
    for resource in load_all(path):
        if path.parent == SENTINEL:  # a patch: validated as applied, and alone here too
            resource = merge_patch(one(base_resources(), resource["kind"]), resource)
        validate(resource, version)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_sentinel_overlay_renders_valid_resources(version: str) -> None:
    for resource in sentinel_resources():
        validate(resource, version)


def test_the_validator_rejects_broken_manifests() -> None:
    deployment = one(base_resources(), "Deployment")
    validate(deployment, "latest")
    kv = kubernetes_validate()
    broken_type = copy.deepcopy(deployment)
    broken_type["spec"]["replicas"] = "two"
    misspelt = copy.deepcopy(deployment)
    container(misspelt)["livenessProbe"]["httpGet"]["portt"] = 8080
    no_selector = copy.deepcopy(deployment)
    del no_selector["spec"]["selector"]
    for broken in (broken_type, misspelt, no_selector):
        with pytest.raises(kv.ValidationError):
            validate(broken, "latest")


def test_kustomizations_list_every_manifest_and_nothing_else() -> None:
    listed = {(K8S / name).resolve() for name in kustomization(K8S)["resources"]}
    assert listed == {p.resolve() for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}
    patches = {(SENTINEL / e["path"]).resolve() for e in kustomization(SENTINEL)["patches"]}
    assert patches == {p.resolve() for p in all_manifests() if p.parent == SENTINEL}


def test_manifests_are_namespace_agnostic() -> None:
    for path in all_manifests():
        for resource in load_all(path):
            assert "namespace" not in resource["metadata"], f"{path}: set the namespace on apply"
    assert "namespace" not in kustomization(K8S)


def test_deployment_runs_the_image_as_the_dockerfile_builds_it() -> None:
    resources = base_resources()
    deployment = one(resources, "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    c = container(deployment)
    assert spec["replicas"] == 2
    assert c["image"] == "namesrv-redis:latest"
    assert c["imagePullPolicy"] == "IfNotPresent"  # built locally, never pulled
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    (user,) = re.findall(r"^USER\s+(\d+)\s*$", dockerfile, re.M)
    (expose,) = re.findall(r"^EXPOSE\s+(.+)$", dockerfile, re.M)
    assert {p["containerPort"] for p in c["ports"]} == {int(p) for p in expose.split()}
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == int(user)
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # the read-only root still has a writable /tmp (the pod's temporary files)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert any(
        m["mountPath"] == "/tmp" and "emptyDir" in volumes[m["name"]] for m in c["volumeMounts"]
    )
    assert 0 < pod["terminationGracePeriodSeconds"] <= 60
    assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]


def test_ports_and_probes_agree_with_the_settings() -> None:
    resources = base_resources()
    deployment, config = one(resources, "Deployment"), one(resources, "ConfigMap")
    c = container(deployment)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"remoting": REMOTING_PORT, "http": HTTP_PORT}
    assert int(config["data"]["NAMESRV_LISTEN_PORT"]) == ports["remoting"]
    assert int(config["data"]["NAMESRV_HTTP_PORT"]) == ports["http"]
    probes = {name: c[name]["httpGet"] for name in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == HEALTHZ
    assert probes["readinessProbe"]["path"] == READYZ
    if "startupProbe" in c:
        probes["startupProbe"] = c["startupProbe"]["httpGet"]
        assert probes["startupProbe"]["path"] in (HEALTHZ, READYZ)
    for name, probe in probes.items():
        assert container_port(c, probe["port"]) == ports["http"], name
    # the Deployment reads the ConfigMap, and every key in it is an option the docs name
    refs = [e["configMapRef"]["name"] for e in c["envFrom"] if "configMapRef" in e]
    assert refs == [config["metadata"]["name"]]
    unknown = set(config["data"]) - documented_env_names()
    assert not unknown, f"not a documented NAMESRV_* setting: {unknown}"


def test_selectors_match_the_pod_labels() -> None:
    resources = base_resources()
    deployment = one(resources, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    def matches(selector: dict[str, str]) -> bool:
        return bool(selector) and selector.items() <= labels.items()

    assert matches(deployment["spec"]["selector"]["matchLabels"])
    pdb = one(resources, "PodDisruptionBudget")
    assert matches(pdb["spec"]["selector"]["matchLabels"])
    assert pdb["spec"]["minAvailable"] == 1 < deployment["spec"]["replicas"]
    service = one(resources, "Service")
    assert matches(service["spec"]["selector"])
    c = container(deployment)
    assert {container_port(c, p["targetPort"]) for p in service["spec"]["ports"]} == {
        REMOTING_PORT,
        HTTP_PORT,
    }
    assert {p["port"] for p in service["spec"]["ports"]} == {REMOTING_PORT, HTTP_PORT}


def test_sentinel_overlay_sets_a_sentinel_url() -> None:
    base = one(base_resources(), "ConfigMap")["data"]
    data = one(sentinel_resources(), "ConfigMap")["data"]
    assert set(data) == set(base)  # only values change
    assert {k for k in data if data[k] != base[k]} == {"NAMESRV_REDIS_URL"}
    url = urlsplit(data["NAMESRV_REDIS_URL"])
    assert url.scheme == "redis+sentinel"
    hosts = url.netloc.rsplit("@", 1)[-1].split(",")
    assert len(hosts) >= 2
    for host in hosts:
        name, _, port = host.rpartition(":")
        assert name and port.isdigit(), host
    service = [p for p in url.path.split("/") if p]
    assert 1 <= len(service) <= 2 and service[0], url.path


@pytest.fixture
def pod_settings() -> dict[str, str]:
    """The environment of a pod started as the Deployment starts one, on loopback ports."""
    config = one(base_resources(), "ConfigMap")["data"]
    env = {**os.environ, **config}
    for key in ("NAMESRV_LISTEN_PORT", "NAMESRV_HTTP_PORT"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            env[key] = str(s.getsockname()[1])
    env.update(
        NAMESRV_REDIS_URL="memory://",  # the ConfigMap's Redis is not here
        NAMESRV_LISTEN_HOST="127.0.0.1",
        NAMESRV_HTTP_HOST="127.0.0.1",
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.fixture
def running_pod(pod_settings: dict[str, str], tmp_path: Path) -> Iterator[int]:
    """A real pod run through the console script's entry point; yields its HTTP port."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, func = scripts["namesrv-redis"].split(":")
    code = (
        f"import sys; from {module} import {func} as main; "
        "sys.argv = ['namesrv-redis', 'serve']; sys.exit(main())"
    )
    log = (tmp_path / "pod.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=pod_settings, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        yield int(pod_settings["NAMESRV_HTTP_PORT"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.slow
def test_probe_paths_answer_on_a_real_pod(running_pod: int, tmp_path: Path) -> None:
    c = container(one(base_resources(), "Deployment"))
    paths = [c[n]["httpGet"]["path"] for n in ("livenessProbe", "readinessProbe")]
    deadline = time.monotonic() + 30
    answers: dict[str, int] = {}
    while time.monotonic() < deadline and answers != dict.fromkeys(paths, 200):
        for path in paths:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{running_pod}{path}", timeout=2
                ) as r:
                    answers[path] = r.status
            except urllib.error.HTTPError as e:
                answers[path] = e.code
            except OSError:
                answers[path] = 0
        time.sleep(0.2)
    log = (tmp_path / "pod.log").read_text()
    assert answers == dict.fromkeys(paths, 200), log[-3000:]
    # and a path that is not a probe is not answered 200, so the check above means something
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{running_pod}/healthzz", timeout=2)


# --- systemd ---------------------------------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_runs_serve_as_a_dynamic_user_with_its_data_in_the_state_directory() -> None:
    s = unit_settings()
    program, *args = s["ExecStart"][0].split()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert Path(program).is_absolute() and Path(program).name in scripts
    assert args[:1] == ["serve"]
    assert s["Type"] == ["exec"] or s["Type"] == ["simple"]
    assert s["DynamicUser"] == ["yes"]
    assert s["KillSignal"] == ["SIGTERM"]
    assert s["Restart"] == ["on-failure"]
    assert s["NoNewPrivileges"] == ["yes"]
    assert s["ProtectSystem"] == ["strict"]
    env = dict(e.split("=", 1) for e in s["Environment"])
    (state_dir,) = s["StateDirectory"]
    # %S is /var/lib: the data dir lies in the one place ProtectSystem=strict leaves writable
    assert env["NAMESRV_DATA_DIR"].startswith(f"%S/{state_dir}/")
    assert "NAMESRV_DATA_DIR" in documented_env_names()


def systemd_analyze_verify(unit_text: str, directory: Path) -> list[str]:
    """What ``systemd-analyze verify`` says about the unit (it exits 0 on most parse errors,
    so every message about the unit counts)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    path = directory / UNIT.name
    path.write_text(unit_text)
    run = subprocess.run(
        [analyze, "verify", str(path)], capture_output=True, text=True, cwd=directory, timeout=60
    )
    messages = [
        line
        for line in (run.stdout + run.stderr).splitlines()
        if UNIT.name in line or UNIT.stem in line
    ]
    if run.returncode != 0:
        messages.append(f"exit status {run.returncode}")
    return messages


def installable_unit_text() -> str:
    """The unit with ExecStart pointing at a program that exists here (verify checks it)."""
    program = UNIT.read_text().split("ExecStart=", 1)[1].split()[0]
    here = shutil.which("namesrv-redis") or sys.executable
    return UNIT.read_text().replace(f"ExecStart={program}", f"ExecStart={here}")


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    assert systemd_analyze_verify(installable_unit_text(), tmp_path) == []


def test_systemd_analyze_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    text = installable_unit_text().replace("KillSignal=SIGTERM", "KillSignal=SIGTREM")
    assert systemd_analyze_verify(text, tmp_path)


# --- packaging -------------------------------------------------------------------------------


@pytest.mark.slow
def test_wheel_carries_license_and_notice(tmp_path: Path) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(project["license-files"]) == {"LICENSE", "NOTICE"}
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (wheel,) = tmp_path.glob("namesrv_redis-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        dist_info = metadata.rsplit("/", 1)[0]
        for name in project["license-files"]:
            assert zf.read(f"{dist_info}/licenses/{name}") == (ROOT / name).read_bytes(), name
        headers = zf.read(metadata).decode()
    assert "License-Expression: Apache-2.0" in headers.splitlines()
    assert {"License-File: LICENSE", "License-File: NOTICE"} <= set(headers.splitlines())


def test_license_and_notice_say_what_they_must() -> None:
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text
    notice = (ROOT / "NOTICE").read_text()
    assert "namesrv-redis" in notice
    assert "Copyright 2026 The namesrv-redis authors" in notice
    assert "includes no Apache RocketMQ code" in notice
