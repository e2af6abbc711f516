"""Every option name of the Java NameServer's ``NamesrvConfig`` and ``NettyServerConfig``
(RocketMQ 4.9.x and 5.x: the fields of both classes at tags ``rocketmq-all-4.9.8`` and
``rocketmq-all-5.3.3``), and what each one means here.

A Java ``namesrv.properties`` is accepted as it is: the options that have a meaning for a
Redis-backed name server are mapped onto our settings (most already carry the Java name, see
:data:`namesrv_redis.settings.config.ROCKETMQ_NAMES`; the rest are in :data:`MAPPED`); the
others (thread pools, Netty buffers, the paths of the Java files) are accepted from a file, the
environment and the command line, reported in one WARNING line and ignored.
"""

from __future__ import annotations

import re

NAMESRV_CONFIG: tuple[str, ...] = (
    "rocketmqHome",
    "kvConfigPath",
    "configStorePath",
    "productEnvName",
    "clusterTest",
    "orderMessageEnable",
    "returnOrderTopicConfigToBroker",
    "clientRequestThreadPoolNums",
    "defaultThreadPoolNums",
    "clientRequestThreadPoolQueueCapacity",
    "defaultThreadPoolQueueCapacity",
    "scanNotActiveBrokerInterval",
    "unRegisterBrokerQueueCapacity",
    "supportActingMaster",
    "enableAllTopicList",
    "enableTopicList",
    "notifyMinBrokerIdChanged",
    "enableControllerInNamesrv",
    "needWaitForService",
    "waitSecondsForService",
    "deleteTopicWithBrokerRegistration",
    "configBlackList",
)
"""``org.apache.rocketmq.common.namesrv.NamesrvConfig`` (4.9.8 has the first seven and
``configBlackList``; 5.3.3 has them all)."""

NETTY_SERVER_CONFIG: tuple[str, ...] = (
    "bindAddress",
    "listenPort",
    "serverWorkerThreads",
    "serverCallbackExecutorThreads",
    "serverSelectorThreads",
    "serverOnewaySemaphoreValue",
    "serverAsyncSemaphoreValue",
    "serverChannelMaxIdleTimeSeconds",
    "serverSocketSndBufSize",
    "serverSocketRcvBufSize",
    "writeBufferHighWaterMark",
    "writeBufferLowWaterMark",
    "serverSocketBacklog",
    "serverNettyWorkerGroupEnable",
    "serverPooledByteBufAllocatorEnable",
    "enableShutdownGracefully",
    "shutdownWaitTimeSeconds",
    "useEpollNativeSelector",
)
"""``org.apache.rocketmq.remoting.netty.NettyServerConfig`` (``bindAddress``,
``serverNettyWorkerGroupEnable``, ``enableShutdownGracefully`` and ``shutdownWaitTimeSeconds``
are 5.x only)."""

JAVA_OPTIONS: tuple[str, ...] = NAMESRV_CONFIG + NETTY_SERVER_CONFIG

MAPPED: dict[str, str] = {
    "bindAddress": "listen_host",
    "writeBufferHighWaterMark": "flow_write_buffer_high",
    "writeBufferLowWaterMark": "flow_write_buffer_low",
}
"""Java names that set one of our options under another name (Java option → field)."""

ZERO_MEANS_DEFAULT = frozenset({"writeBufferHighWaterMark", "writeBufferLowWaterMark"})
"""Netty leaves a water mark of 0 at its own default; so do we."""


def snake_case(name: str) -> str:
    """``serverWorkerThreads`` → ``server_worker_threads`` (the ``NAMESRV_…`` spelling)."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def ignored_options(known: set[str] | frozenset[str]) -> tuple[str, ...]:
    """The Java names that neither ``known`` (our RocketMQ-named options) nor :data:`MAPPED`
    give a meaning to."""
    return tuple(n for n in JAVA_OPTIONS if n not in known and n not in MAPPED)
