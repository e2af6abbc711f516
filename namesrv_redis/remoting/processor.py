"""Request handlers of the remoting front end: one function per request code, in a dict.

Each handler decodes its header and body, calls the route store, and returns a
:class:`Response`; the connection layer encodes it with the request's opaque and serialize
type. Semantics, response codes and remarks follow Apache RocketMQ's DefaultRequestProcessor
and ClientRequestProcessor (4.9.x and 5.x); docs/protocol.md lists them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from namesrv_redis.domain.controller import Controller
from namesrv_redis.domain.rebuild import AcceptedRegistration, AcceptedRegistrations, packable
from namesrv_redis.domain.reconcile import Reconciler
from namesrv_redis.domain.registrations import (
    RememberedRegistrations,
    registration_identity,
    store_registration,
)
from namesrv_redis.domain.route_reader import RouteReader
from namesrv_redis.domain.runtime_config import ConfigRefused, apply_update
from namesrv_redis.remoting.acl import AclGuard
from namesrv_redis.remoting.codec import RemotingCommand
from namesrv_redis.remoting.controller_handlers import controller_handlers, controller_heartbeat
from namesrv_redis.remoting.handler_types import Connection, Response
from namesrv_redis.rocketmq import fastjson
from namesrv_redis.rocketmq.bounds import java_int
from namesrv_redis.rocketmq.codes import RequestCode, ResponseCode
from namesrv_redis.rocketmq.controller_headers import is_controller_heartbeat
from namesrv_redis.rocketmq.errors import BadRequest
from namesrv_redis.rocketmq.headers import (
    BrokerAddrHeader,
    RegisterBrokerHeader,
    opt_bool,
    opt_str,
    req_str,
)
from namesrv_redis.rocketmq.model import BadDataVersion, QueueData, canonical_data_version
from namesrv_redis.rocketmq.register_body import (
    BodyError,
    RegisterTable,
    body_token,
    crc32_masked,
    decode_register_table,
)
from namesrv_redis.settings.config import (
    Settings,
    blacklisted_keys,
    parse_properties,
    to_properties_text,
)
from namesrv_redis.store.keys import ORDER_TOPIC_CONFIG
from namesrv_redis.store.route_store import (
    BrokerRegistration,
    Refresh,
    RegisterResult,
    RegisterStatus,
    RemovalReason,
    RouteStore,
    now_ms,
    record_removal,
)
from namesrv_redis.telemetry.metrics import REGISTRATIONS

log = logging.getLogger(__name__)

V4_9_4 = 401
FAQ_APPLY_TOPIC = "\nSee http://rocketmq.apache.org/docs/faq/ for further details."


CLOSE_REMOVALS_AT_ONCE = 32
CLOSE_REMOVAL_ATTEMPTS = 3
CLOSE_REMOVAL_BACKOFF_S = 0.25

Handler = Callable[["NamesrvProcessor", RemotingCommand, Connection], Awaitable[Response]]
HANDLERS: dict[int, Handler] = {}


def handles(*codes: int) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for c in codes:
            HANDLERS[int(c)] = fn
        return fn

    return register


def topic_list_body(topics: list[str], broker_addr: str | None = None) -> bytes:
    """RocketMQ's TopicList in fastjson form (brokerAddr left out when null)."""
    d: dict[str, Any] = {}
    if broker_addr is not None:
        d["brokerAddr"] = broker_addr
    d["topicList"] = topics
    return fastjson.dumps_fastjson(d)


def kv_table_body(table: dict[str, str]) -> bytes:
    return fastjson.dumps_fastjson({"table": table})


class NamesrvProcessor:
    """Dispatches decoded requests to handlers. One per pod; handlers are stateless."""

    def __init__(self, store: RouteStore, settings: Settings, routes: RouteReader) -> None:
        self.store = store
        self.settings = settings
        self.routes = routes
        self.started_at = time.monotonic()
        self._route_served = False
        self.registrations = RememberedRegistrations()
        """Per broker process: the last registration this pod stored."""
        self.accepted = AcceptedRegistrations()
        """Per connected broker process: its last accepted registration, to re-apply when
        Redis loses the namespace's data (:mod:`namesrv_redis.domain.rebuild`)."""
        self.reconciler = Reconciler(
            store,
            self.accepted,
            interval_ms=settings.reconcile_interval_ms,
            remembered=self.registrations,
        )
        """Verifies what Redis holds for those brokers and repairs it
        (:mod:`namesrv_redis.domain.reconcile`); the pod runs its loop."""
        self.guard: AclGuard | None = None
        """ACL signature and address checks (namesrv_redis/remoting/acl.py), when configured."""
        self._close_removals = asyncio.Semaphore(CLOSE_REMOVALS_AT_ONCE)
        self.controller: Controller | None = None
        """RocketMQ 5 Controller mode (remoting/controller_handlers.py), set by the pod."""

    async def refusal(self, cmd: RemotingCommand, conn: Connection) -> Response | None:
        """The ACL's answer when ``cmd`` may not run, else None."""
        return await self.guard.check(cmd, conn) if self.guard is not None else None

    async def process(self, cmd: RemotingCommand, conn: Connection) -> Response:
        if self.guard is not None:
            refused = await self.guard.check(cmd, conn)
            if refused is not None:
                return refused
        handler = HANDLERS.get(cmd.code)
        if handler is None:
            return Response(
                ResponseCode.REQUEST_CODE_NOT_SUPPORTED, f" request type {cmd.code} not supported"
            )
        return await handler(self, cmd, conn)

    # -------------------------------------------------------------- helpers

    def _topic_lists_disabled(self, *, all_topics: bool = False) -> Response | None:
        enabled = (
            self.settings.enable_all_topic_list if all_topics else self.settings.enable_topic_list
        )
        return None if enabled else Response(ResponseCode.SYSTEM_ERROR, "disable")

    def _not_ready_for_routes(self) -> bool:
        """RocketMQ 5's needWaitForService: refuse route queries for a while after start,
        until the first route is found."""
        s = self.settings
        if not s.need_wait_for_service or self._route_served:
            return False
        return time.monotonic() - self.started_at < s.wait_seconds_for_service

    async def rebuild(self, reason: str) -> tuple[int, int]:
        """Re-apply the last registration of every broker connected to this pod."""

        store = self.store.unconfirmed()

        async def reapply(reg: AcceptedRegistration) -> bool:
            self.registrations.forget(registration_identity(reg.header))
            result = await _store_register(
                self, reg.header, reg.raw_body(), reg.token, reg.client_version, reg.conn_id, store
            )
            if result.status is not RegisterStatus.OK:
                return False
            # the registration gave a fresh timeout: keep the broker's own deadline instead
            silent_ms = int((time.monotonic() - reg.last_seen) * 1000)
            await store.lower_deadline(
                reg.header.cluster_name,
                reg.header.broker_addr,
                now_ms() + reg.timeout_ms - silent_ms,
            )
            return True

        applied = await self.accepted.reapply_all(reapply, reason)
        # a re-registration with an unchanged body writes no queue data while the broker's
        # table token survived (an eviction of some keys, not a flush): verify everything
        await self.reconciler.verify_all()
        return applied

    async def connection_closed(self, conn: Connection) -> None:
        """A closed broker connection removes that broker at once — if it still owns it.

        Thousands of connections can close at once (a broker fleet restarting, a load balancer
        dropping its connections): removals run ``CLOSE_REMOVALS_AT_ONCE`` at a time, so the
        burst queues here instead of piling up past every Redis deadline, and a removal that
        Redis refused or did not answer in time is retried; after the last attempt the
        broker's heartbeat timeout removes it (expiry event or sweep), with a warning.
        """
        if conn.controller_members and self.controller is not None:
            await self.controller.connection_closed(conn.conn_id, conn.controller_members)
        self.accepted.forget_connection(conn.conn_id)
        for cluster, addr, name in list(conn.brokers):
            await self._remove_closed(cluster, addr, name, conn.conn_id)

    async def _remove_closed(self, cluster: str, addr: str, name: str, conn_id: str) -> None:
        for attempt in range(1, CLOSE_REMOVAL_ATTEMPTS + 1):
            try:
                async with self._close_removals:
                    result = await self.store.remove_broker(
                        RemovalReason.CONNECTION_CLOSED, cluster, addr, name, conn_id=conn_id
                    )
            except RedisError as e:
                if attempt == CLOSE_REMOVAL_ATTEMPTS:
                    log.warning(
                        "broker %s (%s) of cluster %s: its connection closed but removing it "
                        "failed %d times (%s); its heartbeat timeout will remove it",
                        name,
                        addr,
                        cluster,
                        attempt,
                        e,
                    )
                    return
                await asyncio.sleep(CLOSE_REMOVAL_BACKOFF_S * attempt)
                continue
            record_removal(result, RemovalReason.CONNECTION_CLOSED, cluster, addr)
            return


# ------------------------------------------------------------------ KV config


@handles(RequestCode.PUT_KV_CONFIG)
async def put_kv_config(p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection) -> Response:
    ext = cmd.ext_fields
    namespace, key = opt_str(ext, "namespace"), opt_str(ext, "key")
    if namespace is None or key is None:
        return Response(ResponseCode.SYSTEM_ERROR, "namespace or key is null")
    await p.store.put_kv(namespace, key, req_str(ext, "value"))
    return Response()


@handles(RequestCode.GET_KV_CONFIG)
async def get_kv_config(p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection) -> Response:
    namespace, key = req_str(cmd.ext_fields, "namespace"), req_str(cmd.ext_fields, "key")
    value = await p.store.get_kv(namespace, key)
    if value is None:
        return Response(
            ResponseCode.QUERY_NOT_FOUND,
            f"No config item, Namespace: {namespace} Key: {key}",
            ext_fields={},
        )
    return Response(ext_fields={"value": value})


@handles(RequestCode.DELETE_KV_CONFIG)
async def delete_kv_config(p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection) -> Response:
    await p.store.delete_kv(req_str(cmd.ext_fields, "namespace"), req_str(cmd.ext_fields, "key"))
    return Response()


@handles(RequestCode.GET_KVLIST_BY_NAMESPACE)
async def get_kv_list(p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection) -> Response:
    namespace = req_str(cmd.ext_fields, "namespace")
    table = await p.store.list_kv(namespace)
    if table is None:
        return Response(ResponseCode.QUERY_NOT_FOUND, f"No config item, Namespace: {namespace}")
    return Response(body=kv_table_body(table))


# ------------------------------------------------------------------ brokers


@handles(RequestCode.REGISTER_BROKER)
async def register_broker(p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection) -> Response:
    fields = cmd.ext_fields
    last = conn.last_register
    if last is not None and last[0] == fields:
        h = last[1]
    else:
        h = RegisterBrokerHeader.parse(fields)
        conn.last_register = (dict(fields or {}), h)
    body = cmd.body or b""
    seen = p.accepted.get(h.cluster_name, h.broker_addr)
    if seen is not None and seen.same_body(body):  # the CRC of the very bytes last accepted
        crc, token = seen.crc32, seen.token
    else:
        crc = crc32_masked(body, cmd.body_crc32)
        token = body_token(body, crc) if body else ""
    if h.body_crc32 != 0 and crc != h.body_crc32:
        log.warning("registerBroker from %s: crc32 not match", conn.remote_addr)
        REGISTRATIONS.labels("crc_mismatch").inc()
        return Response(ResponseCode.SYSTEM_ERROR, "crc32 not match")
    result = await _store_register(p, h, body, token, cmd.version, conn.conn_id)
    _registrations(result.status).inc()
    if result.status is not RegisterStatus.OK:
        return Response(ResponseCode.SYSTEM_ERROR, "register broker failed")
    conn.brokers.add((h.cluster_name, h.broker_addr, h.broker_name))
    _accepted(p, h, body, token, cmd.version, conn.conn_id)
    ext: dict[str, str] = {}
    if result.ha_server_addr is not None:
        ext["haServerAddr"] = result.ha_server_addr
    if result.master_addr is not None:
        ext["masterAddr"] = result.master_addr
    order_topics = result.kv_table  # asked for when returnOrderTopicConfigToBroker
    return Response(
        ext_fields=ext, body=kv_table_body(order_topics) if order_topics is not None else None
    )


_REGISTRATION_COUNTERS: dict[RegisterStatus, Any] = {}


def _registrations(status: RegisterStatus) -> Any:
    """The registrations counter of one outcome (labels() is too slow per request)."""
    child = _REGISTRATION_COUNTERS.get(status)
    if child is None:
        child = _REGISTRATION_COUNTERS[status] = REGISTRATIONS.labels(status.value)
    return child


async def _store_register(
    p: NamesrvProcessor,
    h: RegisterBrokerHeader,
    body: bytes | bytearray,
    token: str,
    client_version: int,
    conn_id: str,
    store: RouteStore | None = None,
) -> RegisterResult:
    def parse() -> RegisterTable:
        try:
            return decode_register_table(body, h.compressed, client_version)
        except BodyError as e:
            raise BadRequest(f"Failed to decode RegisterBrokerBody: {e}") from e

    return await store_registration(
        store or p.store,
        p.registrations,
        registration_identity(h),
        token,
        parse,
        lambda **fields: _registration(
            p,
            h,
            conn_id,
            return_kv_namespace=ORDER_TOPIC_CONFIG
            if p.settings.return_order_topic_config_to_broker
            else "",
            **fields,
        ),
    )


def _accepted(
    p: NamesrvProcessor,
    h: RegisterBrokerHeader,
    body: bytes | bytearray,
    token: str,
    client_version: int,
    conn_id: str,
) -> None:
    """Remember an accepted registration for a rebuild (the body only when it changed)."""
    now = time.monotonic()
    seen = p.accepted.get(h.cluster_name, h.broker_addr)
    if (
        seen is not None
        and seen.token == token
        and (seen.header is h or seen.header == h)
        and seen.conn_id == conn_id
    ):
        seen.last_seen = now
        return
    timeout = h.heartbeat_timeout_millis or p.settings.broker_timeout_ms
    p.accepted.accepted(
        AcceptedRegistration(
            h,
            body if packable(body, h.compressed) else bytes(body),
            token,
            client_version,
            conn_id,
            timeout,
            now,
        )
    )


def _registration(
    p: NamesrvProcessor, h: RegisterBrokerHeader, conn_id: str, **fields: Any
) -> BrokerRegistration:
    return BrokerRegistration(
        cluster=h.cluster_name,
        broker_addr=h.broker_addr,
        broker_name=h.broker_name,
        broker_id=h.broker_id,
        ha_server_addr=h.ha_server_addr,
        heartbeat_timeout_ms=h.heartbeat_timeout_millis or p.settings.broker_timeout_ms,
        zone_name=h.zone_name,
        enable_acting_master=h.enable_acting_master,
        conn_id=conn_id,
        **fields,
    )


@handles(RequestCode.UNREGISTER_BROKER)
async def unregister_broker(
    p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection
) -> Response:
    h = BrokerAddrHeader.parse(cmd.ext_fields)
    p.accepted.forget(h.cluster_name, h.broker_addr)
    result = await p.store.unregister_broker(h.cluster_name, h.broker_addr, h.broker_name)
    conn.brokers.discard((h.cluster_name, h.broker_addr, h.broker_name))
    record_removal(result, RemovalReason.UNREGISTERED, h.cluster_name, h.broker_addr)
    return Response()


@handles(RequestCode.BROKER_HEARTBEAT)
async def broker_heartbeat(p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection) -> Response:
    if is_controller_heartbeat(cmd.ext_fields):  # a controller-mode broker: both roles
        await controller_heartbeat(p, cmd, conn)
    h = BrokerAddrHeader.parse(cmd.ext_fields, name_required=False)
    refreshed = await p.store.refresh_liveness(
        h.cluster_name, h.broker_addr, **_refresh_fields(p, h, conn)
    )
    if refreshed:
        p.accepted.seen(h.cluster_name, h.broker_addr)
    if refreshed is Refresh.RECREATED:  # Redis is losing keys: check the rest of it now
        p.reconciler.urgent(h.cluster_name, h.broker_addr)
    return Response()


def _refresh_fields(p: NamesrvProcessor, h: BrokerAddrHeader, conn: Connection) -> dict[str, Any]:
    """What a liveness refresh recreates an evicted liveness key with."""
    accepted = p.accepted.get(h.cluster_name, h.broker_addr)
    timeout = accepted.timeout_ms if accepted is not None else p.settings.broker_timeout_ms
    return {"timeout_ms": timeout, "conn_id": conn.conn_id}


@handles(RequestCode.QUERY_DATA_VERSION)
async def query_data_version(
    p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection
) -> Response:
    h = BrokerAddrHeader.parse(cmd.ext_fields, name_required=False)
    try:
        dv = fastjson.loads(cmd.body) if cmd.body else None
    except ValueError as e:
        raise BadRequest(f"bad DataVersion body: {e}") from e
    if dv is not None and not isinstance(dv, dict):
        raise BadRequest("bad DataVersion body: not an object")
    try:
        canonical = canonical_data_version(dv)
    except BadDataVersion as e:
        raise BadRequest(f"bad DataVersion body: {e}") from None
    changed, stored = await p.store.query_data_version(
        h.cluster_name, h.broker_addr, canonical, **_refresh_fields(p, h, conn)
    )
    p.accepted.seen(h.cluster_name, h.broker_addr)
    return Response(
        ext_fields={"changed": "true" if changed else "false"},
        body=stored.encode() if stored is not None else None,
    )


@handles(RequestCode.GET_BROKER_MEMBER_GROUP)
async def get_broker_member_group(
    p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection
) -> Response:
    cluster = req_str(cmd.ext_fields, "clusterName")
    name = req_str(cmd.ext_fields, "brokerName")
    bd = await p.store.broker_member_group(name)
    addrs = bd.broker_addrs if bd is not None and bd.cluster == cluster else {}
    group = {
        "brokerAddrs": {k: addrs[k] for k in sorted(addrs)},
        "brokerName": name,
        "cluster": cluster,
    }
    return Response(body=fastjson.dumps_fastjson({"brokerMemberGroup": group}))


@handles(RequestCode.WIPE_WRITE_PERM_OF_BROKER)
async def wipe_write_perm(p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection) -> Response:
    name = req_str(cmd.ext_fields, "brokerName")
    count = await p.store.wipe_write_perm(name)
    log.info("wipe write perm of broker[%s], client: %s, %d", name, conn.remote_addr, count)
    return Response(ext_fields={"wipeTopicCount": str(count)})


@handles(RequestCode.ADD_WRITE_PERM_OF_BROKER)
async def add_write_perm(p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection) -> Response:
    count = await p.store.add_write_perm(req_str(cmd.ext_fields, "brokerName"))
    return Response(ext_fields={"addTopicCount": str(count)})


@handles(RequestCode.GET_BROKER_CLUSTER_INFO)
async def get_broker_cluster_info(
    p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection
) -> Response:
    info = await p.store.get_cluster_info()
    return Response(body=fastjson.dumps_fastjson(info.to_wire()))


# ------------------------------------------------------------------ routes and topics


@handles(RequestCode.GET_ROUTEINFO_BY_TOPIC)
async def get_route_info(p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection) -> Response:
    if p._not_ready_for_routes():
        return Response(ResponseCode.SYSTEM_ERROR, "name remoting_server not ready")
    topic = opt_str(cmd.ext_fields, "topic")
    standard = cmd.version >= V4_9_4 or bool(opt_bool(cmd.ext_fields, "acceptStandardJsonOnly"))
    zone = None
    if opt_bool(cmd.ext_fields, "__ZONE_MODE"):
        zone = opt_str(cmd.ext_fields, "__ZONE_NAME")
    body = await p.routes.route_body(topic, standard=standard, zone=zone) if topic else None
    if body is None:
        return Response(
            ResponseCode.TOPIC_NOT_EXIST,
            "No topic route info in name server for the topic: "
            f"{topic if topic is not None else 'null'}{FAQ_APPLY_TOPIC}",
        )
    p._route_served = True
    return Response(body=body)


@handles(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER)
async def get_all_topic_list(
    p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection
) -> Response:
    refused = p._topic_lists_disabled(all_topics=True)
    return refused or Response(body=topic_list_body(await p.store.all_topics()))


@handles(RequestCode.DELETE_TOPIC_IN_NAMESRV)
async def delete_topic(p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection) -> Response:
    await p.store.delete_topic(
        req_str(cmd.ext_fields, "topic"), opt_str(cmd.ext_fields, "clusterName") or None
    )
    return Response()


@handles(RequestCode.REGISTER_TOPIC_IN_NAMESRV)
async def register_topic(p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection) -> Response:
    topic = req_str(cmd.ext_fields, "topic")
    try:
        data = fastjson.loads(cmd.body) if cmd.body else None
        qds = [QueueData.from_wire(q) for q in (data or {}).get("queueDatas") or []]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise BadRequest(f"bad TopicRouteData body: {e}") from e
    for q in qds:
        values = (q.read_queue_nums, q.write_queue_nums, q.perm, q.topic_sys_flag)
        if not all(java_int(v) for v in values):
            raise BadRequest(
                f"bad TopicRouteData body: {q.broker_name!r}: a number outside Java's int"
            )
    if qds and not await p.store.register_topic(topic, qds):
        log.warning("Register topic contains illegal broker, %s, %s", topic, qds)
    return Response()


@handles(RequestCode.GET_TOPICS_BY_CLUSTER)
async def get_topics_by_cluster(
    p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection
) -> Response:
    refused = p._topic_lists_disabled()
    if refused:
        return refused
    topics = await p.store.topics_of_cluster(req_str(cmd.ext_fields, "cluster"))
    return Response(body=topic_list_body(topics))


@handles(RequestCode.GET_SYSTEM_TOPIC_LIST_FROM_NS)
async def get_system_topic_list(
    p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection
) -> Response:
    topics, addr = await p.store.system_topics()
    return Response(body=topic_list_body(topics, addr))


@handles(RequestCode.GET_UNIT_TOPIC_LIST)
async def get_unit_topic_list(
    p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection
) -> Response:
    refused = p._topic_lists_disabled()
    return refused or Response(body=topic_list_body(await p.store.unit_topics()))


@handles(RequestCode.GET_HAS_UNIT_SUB_TOPIC_LIST)
async def get_has_unit_sub_topic_list(
    p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection
) -> Response:
    refused = p._topic_lists_disabled()
    return refused or Response(body=topic_list_body(await p.store.has_unit_sub_topics()))


@handles(RequestCode.GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST)
async def get_has_unit_sub_ununit_topic_list(
    p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection
) -> Response:
    refused = p._topic_lists_disabled()
    return refused or Response(body=topic_list_body(await p.store.has_unit_sub_ununit_topics()))


# ------------------------------------------------------------------ name-server config


@handles(RequestCode.UPDATE_NAMESRV_CONFIG)
async def update_namesrv_config(
    p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection
) -> Response:
    log.info("updateConfig called by %s", conn.remote_addr)
    if cmd.body:
        try:
            props = parse_properties(cmd.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return Response(ResponseCode.SYSTEM_ERROR, "string2Properties error")
        if blacklisted_keys(p.settings, props):
            return Response(ResponseCode.NO_PERMISSION, "Can not update config in black list.")
        try:
            new_settings, changed = apply_update(p.settings, props)
        except ConfigRefused as e:
            log.warning("updateConfig from %s refused: %s", conn.remote_addr, e)
            return Response(ResponseCode.SYSTEM_ERROR, f"Can not update config: {e}")
        if changed:
            await p.store.update_config(changed)
            p.settings = new_settings
    return Response()


@handles(RequestCode.GET_NAMESRV_CONFIG)
async def get_namesrv_config(
    p: NamesrvProcessor, cmd: RemotingCommand, conn: Connection
) -> Response:
    text = to_properties_text(p.settings)
    return Response(body=text.encode("utf-8") if text.strip() else None)


# ------------------------------------------------------------------ RocketMQ 5 Controller mode

HANDLERS.update(controller_handlers())
HANDLERS[RequestCode.UPDATE_CONTROLLER_CONFIG] = update_namesrv_config
HANDLERS[RequestCode.GET_CONTROLLER_CONFIG] = get_namesrv_config
