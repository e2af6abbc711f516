"""``namesrv-redis admin`` against the Java NameServer's captured answers (a replay server) and
against our real server (a ``serve`` process on a real redis-server): every verb, its output,
its exit code, and mqadmin's request signatures reproduced byte for byte."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from namesrv_redis.admin import commands
from namesrv_redis.admin.signing import Credentials, load_credentials, sign, signature
from namesrv_redis.cli import main
from namesrv_redis.sim.broker import SimBroker
from tests.brokerthread import BrokerThread
from tests.conftest import RedisServerProcess, free_port
from tests.java_replay import JavaReplayServer
from tests.serverproc import ROOT, NamesrvProcess
from tests.test_capture_replay import load_frames

# RocketMQ's distribution ships conf/tools.yml with these; the captured mqadmin used them.
MQADMIN_AK, MQADMIN_SK = "rocketmq2", "12345678"


def admin(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["admin", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line and not line.startswith("#")]


# ------------------------------------------------------------------ signatures


def test_signatures_equal_mqadmins_for_every_captured_signed_request() -> None:
    signed = [
        f
        for f in load_frames("frames.jsonl")
        if f["direction"] == "request" and (f["header"].get("extFields") or {}).get("Signature")
    ]
    assert len(signed) > 20
    for f in signed:
        ext = dict(f["header"]["extFields"])
        body = base64.b64decode(f["body_b64"]) if f.get("body_b64") else None
        assert signature(MQADMIN_SK, ext, body) == ext["Signature"], f["code_name"]
        unsigned = {k: v for k, v in ext.items() if k not in ("AccessKey", "Signature")}
        assert sign(Credentials(MQADMIN_AK, MQADMIN_SK), unsigned, body) == ext


def test_signature_equals_the_javascript_clients(tmp_path: Path) -> None:
    """ali-ons (npm) signs as AclClientRPCHook does, OnsChannel field included."""
    node_modules = ROOT / "tests" / "interop" / "node" / "node_modules"
    if not (node_modules / "ali-ons").is_dir():
        pytest.skip("npm install --prefix tests/interop/node first")
    header = {"topic": "TopicTest", "namespace": "ns", "key": "k"}
    body = b"listenPort=9876\n"
    head, text = json.dumps(header), json.dumps(body.decode())
    script = (
        "const Channel = require('ali-ons/lib/channel');"
        f"const cmd = {{customHeader: {head}, body: Buffer.from({text}), extFields: {{}}}};"
        "Channel.prototype.beforeRequest.call("
        "{accessKey: 'ak', secretKey: 'sk', onsChannel: 'ALIYUN'}, cmd);"
        "console.log(JSON.stringify(cmd.extFields));"
    )
    node = subprocess.run(
        ["node", "-e", script],
        cwd=node_modules.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    theirs = json.loads(node.stdout)
    ours = sign(Credentials("ak", "sk"), {**header, "OnsChannel": "ALIYUN"}, body)
    assert ours["Signature"] == theirs["Signature"]


def test_credentials_from_tools_yml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "tools.yml").write_text("accessKey: rocketmq2\nsecretKey: '12345678'\n")
    monkeypatch.setenv("ROCKETMQ_HOME", str(tmp_path))
    assert load_credentials(None, None) == Credentials(MQADMIN_AK, MQADMIN_SK)
    assert load_credentials("a", "b") == Credentials("a", "b")
    with pytest.raises(ValueError, match="go together"):
        load_credentials("a", None)
    bad = tmp_path / "bad.yml"
    bad.write_text("accessKey: x\n")
    with pytest.raises(ValueError, match="both"):
        load_credentials(None, None, bad)
    with pytest.raises(ValueError, match="cannot read"):
        load_credentials(None, None, tmp_path / "missing.yml")


# ------------------------------------------------------------------ the Java NameServer's answers


@pytest.fixture(scope="module")
def java() -> Iterator[JavaReplayServer]:
    server = JavaReplayServer().start()
    yield server
    server.stop()


def test_java_cluster_list(java: JavaReplayServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = admin(capsys, "clusterList", "-n", java.addr)
    assert code == 0
    assert out.splitlines()[0].split("  ")[0] == "#Cluster Name"
    assert rows(out) == [["DefaultCluster", "broker-a", "0", "127.0.0.1:10911"]]
    code, out, _ = admin(capsys, "clusterList", "-n", java.addr, "--json")
    doc = json.loads(out)
    assert doc["brokerAddrTable"]["broker-a"]["brokerAddrs"] == {"0": "127.0.0.1:10911"}
    assert admin(capsys, "clusterList", "-n", java.addr, "-c", "nope")[0] == 3


def test_java_topic_route(java: JavaReplayServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = admin(capsys, "topicRoute", "-n", java.addr, "-t", "TopicTest")
    assert code == 0
    assert rows(out) == [["DefaultCluster", "broker-a", "0=127.0.0.1:10911", "8", "8", "RW-"]]
    code, out, err = admin(capsys, "topicRoute", "-n", java.addr, "-t", "TopicDel")
    assert code == commands.EXIT_NOT_FOUND
    assert "TOPIC_NOT_EXIST: No topic route info in name server for the topic: TopicDel" in err


def test_java_topic_lists(java: JavaReplayServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = admin(capsys, "topicList", "-n", java.addr)
    assert code == 0 and "TBW102" in out.split() and "TopicTest" in out.split()
    code, out, _ = admin(capsys, "topicList", "-n", java.addr, "-c")
    assert code == 0
    assert ["DefaultCluster", "TopicTest"] in rows(out)
    code, out, _ = admin(capsys, "topicList", "-n", java.addr, "-c", "DefaultCluster", "--json")
    assert {"cluster": "DefaultCluster", "topic": "TBW102"} in json.loads(out)


def test_java_kv(java: JavaReplayServer, capsys: pytest.CaptureFixture[str]) -> None:
    n = ("-n", java.addr)
    code, out, _ = admin(capsys, "getKvConfig", *n, "-s", "ORDER_TOPIC_CONFIG", "-k", "TopicTest")
    assert (code, out) == (0, "broker-a:8\n")
    code, _, err = admin(capsys, "getKvConfig", *n, "-s", "probe_ns", "-k", "nokey")
    assert code == commands.EXIT_NOT_FOUND and "QUERY_NOT_FOUND" in err
    code, out, _ = admin(capsys, "kvList", *n, "-s", "probe_ns")
    assert (code, rows(out)) == (0, [["k1", "v1"]])
    assert admin(capsys, "kvList", *n, "-s", "missing_ns")[0] == commands.EXIT_NOT_FOUND
    kv = ("-s", "demo_ns", "-k", "demo_key")
    code, out, _ = admin(capsys, "updateKvConfig", *n, *kv, "-v", "demo_value")
    assert code == 0 and "update demo_ns/demo_key OK" in out
    code, out, _ = admin(capsys, "deleteKvConfig", *n, *kv)
    assert code == 0 and "delete demo_ns/demo_key OK" in out


def test_java_write_perm_and_delete_topic(
    java: JavaReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = admin(capsys, "wipeWritePerm", "-n", java.addr, "-b", "broker-a")
    assert code == 0 and rows(out)[0][-1] == "14" and "wipe write perm OK" in out
    code, out, _ = admin(capsys, "addWritePerm", "-n", java.addr, "-b", "broker-a", "--json")
    assert json.loads(out)[0]["topicCount"] == 14
    code, out, _ = admin(
        capsys, "deleteTopic", "-n", java.addr, "-t", "TopicDel", "-c", "DefaultCluster"
    )
    assert code == 0 and "delete topic TopicDel OK" in out


def test_java_config_and_brokers(
    java: JavaReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = admin(capsys, "getNamesrvConfig", "-n", java.addr)
    assert code == 0
    assert out.splitlines()[0] == f"============{java.addr}============"
    assert any(line.split() == ["listenPort", "=", "9876"] for line in out.splitlines())
    code, out, _ = admin(capsys, "updateNamesrvConfig", "-n", java.addr, "-k", "a", "-v", "b")
    assert code == 0
    assert java.requests[-1].body == b"a=b"
    # The Java NameServer tells no liveness: brokerList shows the broker with "-".
    code, out, _ = admin(capsys, "brokerList", "-n", java.addr)
    assert code == 0
    assert rows(out) == [
        [java.addr, "DefaultCluster", "broker-a", "0", "127.0.0.1:10911", "-", "-"]
    ]


def test_java_signed_requests_match_mqadmin(
    java: JavaReplayServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tools = tmp_path / "tools.yml"
    tools.write_text(f"accessKey: {MQADMIN_AK}\nsecretKey: {MQADMIN_SK}\n")
    code, _, _ = admin(
        capsys, "topicRoute", "-n", java.addr, "-t", "TBW102", "--tools-yml", str(tools)
    )
    assert code == 0
    assert java.requests[-1].ext_fields == {
        "topic": "TBW102",
        "AccessKey": MQADMIN_AK,
        "Signature": "/u5P/wZUbhjanu4LM/UzEdo2u2I=",  # what the captured mqadmin sent
    }
    args = ("--access-key", MQADMIN_AK, "--secret-key", MQADMIN_SK)
    assert admin(capsys, "clusterList", "-n", java.addr, *args)[0] == 0
    assert (java.requests[-1].ext_fields or {})["Signature"] == "Ou1T58RIcyZWaTIwzkhJZWn/Zvs="


def test_java_watch_polls(java: JavaReplayServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = admin(
        capsys, "watch", "-n", java.addr, "-t", "TopicTest", "--interval", "0.2", "--duration", "1"
    )
    assert code == 0
    first = out.splitlines()[0].split()
    assert first[1:5] == [java.addr, "poll", "TopicTest", "now:"]
    assert "broker-a[0=127.0.0.1:10911]" in out


def test_exit_codes_for_unreachable_partial_and_usage(
    java: JavaReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    code, _, err = admin(capsys, "clusterList", "-n", dead)
    assert code == commands.EXIT_UNREACHABLE and "cannot connect" in err
    # A read fails over to the next name server; a change reports the one it missed.
    assert admin(capsys, "clusterList", "-n", f"{dead};{java.addr}")[0] == 0
    kv = ("-s", "demo_ns", "-k", "demo_key", "-v", "demo_value")
    code, out, _ = admin(capsys, "updateKvConfig", "-n", f"{java.addr};{dead}", *kv)
    assert code == commands.EXIT_PARTIAL and "FAILED" in out
    assert admin(capsys, "clusterList", "-n", "nohostport")[0] == commands.EXIT_USAGE
    assert admin(capsys, "clusterList", "-n", java.addr, "--access-key", "x")[0] == 2


# ------------------------------------------------------------------ our server, for real


@pytest.fixture(scope="module")
def pod() -> Iterator[NamesrvProcess]:
    redis = RedisServerProcess().start()
    server = NamesrvProcess(redis.url, "admin").start()
    yield server
    server.stop()
    redis.stop()


@pytest.fixture(scope="module")
def broker(pod: NamesrvProcess) -> Iterator[BrokerThread]:
    sim = SimBroker("DemoCluster", "broker-x", "127.0.0.1:20911", heartbeat_timeout_ms=60_000)
    sim.add_topics(["AdminTopic", "Other"], queues=4)
    thread = BrokerThread(pod.port, sim).start()
    yield thread
    thread.stop()


def test_ours_clusters_and_liveness(
    pod: NamesrvProcess, broker: BrokerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = admin(capsys, "clusterList", "-n", pod.addr)
    assert (code, rows(out)) == (0, [["DemoCluster", "broker-x", "0", "127.0.0.1:20911"]])
    code, out, _ = admin(capsys, "brokerList", "-n", pod.addr)
    assert code == 0
    (row,) = rows(out)
    assert row[:5] == [pod.addr, "DemoCluster", "broker-x", "0", "127.0.0.1:20911"]
    assert 50 < float(row[5]) <= 60  # the broker's own heartbeat timeout, counting down
    assert row[6] == str(broker.broker.counter)


def test_ours_route_perm_kv_config(
    pod: NamesrvProcess, broker: BrokerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    n = ("-n", pod.addr)
    code, out, _ = admin(capsys, "topicRoute", *n, "-t", "AdminTopic")
    assert rows(out) == [["DemoCluster", "broker-x", "0=127.0.0.1:20911", "4", "4", "RW-"]]
    code, out, _ = admin(capsys, "wipeWritePerm", *n, "-b", "broker-x")
    assert code == 0 and rows(out)[0][-1] == "2"
    code, out, _ = admin(capsys, "topicRoute", *n, "-t", "AdminTopic", "--json")
    assert json.loads(out)["queueDatas"][0]["perm"] == 4
    code, out, _ = admin(capsys, "addWritePerm", *n, "-b", "broker-x")
    assert code == 0 and rows(out)[0][-1] == "2"
    code, out, _ = admin(capsys, "topicList", *n, "-c", "DemoCluster")
    assert ["DemoCluster", "AdminTopic"] in rows(out)

    kv = ("-s", "ns1", "-k", "k1")
    assert admin(capsys, "updateKvConfig", *n, *kv, "-v", "hello world")[0] == 0
    assert admin(capsys, "getKvConfig", *n, *kv)[1] == "hello world\n"
    assert rows(admin(capsys, "kvList", *n, "-s", "ns1")[1]) == [["k1", "hello", "world"]]
    assert admin(capsys, "deleteKvConfig", *n, *kv)[0] == 0
    assert admin(capsys, "getKvConfig", *n, *kv)[0] == commands.EXIT_NOT_FOUND

    assert (
        admin(capsys, "updateNamesrvConfig", *n, "-k", "orderMessageEnable", "-v", "true")[0] == 0
    )
    code, out, _ = admin(capsys, "getNamesrvConfig", *n, "--json")
    assert json.loads(out)[pod.addr]["orderMessageEnable"] == "true"
    code, _, err = admin(capsys, "updateNamesrvConfig", *n, "-k", "configBlackList", "-v", "x")
    assert code == commands.EXIT_NO_PERMISSION and "NO_PERMISSION" in err
    assert (
        admin(capsys, "updateNamesrvConfig", *n, "-k", "orderMessageEnable", "-v", "false")[0] == 0
    )

    code, out, _ = admin(capsys, "deleteTopic", *n, "-t", "Other")
    assert code == 0
    assert admin(capsys, "topicRoute", *n, "-t", "Other")[0] == commands.EXIT_NOT_FOUND


def test_ours_and_java_side_by_side(
    pod: NamesrvProcess,
    broker: BrokerThread,
    java: JavaReplayServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """During a migration: one command shows what each name server knows."""
    code, out, _ = admin(capsys, "brokerList", "-n", f"{java.addr};{pod.addr}")
    assert code == 0
    seen = {(r[0], r[2]) for r in rows(out)}
    assert seen == {(java.addr, "broker-a"), (pod.addr, "broker-x")}


@pytest.mark.slow
def test_ours_watch_pushes_changes(pod: NamesrvProcess, broker: BrokerThread) -> None:
    """A real ``namesrv-redis admin watch`` process sees a registration change over SSE."""
    watch = subprocess.Popen(
        [sys.executable, "-m", "namesrv_redis.cli", "admin", "watch", "-n", pod.addr,
         "-t", "AdminTopic", "--json", "--count", "1", "--duration", "20"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert watch.stdout is not None
        first = json.loads(watch.stdout.readline())
        assert first["initial"] and first["via"] == "sse"
        started = time.monotonic()
        broker.broker.add_topics(["AdminTopic"], queues=16)
        broker.register()
        change = json.loads(watch.stdout.readline())
        assert watch.wait(10) == 0
        print(f"watch saw the change {time.monotonic() - started:.3f}s after it was registered")
    finally:
        if watch.poll() is None:
            watch.kill()
        watch.communicate()
    assert change["via"] == "sse" and not change["initial"]
    assert change["route"]["queueDatas"][0]["writeQueueNums"] == 16


def test_copy_kv_config_from_java_to_ours(
    pod: NamesrvProcess, java: JavaReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = admin(
        capsys, "copyKvConfig", "-n", java.addr, "-s", "probe_ns", "--to", pod.addr
    )
    assert code == 0 and f"copied 1 key(s) of probe_ns from {java.addr} to {pod.addr}" in out
    assert admin(capsys, "getKvConfig", "-n", pod.addr, "-s", "probe_ns", "-k", "k1")[1] == "v1\n"


@pytest.mark.slow
def test_demo_broker_registers_and_unregisters(
    pod: NamesrvProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "namesrv_redis.demo_broker", "-n", pod.addr, "-b", "broker-demo",
         "--addr", "127.0.0.1:40911", "-t", "DemoTopic"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert demo.stdout is not None
        assert "registered DefaultCluster/broker-demo" in demo.stdout.readline()
        code, out, _ = admin(capsys, "topicRoute", "-n", pod.addr, "-t", "DemoTopic")
        assert code == 0 and "0=127.0.0.1:40911" in out
        demo.terminate()
        assert demo.wait(10) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
        demo.communicate()
    assert admin(capsys, "topicRoute", "-n", pod.addr, "-t", "DemoTopic")[0] == 3


@pytest.mark.slow
def test_watch_falls_back_to_polling_and_sees_a_change(
    pod: NamesrvProcess, broker: BrokerThread
) -> None:
    """When the event stream cannot be had, watch polls, and still reports the change."""
    dead_http = f"http://127.0.0.1:{free_port()}"
    with subprocess.Popen(
        [sys.executable, "-m", "namesrv_redis.cli", "admin", "watch", "-n", pod.addr,
         "-t", "AdminTopic", "--json", "--count", "1", "--duration", "20",
         "--interval", "0.2", "--http", dead_http],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as watch:  # fmt: skip
        assert watch.stdout is not None and watch.stderr is not None
        first = json.loads(watch.stdout.readline())
        assert first["initial"]
        assert "polling instead" in watch.stderr.readline()
        broker.broker.add_topics(["AdminTopic"], queues=3)
        broker.register()
        change = json.loads(watch.stdout.readline())
        assert watch.wait(10) == 0
    assert change["via"] == "poll" and not change["initial"]
    assert change["route"]["queueDatas"][0]["writeQueueNums"] == 3
