"""The simulated RocketMQ estate of ``bench capacity``: which brokers exist, which topics each
one serves, and the time compression of RocketMQ's schedules.

Brokers come in *groups* of ``spread`` (the broker sets a topic is created on, as
``mqadmin updateTopic -c <cluster>`` spreads a topic over a cluster's brokers): every broker of
group ``g`` serves the same ``topics_per_broker`` topics, so a topic's route names ``spread``
brokers and the estate has ``ceil(brokers / spread) * topics_per_broker`` distinct topics.
Every process of the benchmark derives names from the same :class:`Estate`, so only the
sizes cross process boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass

ROCKETMQ_REGISTER_INTERVAL_S = 30.0
"""A broker's registerBrokerAll period (BrokerConfig.registerNameServerPeriod)."""
ROCKETMQ_BROKER_TIMEOUT_S = 120.0
"""The name server's brokerChannelExpiredTime: four registration periods."""
ROCKETMQ_CLIENT_POLL_S = 30.0
"""A client's pollNameServerInterval: each of its topics' routes is asked for this often."""


@dataclass(frozen=True)
class Estate:
    brokers: int
    topics_per_broker: int
    spread: int = 1
    brokers_per_cluster: int = 100
    interval_s: float = 3.0
    """Registration period after time compression (RocketMQ: 30 s)."""

    def __post_init__(self) -> None:
        if self.brokers < 1 or self.topics_per_broker < 1 or self.spread < 1:
            raise ValueError("brokers, topics per broker and spread must be at least 1")
        if self.interval_s <= 0:
            raise ValueError("the registration interval must be positive")

    @property
    def compression(self) -> float:
        """How many times faster than RocketMQ the schedules run."""
        return ROCKETMQ_REGISTER_INTERVAL_S / self.interval_s

    @property
    def timeout_ms(self) -> int:
        """The heartbeat timeout each broker registers with: RocketMQ's 120 s, compressed."""
        return round(ROCKETMQ_BROKER_TIMEOUT_S / self.compression * 1000)

    @property
    def client_poll_s(self) -> float:
        return ROCKETMQ_CLIENT_POLL_S / self.compression

    @property
    def groups(self) -> int:
        return -(-self.brokers // self.spread)

    @property
    def topic_count(self) -> int:
        return self.groups * self.topics_per_broker

    def broker_name(self, b: int) -> str:
        return f"cap-broker-{b}"

    def broker_addr(self, b: int) -> str:
        # never dialled (nothing sends to the brokers): addresses only have to be distinct
        return f"10.{(b >> 16) & 255}.{(b >> 8) & 255}.{b & 255}:10911"

    def cluster(self, b: int) -> str:
        return f"CapCluster-{b // self.brokers_per_cluster}"

    def topic(self, i: int) -> str:
        return f"cap-topic-{i}"

    def topics_of(self, b: int) -> list[str]:
        first = (b // self.spread) * self.topics_per_broker
        return [self.topic(first + j) for j in range(self.topics_per_broker)]

    def witness_topic(self, b: int) -> str:
        """A topic whose route lists broker ``b`` (its group's first)."""
        return self.topic((b // self.spread) * self.topics_per_broker)

    def all_topics(self) -> list[str]:
        return [self.topic(i) for i in range(self.topic_count)]

    def dying(self, count: int) -> list[int]:
        """The brokers of a rack that dies: ``count`` brokers spread over the groups, so that
        routes lose brokers without (while any broker of a group lives) losing topics."""
        count = min(count, self.brokers)
        step = self.brokers / count if count else 1
        return sorted({int(i * step) for i in range(count)})
