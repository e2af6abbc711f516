"""A simulated broker kept registered from a background thread, so synchronous tests (which
run CLIs in-process with their own event loop) can have a live broker on a real server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.remoting.codec import RemotingCommand
from namesrv_redis.rocketmq.codes import ResponseCode
from namesrv_redis.sim.broker import SimBroker

T = TypeVar("T")


class BrokerThread:
    def __init__(self, namesrv_port: int, broker: SimBroker) -> None:
        self.port = namesrv_port
        self.broker = broker
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.client: RemotingClient | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)

    def start(self) -> BrokerThread:
        self.thread.start()
        self.client = self.run(RemotingClient.connect("127.0.0.1", self.port))
        self.register()
        return self

    def register(self) -> RemotingCommand:
        assert self.client is not None
        answer = self.run(self.broker.register(self.client))
        assert answer.code == ResponseCode.SUCCESS, answer.remark
        return answer

    def stop(self) -> None:
        if self.client is not None:
            self.run(self.client.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
