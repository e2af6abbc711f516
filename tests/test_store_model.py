"""Model-based test: random sequences of registrations (master and slave, changed and
unchanged data versions, growing and shrinking topic sets; stored in full, or as two pods'
front ends store them: lite, diff, full), unregistrations, expiries, write
permission changes and topic deletions, run against the Redis store and against the
reference model (tests/reference_model.py); after every step every route and the cluster
info agree, and the consistency checker finds nothing. On fakeredis and on a real Redis."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from namesrv_redis.domain.registrations import RememberedRegistrations, store_registration
from namesrv_redis.rocketmq.model import QueueConfig, canonical_data_version
from namesrv_redis.rocketmq.register_body import QueueNums, RegisterTable
from namesrv_redis.store.check import check_namespace
from namesrv_redis.store.keys import broker_ident as ident_of
from namesrv_redis.store.route_store import (
    BrokerRegistration,
    RegisterStatus,
    RemovalReason,
    RouteStore,
)
from tests.conftest import RedisServerProcess
from tests.reference_model import RouteModel

CLUSTERS = ["C1", "C2"]
NAMES = ["a", "b", "c"]
ADDRS = ["10.0.0.1:10911", "10.0.0.2:10911", "10.0.0.3:10911", "10.0.0.4:10911"]
TOPICS = ["T1", "T2", "T3", "T4", "T5"]

topic_sets = st.lists(
    st.tuples(
        st.sampled_from(TOPICS), st.integers(1, 4), st.integers(1, 4), st.sampled_from([2, 4, 6, 7])
    ),
    min_size=1,
    max_size=5,
    unique_by=lambda t: t[0],
)
registration_args: dict[str, Any] = {
    "cluster": st.sampled_from(CLUSTERS),
    "name": st.sampled_from(NAMES),
    "addr": st.sampled_from(ADDRS),
    "broker_id": st.sampled_from([0, 0, 1]),
    "topics": topic_sets,
    "bump": st.booleans(),
}
_namespaces = itertools.count()


def make_machine(client_factory: Any) -> type[RuleBasedStateMachine]:
    class StoreVsModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.client = client_factory()
            self.namespace = f"model-{next(_namespaces)}"
            self.store = RouteStore(self.client, self.namespace)
            self.run(self.store.load_scripts())
            self.model = RouteModel()
            self.counter = 0
            self.pods = [RememberedRegistrations(), RememberedRegistrations()]
            self.sent: list[tuple[str, str, str, int, list[tuple[str, int, int, int]]]] = []

        def run(self, coro: Any) -> Any:
            return self.loop.run_until_complete(coro)

        def teardown(self) -> None:
            self.run(self.client.aclose())
            self.loop.close()

        @rule(via=st.sampled_from([None, 0, 1]), **registration_args)
        def register(
            self,
            via: int | None,
            cluster: str,
            name: str,
            addr: str,
            broker_id: int,
            topics: list[tuple[str, int, int, int]],
            bump: bool,
        ) -> None:
            """Stored in full (via None), or the way the remoting front end of one of two pods
            sharing the Redis stores it (lite when the body is the one that pod last stored,
            else a diff against the table it remembers, else everything): which must be
            indistinguishable from storing it in full."""
            if bump:
                self.counter += 1
            dv = {"counter": self.counter, "timestamp": 1}
            nums = {t: QueueNums(r, w, p, 0) for t, r, w, p in topics}

            def registration(**fields: Any) -> BrokerRegistration:
                return BrokerRegistration(cluster, addr, name, broker_id, **fields)

            if via is None:
                stored = self.store.register_broker(
                    registration(
                        data_version=canonical_data_version(dv),
                        topics=[QueueConfig(t, r, w, p) for t, r, w, p in topics],
                    )
                )
            else:
                table = RegisterTable(dv, nums, None, False)
                token = hashlib.sha1(repr((dv, nums)).encode()).hexdigest()
                stored = store_registration(
                    self.store,
                    self.pods[via],
                    (cluster, addr, name, broker_id),
                    token,
                    lambda: table,
                    registration,
                )
            result = self.run(stored)
            expected = self.model.register(
                cluster,
                addr,
                name,
                broker_id,
                canonical_data_version(dv),
                [(t, r, w, p, 0) for t, r, w, p in topics],
            )
            assert result.status == RegisterStatus(expected)
            self.sent.append((cluster, name, addr, broker_id, topics))

        @precondition(lambda self: self.sent)
        @rule(
            pod=st.sampled_from([0, 1]),
            pick=st.one_of(st.just(-1), st.integers(0, 1000)),  # -1: the latest
            bump=st.booleans(),
            tweak=st.sampled_from([None, "perm", "drop", "add"]),
        )
        def reregister_through_pod(
            self, pod: int, pick: int, bump: bool, tweak: str | None
        ) -> None:
            """A broker sending what it sent before (the periodic re-registration), or with one
            topic changed, added or gone."""
            index = pick if pick < 0 else pick % len(self.sent)
            cluster, name, addr, broker_id, topics = self.sent[index]
            topics = list(topics)
            if tweak == "perm":
                t, r, w, p = topics[0]
                topics[0] = (t, r, w, 6 if p != 6 else 4)
            elif tweak == "drop" and len(topics) > 1:
                topics.pop()
            elif tweak == "add":
                spare = [t for t in TOPICS if t not in {x[0] for x in topics}]
                if spare:
                    topics.append((spare[0], 2, 2, 6))
            self.register(pod, cluster, name, addr, broker_id, topics, bump)

        @rule(
            cluster=st.sampled_from(CLUSTERS),
            addr=st.sampled_from(ADDRS),
            name=st.sampled_from(NAMES),
        )
        def unregister(self, cluster: str, addr: str, name: str) -> None:
            self.run(self.store.unregister_broker(cluster, addr, name))
            self.model.remove(cluster, addr, name)

        @rule(cluster=st.sampled_from(CLUSTERS), addr=st.sampled_from(ADDRS))
        def expire(self, cluster: str, addr: str) -> None:
            # at its deadline: a liveness key gone before it is an eviction, not an expiry
            keys = self.store.keys
            deadline = self.run(self.client.zscore(keys.deadlines, ident_of(cluster, addr)))
            self.run(self.client.delete(self.store.keys.live(cluster, addr)))
            now = int(deadline) if deadline is not None else None
            removed = self.run(
                self.store.remove_broker(RemovalReason.EXPIRED, cluster, addr, now=now)
            ).removed
            assert removed == self.model.remove(cluster, addr)

        @rule(name=st.sampled_from(NAMES), enabled=st.booleans())
        def write_perm(self, name: str, enabled: bool) -> None:
            count = self.run(
                self.store.add_write_perm(name) if enabled else self.store.wipe_write_perm(name)
            )
            assert count == self.model.write_perm(name, enabled)

        @rule(topic=st.sampled_from(TOPICS), cluster=st.sampled_from([None, *CLUSTERS]))
        def delete_topic(self, topic: str, cluster: str | None) -> None:
            self.run(self.store.delete_topic(topic, cluster))
            self.model.delete_topic(topic, cluster)

        @invariant()
        def agree(self) -> None:
            for topic in TOPICS:
                route = self.run(self.store.get_route(topic))
                got = route.to_wire() if route is not None else None
                assert got == self.model.route(topic), topic
            assert self.run(self.store.get_cluster_info()).to_wire() == self.model.cluster_info()
            assert self.run(self.store.all_topics()) == sorted(self.model.topics)
            problems = self.run(check_namespace(self.client, self.namespace))
            assert problems == [], problems

    return StoreVsModel


def run_machine(machine: type[RuleBasedStateMachine]) -> None:
    machine.TestCase.settings = settings(
        max_examples=40,
        stateful_step_count=20,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    machine.TestCase().runTest()


def test_store_matches_model_on_fakeredis() -> None:
    server = fakeredis.FakeServer()
    run_machine(make_machine(lambda: fakeredis.FakeAsyncRedis(server=server)))


@pytest.mark.real_redis
def test_store_matches_model_on_real_redis() -> None:
    server = RedisServerProcess().start()
    try:
        run_machine(make_machine(lambda: aioredis.Redis.from_url(server.url)))
    finally:
        server.stop()
