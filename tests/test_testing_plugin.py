"""The pytest plugin used exactly as an outside project uses it: pytester writes a test file
that only requests the fixtures and speaks RocketMQ remoting over a plain socket (no code of
this repository but the fixture), and runs it in a fresh pytest process."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "namesrv_redis.testing.plugin"

OUTSIDE_TESTS = '''
"""An outside project's tests: a raw-socket RocketMQ client against the fixture."""
import json
import socket
import struct
import urllib.request

import pytest

GET_ROUTEINFO_BY_TOPIC = 105
TOPIC_NOT_EXIST = 17


def get_route(address, topic):
    """GET_ROUTEINFO_BY_TOPIC, JSON-serialized header, as RocketMQ clients send it."""
    host, port = address.rsplit(":", 1)
    header = json.dumps({"code": GET_ROUTEINFO_BY_TOPIC, "language": "JAVA", "version": 401,
                         "opaque": 7, "flag": 0, "extFields": {"topic": topic}}).encode()
    frame = struct.pack(">ii", 4 + len(header), len(header)) + header
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(frame)
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
            chunk = s.recv(65536)
            assert chunk, "connection closed"
            data += chunk
    header_len = struct.unpack(">i", data[4:8])[0] & 0xFFFFFF
    answer = json.loads(data[8:8 + header_len])
    body = data[8 + header_len:]
    assert answer["opaque"] == 7
    return answer["code"], (json.loads(body) if body else None)


def test_route_registered_by_helper(rocketmq_namesrv):
    rocketmq_namesrv.register_broker("DefaultCluster", "broker-a", "127.0.0.1:10911",
                                     topics={"OrderEvents": 4})
    code, route = get_route(rocketmq_namesrv.address, "OrderEvents")
    assert code == 0
    assert route["brokerDatas"][0]["brokerAddrs"] == {"0": "127.0.0.1:10911"}
    assert route["queueDatas"][0]["writeQueueNums"] == 4


def test_every_test_starts_empty(rocketmq_namesrv):
    assert rocketmq_namesrv.routes() == {}
    code, _ = get_route(rocketmq_namesrv.address, "OrderEvents")
    assert code == TOPIC_NOT_EXIST
    assert rocketmq_namesrv.requests[GET_ROUTEINFO_BY_TOPIC] == 1


def test_expired_broker_is_gone(rocketmq_namesrv):
    rocketmq_namesrv.register_broker("DefaultCluster", "broker-a", "127.0.0.1:10911", ["T", "U"])
    assert get_route(rocketmq_namesrv.address, "T")[0] == 0
    assert rocketmq_namesrv.expire_broker("DefaultCluster", "127.0.0.1:10911")
    assert get_route(rocketmq_namesrv.address, "T")[0] == TOPIC_NOT_EXIST


def test_session_server_keeps_state_1(rocketmq_namesrv_session):
    rocketmq_namesrv_session.put_kv("NS", "k", "v")


def test_session_server_keeps_state_2(rocketmq_namesrv_session, rocketmq_namesrv):
    assert rocketmq_namesrv_session.kv("NS") == {"k": "v"}
    assert rocketmq_namesrv_session.address != rocketmq_namesrv.address


@pytest.mark.rocketmq_namesrv(http=True, options={"enableAllTopicList": False})
def test_own_server_by_marker(rocketmq_namesrv, request):
    rocketmq_namesrv.register_broker("DefaultCluster", "broker-a", "127.0.0.1:10911", ["T", "U"])
    with urllib.request.urlopen(rocketmq_namesrv.http_url + "/v1/routes/T", timeout=5) as r:
        assert json.loads(r.read())["brokerDatas"][0]["brokerName"] == "broker-a"
    assert not rocketmq_namesrv.settings.enable_all_topic_list
    expected = request.config.getoption("rocketmq_namesrv_redis") or "memory://"
    assert rocketmq_namesrv.redis == expected
'''

LAZY_TEST = """
import sys


def test_plugin_loaded_but_nothing_imported(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("namesrv_redis.testing.plugin")
    assert "fakeredis" not in sys.modules
    assert "namesrv_redis.process.pod" not in sys.modules
    assert "namesrv_redis.testing.server" not in sys.modules
"""


def plugin_installed() -> bool:
    """Is the pytest11 entry point installed (pip install), or is this a bare checkout?"""
    return any(ep.name == PLUGIN for ep in entry_points(group="pytest11"))


@pytest.fixture
def outside(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    # the subprocess imports namesrv_redis from this checkout
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    monkeypatch.delenv("ROCKETMQ_NAMESRV_REDIS", raising=False)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    plugin = () if plugin_installed() else ("-p", PLUGIN)
    return pytester.runpytest_subprocess(*plugin, "-p", "no:cacheprovider", *args, timeout=120)


def test_outside_project_uses_the_fixtures(outside: pytest.Pytester) -> None:
    outside.makepyfile(test_outside=OUTSIDE_TESTS)
    result = run(outside, "-v")
    result.assert_outcomes(passed=6)


def test_the_plugin_imports_nothing_until_a_fixture_is_used(outside: pytest.Pytester) -> None:
    outside.makepyfile(test_lazy=LAZY_TEST)
    run(outside).assert_outcomes(passed=1)


@pytest.mark.real_redis
def test_outside_project_on_a_real_redis_server(outside: pytest.Pytester) -> None:
    outside.makepyfile(test_outside=OUTSIDE_TESTS)
    result = run(outside, "--rocketmq-namesrv-redis=embedded")
    result.assert_outcomes(passed=6)


def test_marker_takes_keywords_only(outside: pytest.Pytester) -> None:
    outside.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.rocketmq_namesrv("embedded")
        def test_it(rocketmq_namesrv):
            pass
        """
    )
    result = run(outside)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*keyword arguments only*"])


def test_help_lists_the_option(outside: pytest.Pytester) -> None:
    result = run(outside, "--help")
    result.stdout.fnmatch_lines(["*--rocketmq-namesrv-redis=REDIS*"])


def clean_env() -> dict[str, str]:
    """The environment of an outside project: nothing of this checkout on the path."""
    drop = ("PYTHONPATH", "PYTEST_ADDOPTS")
    return {k: v for k, v in os.environ.items() if k not in drop}


def sh(*cmd: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        cmd, cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{cmd}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout."""
    wheels = tmp_path_factory.mktemp("wheels")
    sh(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "-q",
        "-w",
        str(wheels),
        str(ROOT),
        cwd=wheels,
    )
    [built] = wheels.glob("namesrv_redis-*.whl")
    return built


@pytest.mark.slow
def test_wheel_marks_the_testing_api_typed(wheel: Path) -> None:
    """PEP 561: ``namesrv_redis.testing`` ships ``py.typed``, so an outside project's mypy
    checks its calls to ``NameServer`` and the fixtures instead of treating them as Any."""
    names = zipfile.ZipFile(wheel).namelist()
    assert "namesrv_redis/testing/py.typed" in names, sorted(names)


@pytest.fixture(scope="module")
def site(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed on its own (``pip install --target``), for ``PYTHONPATH``: put first
    on the path of the interpreter running this suite, whose environment supplies the
    dependencies (fakeredis[lua] among them). It works the same whether that interpreter is a
    system Python, a virtualenv or CI's, and builds no environment on top of it. Its
    ``.dist-info`` is found before any other installation of namesrv-redis."""
    target = tmp_path_factory.mktemp("site")
    sh(
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--target",
        str(target),
        str(wheel),
        cwd=target,
    )
    return target


@pytest.mark.slow
def test_installed_wheel_brings_the_fixtures(site: Path, tmp_path: Path) -> None:
    """What `pip install 'namesrv-redis[testing]'` gives: the wheel built from this checkout
    registers the pytest11 entry point; an outside project's tests then find the fixtures with
    no -p and no conftest (a wheel without the entry point would leave them without)."""
    (tmp_path / "test_outside.py").write_text(OUTSIDE_TESTS)
    env = {**clean_env(), "PYTHONPATH": str(site)}
    code = "import namesrv_redis.testing.plugin as p; print(p.__file__)"
    where = sh(sys.executable, "-c", code, cwd=tmp_path, env=env)
    assert where.startswith(str(site)), where  # the installed copy, not this checkout
    out = sh(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=tmp_path, env=env)
    assert "6 passed" in out, out


@pytest.mark.slow
def test_outside_mypy_checks_calls_into_the_testing_api(site: Path, tmp_path: Path) -> None:
    """With ``py.typed`` an outside project's mypy reads our annotations (a wrong argument is
    an arg-type error); without it mypy would refuse the import as untyped."""
    (tmp_path / "use.py").write_text(
        "from namesrv_redis.testing import NameServer\n\n"
        "NameServer().register_broker(1, 'broker-a', '127.0.0.1:10911', ['T'])\n"
    )
    env = {**clean_env(), "PYTHONPATH": str(site)}
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable"]
    proc = subprocess.run(
        [*mypy, sys.executable, "use.py"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert 'Argument 1 to "register_broker" of "NameServer" has incompatible type "int"' in (
        proc.stdout
    ), proc.stdout + proc.stderr
    assert "import-untyped" not in proc.stdout
