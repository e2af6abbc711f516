"""Stateful fuzzing of the remoting front end (issue 12): Hypothesis drives request sequences
over real sockets into an in-process RemotingServer on a real redis-server — every request
code and unknown ones, JSON and ROCKETMQ headers, hostile header values and bodies, malformed
frames, valid registrations in between so the tables are never trivially empty.

After every step: the pod still answers on another connection, a refused request (any non-zero
response code) left every key of the namespace unchanged (a digest of all keys without a TTL),
``check`` finds nothing, and nothing logged a traceback. CI runs a short run; the long one is
``python scripts/fuzz.py --frames 1000000`` (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from namesrv_redis.rocketmq.codes import RequestCode
from namesrv_redis.sim.broker import SimBroker
from namesrv_redis.store.check import check_namespace
from tests.conftest import RedisServerProcess
from tests.fuzz_frames import (
    DIGEST_LUA,
    NAMES,
    BlockingClient,
    FuzzFrame,
    fuzz_frame,
    malformed_frame,
    scan_pattern,
)
from tests.inproc import InProcessServer

T = TypeVar("T")


class HypothesisDraw:
    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def choice(self, options: Sequence[T]) -> T:
        return self.data.draw(st.sampled_from(options))

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def blob(self, max_len: int) -> bytes:
        return self.data.draw(st.binary(max_size=max_len))


class Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


class PodThread:
    """An in-process pod on its own event loop thread (the state machine is synchronous)."""

    def __init__(self, url: str, namespace: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.url, self.namespace = url, namespace
        self.pod: InProcessServer = self.run(self._start())

    async def _start(self) -> InProcessServer:
        self.redis = aioredis.Redis.from_url(self.url)
        self.digest_script = self.redis.register_script(DIGEST_LUA)
        return await InProcessServer(self.redis, self.namespace).start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def port(self) -> int:
        return self.pod.port

    def digest(self) -> bytes:
        return self.run(
            self.digest_script(
                keys=[],
                args=[scan_pattern(self.pod.store.keys.prefix), self.pod.store.keys.pods],
            )
        )

    def settle(self) -> None:
        """Wait until the server has no request or clean-up task left."""

        async def idle() -> None:
            assert self.pod.server is not None
            for _ in range(500):
                if not self.pod.server._tasks:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("server tasks never finished")

        self.run(idle())

    def problems(self) -> list[Any]:
        return self.run(check_namespace(self.redis, self.namespace))

    def stop(self) -> None:
        async def stop() -> None:
            await self.pod.stop()
            await self.redis.aclose()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class RemotingFuzz(RuleBasedStateMachine):
    pod: PodThread
    tracebacks: Tracebacks

    def __init__(self) -> None:
        super().__init__()
        self.conn = BlockingClient("127.0.0.1", self.pod.port)
        self.refused = 0

    def _fresh_connection(self) -> None:
        self.conn.close()
        self.pod.settle()  # the server's clean-up of the old connection (its brokers) is done
        self.conn = BlockingClient("127.0.0.1", self.pod.port)

    def _send(self, frame: FuzzFrame) -> None:
        STATS["frames"] += 1
        before = self.pod.digest()
        self.conn.send(frame.data)
        if frame.malformed:
            self.conn.wait_closed(2.0)
            self._fresh_connection()
            return
        if frame.oneway:
            self.pod.settle()
            return
        resp = self.conn.response(frame.opaque, timeout=10)
        if resp is None:  # a well-formed frame must never cost the connection
            raise AssertionError(f"connection closed after a well-formed frame {frame.code}")
        if resp.code != 0:
            self.refused += 1
            self.pod.settle()
            after = self.pod.digest()
            assert after == before, f"refused request {frame.code} ({resp.remark}) wrote"

    @rule(data=st.data())
    def request(self, data: st.DataObject) -> None:
        self._send(fuzz_frame(HypothesisDraw(data)))

    @rule(data=st.data())
    def malformed(self, data: st.DataObject) -> None:
        self._send(malformed_frame(HypothesisDraw(data)))

    @rule(
        name=st.sampled_from(NAMES),
        addr=st.sampled_from(NAMES),
        cluster=st.sampled_from(NAMES),
        broker_id=st.sampled_from([0, 1, 2**63 - 1]),
    )
    def register_valid(self, name: str, addr: str, cluster: str, broker_id: int) -> None:
        b = SimBroker(cluster, name, addr, broker_id=broker_id, heartbeat_timeout_ms=600_000)
        b.add_topics(["T1", "T2", "a/b"])
        ext, body = b.register_request()
        resp = self.conn.request(RequestCode.REGISTER_BROKER, ext, body)
        assert resp is not None

    @rule()
    def reconnect(self) -> None:
        self._fresh_connection()

    @invariant()
    def pod_answers_and_tables_are_consistent(self) -> None:
        control = BlockingClient("127.0.0.1", self.pod.port)
        resp = control.request(RequestCode.GET_BROKER_CLUSTER_INFO)
        control.close()
        assert resp is not None and resp.code == 0, "the pod stopped answering"
        self.pod.settle()
        assert self.pod.problems() == []
        assert not self.tracebacks.records, self.tracebacks.records[0].getMessage()

    def teardown(self) -> None:
        STATS["refused"] += self.refused
        STATS["runs"] += 1
        self.conn.close()


STATS = {"refused": 0, "runs": 0, "frames": 0}


@pytest.fixture
def fuzz_pod(redis_server: RedisServerProcess, namespace: str) -> Iterator[PodThread]:
    pod = PodThread(redis_server.url, namespace)
    handler = Tracebacks()
    logging.getLogger("namesrv_redis").addHandler(handler)
    RemotingFuzz.pod, RemotingFuzz.tracebacks = pod, handler
    yield pod
    logging.getLogger("namesrv_redis").removeHandler(handler)
    pod.stop()


def test_fuzz_remoting_short_run(fuzz_pod: PodThread) -> None:
    run_state_machine_as_test(
        RemotingFuzz,
        settings=settings(
            max_examples=25,
            stateful_step_count=40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    print(STATS)
