"""Handlers of RocketMQ 5's controller codes (docs/controller.md): every pod answers them and
reports itself as the controller leader. Headers and bodies are encoded as the 5.3.3
controller encodes them (fastjson bodies, unquoted numeric keys in ELECT_MASTER's).

The processor merges :data:`CONTROLLER_HANDLERS` into its dispatch dict and sends the
controller side of BROKER_HEARTBEAT (904) here (:func:`controller_heartbeat`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from namesrv_redis.domain.controller import Controller
from namesrv_redis.remoting.client import RemotingClient
from namesrv_redis.remoting.codec import RemotingCommand
from namesrv_redis.remoting.handler_types import Connection, Response
from namesrv_redis.rocketmq import fastjson
from namesrv_redis.rocketmq.codes import RequestCode, ResponseCode
from namesrv_redis.rocketmq.controller_headers import (
    ControllerHeartbeat,
    ElectMasterHeader,
    clean_ids,
    encode_sync_state_set,
    sync_state_set_body,
)
from namesrv_redis.rocketmq.errors import BadRequest
from namesrv_redis.rocketmq.headers import opt_bool, opt_str, req_int, req_name
from namesrv_redis.store.controller_store import GroupState

if TYPE_CHECKING:
    from namesrv_redis.remoting.processor import NamesrvProcessor

ControllerHandler = Callable[[Controller, RemotingCommand, Connection], Awaitable[Response]]
_HANDLERS: dict[int, ControllerHandler] = {}
NOTIFY_TIMEOUT_S = 3.0
LEADER_ID = "namesrv-redis"


def _handles(code: int) -> Callable[[ControllerHandler], ControllerHandler]:
    def register(fn: ControllerHandler) -> ControllerHandler:
        _HANDLERS[int(code)] = fn
        return fn

    return register


def _dispatch(fn: ControllerHandler) -> Any:
    async def handler(p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection) -> Response:
        if p.controller is None:
            return Response(
                ResponseCode.REQUEST_CODE_NOT_SUPPORTED, f" request type {cmd.code} not supported"
            )
        return await fn(p.controller, cmd, conn)

    return handler


def controller_handlers() -> dict[int, Any]:
    """Request code -> processor handler, for the processor's dispatch dict."""
    return {code: _dispatch(fn) for code, fn in _HANDLERS.items()}


async def controller_heartbeat(p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection) -> None:
    """The controller side of BROKER_HEARTBEAT: the broker id's liveness (oneway: no answer)."""
    if p.controller is None:
        return
    h = ControllerHeartbeat.parse(cmd.ext_fields)
    await p.controller.store.heartbeat(
        h.cluster_name,
        h.broker_name,
        h.broker_id,
        h.broker_addr,
        epoch=h.epoch,
        max_offset=h.max_offset,
        confirm_offset=h.confirm_offset,
        timeout_ms=h.timeout_ms,
        priority=h.election_priority,
        conn_id=conn.conn_id,
    )
    conn.controller_members.add((h.broker_name, h.broker_id))


async def notify_broker(addr: str, ext: dict[str, str], body: bytes) -> None:
    """NOTIFY_BROKER_ROLE_CHANGED, oneway, on a connection of its own to the broker."""
    host, _, port = addr.rpartition(":")
    client = await asyncio.wait_for(RemotingClient.connect(host, int(port)), NOTIFY_TIMEOUT_S)
    try:
        await client.request(
            RequestCode.NOTIFY_BROKER_ROLE_CHANGED, ext, body, oneway=True, version=0
        )
    finally:
        await asyncio.wait_for(client.close(), NOTIFY_TIMEOUT_S)


def _master_fields(g: GroupState, *, set_epoch: bool = True) -> dict[str, str]:
    ext: dict[str, str] = {}
    if g.master is not None:
        ext["masterBrokerId"] = str(g.master)
        ext["masterAddress"] = g.master_addr or ""
    ext["masterEpoch"] = str(g.master_epoch)
    if set_epoch:
        ext["syncStateSetEpoch"] = str(g.sync_state_set_epoch)
    return ext


def _error(code: int, remark: str, ext: dict[str, str] | None = None) -> Response:
    return Response(code, remark, ext_fields=ext)


@_handles(RequestCode.CONTROLLER_GET_METADATA_INFO)
async def get_metadata(c: Controller, cmd: RemotingCommand, conn: Connection) -> Response:
    return Response(
        ext_fields={
            "controllerLeaderId": LEADER_ID,
            "controllerLeaderAddress": c.address,
            "isLeader": "true",
            "peers": f"{LEADER_ID}:{c.address};",
            "group": "namesrv-redis",
        }
    )


@_handles(RequestCode.CONTROLLER_GET_NEXT_BROKER_ID)
async def get_next_broker_id(c: Controller, cmd: RemotingCommand, conn: Connection) -> Response:
    cluster = req_name(cmd.ext_fields, "clusterName")
    name = req_name(cmd.ext_fields, "brokerName")
    next_id = await c.store.next_broker_id(name)
    return Response(
        ext_fields={"clusterName": cluster, "nextBrokerId": str(next_id), "brokerName": name}
    )


@_handles(RequestCode.CONTROLLER_APPLY_BROKER_ID)
async def apply_broker_id(c: Controller, cmd: RemotingCommand, conn: Connection) -> Response:
    ext = cmd.ext_fields
    cluster, name = req_name(ext, "clusterName"), req_name(ext, "brokerName")
    broker_id = req_int(ext, "appliedBrokerId", bits=64)
    code = req_name(ext, "registerCheckCode")
    if broker_id < 1 or ";" not in code:
        return _error(
            ResponseCode.CONTROLLER_BROKER_ID_INVALID, f"Fail to apply brokerId: {broker_id}"
        )
    r = await c.store.apply_broker_id(cluster, name, broker_id, code)
    if r.code != 0:
        return _error(r.code, r.remark)
    return Response(ext_fields={"clusterName": cluster, "brokerName": name})


@_handles(RequestCode.CONTROLLER_REGISTER_BROKER)
async def register_broker(c: Controller, cmd: RemotingCommand, conn: Connection) -> Response:
    ext = cmd.ext_fields
    cluster, name = req_name(ext, "clusterName"), req_name(ext, "brokerName")
    broker_id = req_int(ext, "brokerId", bits=64)
    if broker_id < 1:
        return _error(ResponseCode.CONTROLLER_BROKER_NEED_TO_BE_REGISTERED, "bad brokerId")
    r = await c.store.register(name, broker_id, req_name(ext, "brokerAddress"))
    if r.code != 0 or r.group is None:
        return _error(r.code, r.remark)
    g = r.group
    out = {"clusterName": cluster, "brokerName": name}
    if g.master is not None and g.master_alive:
        out |= _master_fields(g)
    return Response(
        ext_fields=out, body=encode_sync_state_set(g.sync_state_set, g.sync_state_set_epoch)
    )


@_handles(RequestCode.CONTROLLER_ELECT_MASTER)
async def elect_master(c: Controller, cmd: RemotingCommand, conn: Connection) -> Response:
    h = ElectMasterHeader.parse(cmd.ext_fields)
    r = await c.elect(h.broker_name, h.broker_id, h.designate_elect)
    g = r.group
    if r.code == 0 and g is not None:
        group = {
            "brokerAddrs": {i: g.addrs[i] for i in sorted(g.addrs)},
            "brokerName": h.broker_name,
            "cluster": g.cluster,
        }
        body = {"brokerMemberGroup": group, "syncStateSet": list(g.sync_state_set)}
        return Response(ext_fields=_master_fields(g), body=fastjson.dumps_fastjson(body))
    if r.code == ResponseCode.CONTROLLER_MASTER_STILL_EXIST and g is not None:
        still = fastjson.dumps_fastjson({"syncStateSet": list(g.sync_state_set)})
        return Response(r.code, r.remark, ext_fields=_master_fields(g), body=still)
    return _error(r.code, r.remark, {})


@_handles(RequestCode.CONTROLLER_GET_REPLICA_INFO)
async def get_replica_info(c: Controller, cmd: RemotingCommand, conn: Connection) -> Response:
    g = await c.store.group(req_name(cmd.ext_fields, "brokerName"))
    if g is None:
        return _error(
            ResponseCode.CONTROLLER_BROKER_METADATA_NOT_EXIST, "Broker metadata is not existed"
        )
    return Response(
        ext_fields=_master_fields(g, set_epoch=False),
        body=encode_sync_state_set(g.sync_state_set, g.sync_state_set_epoch),
    )


@_handles(RequestCode.CONTROLLER_ALTER_SYNC_STATE_SET)
async def alter_sync_state_set(c: Controller, cmd: RemotingCommand, conn: Connection) -> Response:
    ext = cmd.ext_fields
    ids, epoch = sync_state_set_body(cmd.body)
    if not ids:
        raise BadRequest("bad SyncStateSet body: an empty set")
    r = await c.store.alter_sync_state_set(
        req_name(ext, "brokerName"),
        req_int(ext, "masterBrokerId", bits=64),
        req_int(ext, "masterEpoch"),
        epoch,
        ids,
    )
    if r.code != 0 or r.group is None:
        return _error(r.code, r.remark, {"newSyncStateSetEpoch": "0"})
    g = r.group
    return Response(
        ext_fields={"newSyncStateSetEpoch": str(g.sync_state_set_epoch)},
        body=encode_sync_state_set(g.sync_state_set, g.sync_state_set_epoch),
    )


@_handles(RequestCode.CONTROLLER_GET_SYNC_STATE_DATA)
async def get_sync_state_data(c: Controller, cmd: RemotingCommand, conn: Connection) -> Response:
    if not cmd.body:
        return Response()
    try:
        names = fastjson.loads(cmd.body)
    except ValueError as e:
        raise BadRequest(f"bad broker name list: {e}") from None
    if not isinstance(names, list):
        raise BadRequest("bad broker name list: not an array")
    table: dict[str, Any] = {}
    for name in names:
        g = await c.store.group(str(name))
        if g is None:
            continue
        live = await c.store.live(str(name), sorted(g.addrs))

        def replica(i: int, g: GroupState = g, name: str = str(name), alive: Any = live) -> Any:
            return {
                "alive": i in alive,
                "brokerAddress": g.addrs[i],
                "brokerId": i,
                "brokerName": name,
            }

        info: dict[str, Any] = {
            "inSyncReplicas": [replica(i) for i in sorted(g.addrs) if i in g.sync_state_set],
        }
        if g.master is not None:
            info["masterAddress"] = g.master_addr
            info["masterBrokerId"] = g.master
        info["masterEpoch"] = g.master_epoch
        info["notInSyncReplicas"] = [
            replica(i) for i in sorted(g.addrs) if i not in g.sync_state_set
        ]
        info["syncStateSetEpoch"] = g.sync_state_set_epoch
        table[str(name)] = info
    return Response(body=fastjson.dumps_fastjson({"replicasInfoTable": table}))


@_handles(RequestCode.CLEAN_BROKER_DATA)
async def clean_broker_data(c: Controller, cmd: RemotingCommand, conn: Connection) -> Response:
    ext = cmd.ext_fields
    name = req_name(ext, "brokerName")
    ids = clean_ids(opt_str(ext, "brokerControllerIdsToClean"))
    if ids is None:
        return _error(
            ResponseCode.CONTROLLER_INVALID_CLEAN_BROKER_METADATA,
            "Please set the option <brokerControllerIdsToClean> according to the format",
        )
    r = await c.store.clean(name, ids, living=bool(opt_bool(ext, "isCleanLivingBroker")))
    return Response() if r.code == 0 else _error(r.code, r.remark)
