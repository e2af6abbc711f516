"""Where a pod's options come from (namesrv_redis/settings/config.py): defaults < config file <
NAMESRV_* environment < command line, with RocketMQ's names in files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from namesrv_redis.settings.config import Settings, environment_values, load_settings


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
    with pytest.raises(ValueError, match="invalid option listen_port"):
        load_settings(None, None, {"NAMESRV_LISTEN_PORT": "ninety"})
    with pytest.raises(ValueError, match="invalid option workers"):
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
