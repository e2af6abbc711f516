"""Where a pod's options come from (namesrv_redis/settings/config.py): defaults < config file <
NAMESRV_* environment < command line, with RocketMQ's names in files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from namesrv_redis.cli import main
from namesrv_redis.settings.config import (
    FIELDS_BY_ROCKETMQ_NAME,
    ROCKETMQ_NAMES,
    Settings,
    environment_values,
    load_settings,
    load_with_sources,
)
from namesrv_redis.settings.java_options import JAVA_OPTIONS, MAPPED, snake_case


def test_environment_variables_by_field_name_in_any_case() -> None:
    env = {
        "NAMESRV_LISTEN_PORT": "9877",
        "namesrv_order_message_enable": "true",
        "Namesrv_Redis_Url": "redis://10.0.0.1:6379/0",
        "NAMESRV_NO_SUCH_OPTION": "x",  # not an option: ignored, as before
        "NAMESRV_": "x",
        "PATH": "/usr/bin",
    }
    assert environment_values(env) == {
        "listen_port": "9877",
        "order_message_enable": "true",
        "redis_url": "redis://10.0.0.1:6379/0",
    }
    s = load_settings(None, None, env)
    assert s.listen_port == 9877 and s.order_message_enable is True
    assert s.redis_url == "redis://10.0.0.1:6379/0"


def test_values_from_strings_are_validated_like_the_command_line() -> None:
    s = load_settings(
        None,
        None,
        {
            "NAMESRV_REDIS_TLS": "1",
            "NAMESRV_REDIS_PASSWORD": "pw",
            "NAMESRV_TLS_RELOAD_INTERVAL_SECONDS": "2.5",
            "NAMESRV_FLOW_ROUTE_MAX_RUNNING": "7",
        },
    )
    assert s.redis_tls is True and s.redis_password is not None
    assert s.redis_password.get_secret_value() == "pw"
    assert s.tls_reload_interval_seconds == 2.5 and s.flow_route_max_running == 7
    with pytest.raises(ValueError, match="invalid listenPort 'ninety' from environment variable"):
        load_settings(None, None, {"NAMESRV_LISTEN_PORT": "ninety"})
    with pytest.raises(ValueError, match="invalid workers '0' from environment variable"):
        load_settings(None, None, {"NAMESRV_WORKERS": "0"})


def test_precedence_defaults_file_environment_command_line(tmp_path: Path) -> None:
    conf = tmp_path / "namesrv.properties"
    conf.write_text("listenPort=9001\nnamespace=from-file\norderMessageEnable=true\n")
    env = {"NAMESRV_NAMESPACE": "from-env", "NAMESRV_HTTP_PORT": "8181"}
    s = load_settings(str(conf), {"http_port": 8282}, env)
    assert s.listen_port == 9001  # the file's, nothing stronger set it
    assert s.namespace == "from-env"  # the environment beats the file
    assert s.http_port == 8282  # the command line beats the environment
    assert s.order_message_enable is True
    assert s.broker_timeout_ms == 120_000  # a default
    assert {"listen_port", "namespace", "http_port"} <= s.model_fields_set
    assert "broker_timeout_ms" not in s.model_fields_set


def test_a_settings_object_reads_only_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAMESRV_NAMESPACE", "from-env")
    assert Settings().namespace == "default"
    assert Settings(namespace="given").namespace == "given"
    assert load_settings().namespace == "from-env"  # the process's environment by default


def test_serve_does_not_import_pydantic_settings() -> None:
    """The memory the pod saves: nothing the command line loads pulls pydantic-settings in."""
    code = (
        "import sys, namesrv_redis.cli, namesrv_redis.process.pod;"
        "print('pydantic_settings' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- Java namesrv.properties

JAVA_FILE = """\
# a Java NameServer's namesrv.properties, as operators have it
rocketmqHome=/opt/rocketmq
kvConfigPath=/root/namesrv/kvConfig.json
configStorePath=/root/namesrv/namesrv.properties
listenPort=9877
bindAddress=127.0.0.1
serverWorkerThreads=8
serverCallbackExecutorThreads=0
serverSocketSndBufSize=131072
defaultThreadPoolNums=16
writeBufferHighWaterMark=65536
writeBufferLowWaterMark=0
orderMessageEnable=true
"""


def test_a_java_namesrv_properties_is_accepted(tmp_path: Path) -> None:
    conf = tmp_path / "namesrv.properties"
    conf.write_text(JAVA_FILE)
    loaded = load_with_sources(str(conf), None, {})
    s = loaded.settings
    # mapped: the ones with a meaning here
    assert s.listen_port == 9877 and s.listen_host == "127.0.0.1"
    assert s.flow_write_buffer_high == 65536 and s.flow_write_buffer_low is None  # 0: unset
    assert s.order_message_enable is True and s.rocketmq_home == "/opt/rocketmq"
    # accepted, reported, ignored
    assert set(loaded.ignored) == {
        "kvConfigPath",
        "configStorePath",
        "serverWorkerThreads",
        "serverCallbackExecutorThreads",
        "serverSocketSndBufSize",
        "defaultThreadPoolNums",
    }
    assert loaded.ignored["kvConfigPath"] == f"file {conf}"


def test_every_java_option_name_is_accepted_from_file_environment_and_flags(
    tmp_path: Path,
) -> None:
    """Each NamesrvConfig / NettyServerConfig field of 4.9.8 and 5.3.3 (valid values: the
    Java default's kind) is either one of our options or reported as ignored."""
    values = {}
    for name in JAVA_OPTIONS:
        field = FIELDS_BY_ROCKETMQ_NAME.get(name) or MAPPED.get(name)
        values[name] = str(getattr(Settings(), field)).lower() if field else "1"
    values["writeBufferHighWaterMark"] = "65536"
    values["writeBufferLowWaterMark"] = "32768"
    conf = tmp_path / "all.properties"
    conf.write_text("".join(f"{k}={v}\n" for k, v in values.items() if v != "none"))
    from_file = load_with_sources(str(conf), None, {})
    env = {f"NAMESRV_{snake_case(k).upper()}": v for k, v in values.items() if v != "none"}
    from_env = load_with_sources(None, None, env)
    from_flags = load_with_sources(None, None, {}, extra_flags=values)
    for loaded in (from_file, from_env, from_flags):
        for name in JAVA_OPTIONS:
            field = FIELDS_BY_ROCKETMQ_NAME.get(name) or MAPPED.get(name)
            assert (field in loaded.sources) if field else (name in loaded.ignored), name
    assert from_env.ignored["serverWorkerThreads"] == (
        "environment variable NAMESRV_SERVER_WORKER_THREADS"
    )
    assert from_flags.ignored["serverWorkerThreads"] == "flag --serverWorkerThreads"


def test_an_unknown_option_is_still_refused_by_name(tmp_path: Path) -> None:
    conf = tmp_path / "namesrv.properties"
    conf.write_text("listenPrt=9876\n")
    with pytest.raises(ValueError, match="unknown option 'listenPrt'"):
        load_settings(str(conf), None, {})
    with pytest.raises(ValueError, match="unknown option --listenPrt"):
        load_with_sources(None, None, {}, extra_flags={"listenPrt": "1"})


def test_a_bad_value_names_its_variable_flag_or_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as e:
        load_settings(None, None, {"NAMESRV_LISTEN_PORT": "abc"})
    assert "'abc'" in str(e.value) and "NAMESRV_LISTEN_PORT" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"invalid listenPort 70000 from flag --listen-port"):
        load_with_sources(None, {"listen_port": 70000}, {}, flags={"listen_port": "--listen-port"})
    conf = tmp_path / "n.properties"
    conf.write_text("redisUrl=foo://h:1\n")
    with pytest.raises(ValueError, match=r"unsupported URL scheme foo://.*fix redisUrl in"):
        load_settings(str(conf), None, {})
    with pytest.raises(ValueError, match=r"redisPassword '\*\*\*'"):
        load_settings(None, {"redis_password": 5}, {})  # a secret is never echoed


def test_print_config_says_where_each_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "namesrv.properties"
    conf.write_text(JAVA_FILE)
    for key in [k for k in __import__("os").environ if k.upper().startswith("NAMESRV_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("NAMESRV_HTTP_PORT", "8181")
    monkeypatch.setenv("NAMESRV_REDIS_URL", "redis://:sekret@127.0.0.1:6379/0")
    code = main(
        ["serve", "--config", str(conf), "--namespace", "ns1", "--serverSelectorThreads=3",
         "--print-config"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert f"listenPort=9877  # file {conf}" in lines
    assert "httpPort=8181  # environment variable NAMESRV_HTTP_PORT" in lines
    assert "namespace=ns1  # flag --namespace" in lines
    assert "scanNotActiveBrokerInterval=5000  # default" in lines
    assert "redisUrl=redis://:***@127.0.0.1:6379/0  # environment variable NAMESRV_REDIS_URL" in (
        lines
    )
    assert "sekret" not in out
    assert f"# kvConfigPath: ignored, no meaning here (file {conf})" in lines
    assert "# serverSelectorThreads: ignored, no meaning here (flag --serverSelectorThreads)" in (
        lines
    )
    assert len([n for n in lines if not n.startswith("#")]) == len(ROCKETMQ_NAMES)


def test_serve_version(capsys: pytest.CaptureFixture[str]) -> None:
    from namesrv_redis import __version__

    with pytest.raises(SystemExit) as e:
        main(["serve", "--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"namesrv-redis {__version__}"
