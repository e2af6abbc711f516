"""A simulated RocketMQ 5 broker in controller mode: the start-up sequence of 5.3.3's
ReplicasManager (1005 → 1012 → 1013 → 1003 → 1002 when there is no master), a oneway
BROKER_HEARTBEAT (904) to every controller address, CONTROLLER_GET_REPLICA_INFO (1004) polls,
and a listening port that receives NOTIFY_BROKER_ROLE_CHANGED (1008). ``kill()`` closes every
connection (kill -9); ``freeze()`` stops heartbeating with the connections left open
(SIGSTOP)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.remoting.codec import FrameDecoder, RemotingCommand
from namesrv_redis.rocketmq import fastjson
from namesrv_redis.rocketmq.codes import RequestCode

BROKER_VERSION = 479
"""RocketMQ 5.3.3's version ordinal, as its brokers send it."""


class ControllerBroker:
    def __init__(
        self,
        cluster: str,
        broker_name: str,
        controllers: list[str],
        *,
        heartbeat_interval_s: float = 1.0,
        heartbeat_timeout_ms: int = 10_000,
        max_offset: int = 0,
    ) -> None:
        self.cluster = cluster
        self.broker_name = broker_name
        self.controllers = controllers
        self.heartbeat_interval_s = heartbeat_interval_s
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self.max_offset = max_offset
        self.addr = ""
        self.broker_id = -1
        self.master_id: int | None = None
        self.master_epoch = -1
        self.sync_state_set: list[int] = []
        self.sync_state_set_epoch = 0
        self.notifications: list[RemotingCommand] = []
        self.clients: list[RemotingClient] = []
        self.leader: RemotingClient | None = None
        self._server: asyncio.base_events.Server | None = None
        self._heartbeats: asyncio.Task[None] | None = None

    @property
    def is_master(self) -> bool:
        return self.master_id is not None and self.master_id == self.broker_id

    async def _request(
        self, code: int, ext: dict[str, str], body: bytes | None = None
    ) -> RemotingCommand:
        assert self.leader is not None
        r = await self.leader.request(code, ext, body, version=BROKER_VERSION)
        assert r is not None
        return r

    def _adopt(self, ext: dict[str, str] | None, body: bytes | bytearray | None) -> None:
        ext = ext or {}
        epoch = int(ext.get("masterEpoch", "-1"))
        if epoch <= self.master_epoch or "masterBrokerId" not in ext:
            return
        self.master_epoch = epoch
        self.master_id = int(ext["masterBrokerId"])
        if body:
            d = fastjson.loads(body)
            self.sync_state_set = [int(i) for i in d.get("syncStateSet") or []]
            self.sync_state_set_epoch = int(
                d.get("syncStateSetEpoch", ext.get("syncStateSetEpoch", 0))
            )

    async def start(self) -> None:
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _NotifyProtocol(self), "127.0.0.1", 0
        )
        self.addr = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        for c in self.controllers:
            host, _, port = c.rpartition(":")
            self.clients.append(await RemotingClient.connect(host, int(port)))
        meta = await self.clients[0].request(
            RequestCode.CONTROLLER_GET_METADATA_INFO, None, version=BROKER_VERSION
        )
        assert meta is not None and meta.ext_fields is not None
        leader = meta.ext_fields["controllerLeaderAddress"]
        self.leader = next(
            (cl for cl, a in zip(self.clients, self.controllers, strict=True) if a == leader),
            self.clients[0],
        )
        base = {"clusterName": self.cluster, "brokerName": self.broker_name}
        r = await self._request(RequestCode.CONTROLLER_GET_NEXT_BROKER_ID, base)
        self.broker_id = int((r.ext_fields or {})["nextBrokerId"])
        check = f"{self.addr};{int(time.time() * 1000)}"
        r = await self._request(
            RequestCode.CONTROLLER_APPLY_BROKER_ID,
            {**base, "appliedBrokerId": str(self.broker_id), "registerCheckCode": check},
        )
        assert r.code == 0, r.remark
        r = await self._request(
            RequestCode.CONTROLLER_REGISTER_BROKER,
            {
                **base,
                "brokerId": str(self.broker_id),
                "brokerAddress": self.addr,
                "invokeTime": str(int(time.time() * 1000)),
            },
        )
        assert r.code == 0, r.remark
        self._adopt(r.ext_fields, r.body)
        await self.heartbeat()
        if self.master_id is None:
            r = await self._request(
                RequestCode.CONTROLLER_ELECT_MASTER,
                {
                    **base,
                    "brokerId": str(self.broker_id),
                    "designateElect": "false",
                    "invokeTime": str(int(time.time() * 1000)),
                },
            )
            self._adopt(r.ext_fields, r.body)
        self._heartbeats = asyncio.create_task(self._heartbeat_loop())

    async def heartbeat(self) -> None:
        ext = {
            "clusterName": self.cluster,
            "brokerAddr": self.addr,
            "brokerName": self.broker_name,
            "brokerId": str(self.broker_id),
            "epoch": str(self.master_epoch),
            "maxOffset": str(self.max_offset),
            "confirmOffset": str(self.max_offset),
            "heartbeatTimeoutMills": str(self.heartbeat_timeout_ms),
            "electionPriority": "2147483647",
        }
        for c in self.clients:
            await c.request(RequestCode.BROKER_HEARTBEAT, ext, oneway=True, version=BROKER_VERSION)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.heartbeat()

    async def poll(self) -> None:
        """CONTROLLER_GET_REPLICA_INFO: adopt a higher epoch."""
        r = await self._request(
            RequestCode.CONTROLLER_GET_REPLICA_INFO, {"brokerName": self.broker_name}
        )
        self._adopt(r.ext_fields, r.body)

    async def report_sync_state_set(self, ids: list[int]) -> RemotingCommand:
        body = fastjson.dumps_fastjson(
            {"syncStateSet": ids, "syncStateSetEpoch": self.sync_state_set_epoch}
        )
        r = await self._request(
            RequestCode.CONTROLLER_ALTER_SYNC_STATE_SET,
            {
                "brokerName": self.broker_name,
                "masterBrokerId": str(self.broker_id),
                "masterEpoch": str(self.master_epoch),
                "invokeTime": str(int(time.time() * 1000)),
            },
            body,
        )
        if r.code == 0:
            self.sync_state_set = ids
            self.sync_state_set_epoch = int((r.ext_fields or {})["newSyncStateSetEpoch"])
        return r

    def freeze(self) -> None:
        """SIGSTOP: no more heartbeats, the connections stay open."""
        if self._heartbeats is not None:
            self._heartbeats.cancel()

    async def kill(self) -> None:
        """kill -9: every connection closes."""
        self.freeze()
        for c in self.clients:
            await c.close()
        if self._server is not None:
            self._server.close()


class _NotifyProtocol(asyncio.Protocol):
    def __init__(self, broker: ControllerBroker) -> None:
        self.broker = broker
        self.decoder = FrameDecoder()

    def data_received(self, data: bytes) -> None:
        for cmd in self.decoder.feed(data):
            if cmd.code == RequestCode.NOTIFY_BROKER_ROLE_CHANGED:
                self.broker.notifications.append(cmd)
                self.broker._adopt(cmd.ext_fields, cmd.body)
