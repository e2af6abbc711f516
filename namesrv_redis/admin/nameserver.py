"""Requests an admin sends to a list of name servers (``-n "h1:9876;h2:9876"``).

Reads go to the first name server that answers, in the order given (mqadmin picks one too);
changes go to every name server, as mqadmin's wipeWritePerm, updateKvConfig, deleteTopic and
updateNamesrvConfig do, and report each server's outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from namesrv_redis.admin.signing import Credentials, sign
from namesrv_redis.remoting.client import NotRemoting, RemotingClient
from namesrv_redis.remoting.codec import RemotingCommand
from namesrv_redis.rocketmq import fastjson
from namesrv_redis.rocketmq.codes import RequestCode, ResponseCode

ADMIN_VERSION = 409
"""The version our requests carry (4.9.8's ordinal: Java answers routes in standard JSON)."""


class AdminError(Exception):
    """Something the command reports and exits on."""


class Unreachable(AdminError):
    """No name server of the list answered."""


@dataclass
class Refused(AdminError):
    """A name server answered with an error response code."""

    addr: str
    code: int
    remark: str | None

    def __str__(self) -> str:
        try:
            name = ResponseCode(self.code).name
        except ValueError:
            name = f"code {self.code}"
        remark = (self.remark or "").split("\n", 1)[0]
        return f"{self.addr}: {name}" + (f": {remark}" if remark else "")


def parse_addresses(text: str) -> list[str]:
    """``host:port;host:port`` (mqadmin's -n form; commas and spaces are accepted too)."""
    addrs = [a.strip() for a in text.replace(",", ";").replace(" ", ";").split(";")]
    addrs = [a for a in addrs if a]
    if not addrs:
        raise ValueError("no name-server address given (-n host:9876;host:9876)")
    for a in addrs:
        host, sep, port = a.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad name-server address {a!r} (want host:port)")
    return addrs


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass
class Outcome:
    """One name server's answer to a change sent to all of them."""

    addr: str
    response: RemotingCommand | None = None
    error: AdminError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class NameServers:
    """Connections to each name server of the list, opened on first use."""

    def __init__(
        self,
        addrs: list[str],
        credentials: Credentials | None = None,
        *,
        timeout: float = 3.0,
    ) -> None:
        self.addrs = addrs
        self.credentials = credentials
        self.timeout = timeout
        self._clients: dict[str, RemotingClient] = {}

    async def __aenter__(self) -> NameServers:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            with contextlib.suppress(TimeoutError, OSError):
                await asyncio.wait_for(c.close(), 1.0)

    async def _client(self, addr: str) -> RemotingClient:
        client = self._clients.get(addr)
        if client is not None and not client.closed.done():
            return client
        host, port = split_addr(addr)
        try:
            client = await asyncio.wait_for(RemotingClient.connect(host, port), self.timeout)
        except (OSError, TimeoutError) as e:
            raise Unreachable(f"{addr}: cannot connect ({e or type(e).__name__})") from e
        self._clients[addr] = client
        return client

    async def send(
        self,
        addr: str,
        code: int,
        ext_fields: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> RemotingCommand:
        """One request to one name server; its answer whatever its response code."""
        fields = dict(ext_fields or {})
        if self.credentials is not None:
            fields = sign(self.credentials, fields, body)
        client = await self._client(addr)
        try:
            answer = await client.request(
                code, fields or None, body, timeout=self.timeout, version=ADMIN_VERSION
            )
        except TimeoutError as e:
            self._clients.pop(addr, None)
            await client.close()
            raise Unreachable(f"{addr}: no answer within {self.timeout:g}s") from e
        except NotRemoting as e:  # e.g. the HTTP port given as -n
            self._clients.pop(addr, None)
            raise Unreachable(f"{addr}: {e}") from e
        except ConnectionError as e:
            self._clients.pop(addr, None)
            raise Unreachable(f"{addr}: connection closed") from e
        assert answer is not None
        return answer

    async def call(
        self,
        addr: str,
        code: int,
        ext_fields: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> RemotingCommand:
        """Like :meth:`send`, but an error response code raises :class:`Refused`."""
        answer = await self.send(addr, code, ext_fields, body)
        if answer.code != ResponseCode.SUCCESS:
            raise Refused(addr, answer.code, answer.remark)
        return answer

    async def call_any(
        self,
        code: int,
        ext_fields: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[str, RemotingCommand]:
        """Ask the name servers in order until one answers; its answer (Refused if it said
        no: a refusal is an answer, only an unreachable server makes us try the next)."""
        failures: list[str] = []
        for addr in self.addrs:
            try:
                return addr, await self.call(addr, code, ext_fields, body)
            except Unreachable as e:
                failures.append(str(e))
        raise Unreachable("no name server answered: " + "; ".join(failures))

    async def call_all(
        self,
        code: int,
        ext_fields: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> list[Outcome]:
        """Send the same request to every name server, concurrently."""

        async def one(addr: str) -> Outcome:
            try:
                return Outcome(addr, await self.call(addr, code, ext_fields, body))
            except AdminError as e:
                return Outcome(addr, error=e)

        return list(await asyncio.gather(*(one(a) for a in self.addrs)))


def json_body(cmd: RemotingCommand) -> Any:
    """A body in either JSON dialect (fastjson's unquoted number keys included)."""
    if not cmd.body:
        return None
    return fastjson.loads(bytes(cmd.body))


# ------------------------------------------------------------------ the requests


async def cluster_info(ns: NameServers, addr: str | None = None) -> tuple[str, dict[str, Any]]:
    code = RequestCode.GET_BROKER_CLUSTER_INFO
    if addr is None:
        addr, answer = await ns.call_any(code)
    else:
        answer = await ns.call(addr, code)
    body = json_body(answer) or {}
    return addr, {
        "brokerAddrTable": body.get("brokerAddrTable") or {},
        "clusterAddrTable": body.get("clusterAddrTable") or {},
    }


async def topic_route(
    ns: NameServers, topic: str, addr: str | None = None
) -> tuple[str, dict[str, Any]]:
    code = RequestCode.GET_ROUTEINFO_BY_TOPIC
    fields = {"topic": topic}
    if addr is None:
        addr, answer = await ns.call_any(code, fields)
    else:
        answer = await ns.call(addr, code, fields)
    return addr, json_body(answer) or {}


async def topic_list(ns: NameServers, cluster: str | None = None) -> tuple[str, list[str]]:
    if cluster is None:
        addr, answer = await ns.call_any(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER)
    else:
        addr, answer = await ns.call_any(RequestCode.GET_TOPICS_BY_CLUSTER, {"cluster": cluster})
    body = json_body(answer) or {}
    return addr, sorted(str(t) for t in body.get("topicList") or [])


async def kv_get(ns: NameServers, namespace: str, key: str) -> tuple[str, str | None]:
    addr, answer = await ns.call_any(
        RequestCode.GET_KV_CONFIG, {"namespace": namespace, "key": key}
    )
    return addr, (answer.ext_fields or {}).get("value")


async def kv_list(ns: NameServers, namespace: str) -> tuple[str, dict[str, str]]:
    addr, answer = await ns.call_any(RequestCode.GET_KVLIST_BY_NAMESPACE, {"namespace": namespace})
    body = json_body(answer) or {}
    return addr, {str(k): str(v) for k, v in (body.get("table") or {}).items()}


def parse_properties_text(text: str) -> dict[str, str]:
    """Java ``Properties`` text as the name server sends it (``key=value`` lines)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out


async def namesrv_config(ns: NameServers, addr: str) -> dict[str, str]:
    answer = await ns.call(addr, RequestCode.GET_NAMESRV_CONFIG)
    return parse_properties_text(bytes(answer.body or b"").decode("utf-8", "replace"))


def http_base_of(addr: str, config: dict[str, str]) -> str | None:
    """The HTTP tier of one of our pods, judged from its config (the Java NameServer has no
    ``httpPort`` nor ``routeCacheMaxAgeMs``); None for any other name server."""
    port = config.get("httpPort", "")
    if not port.isdigit() or "routeCacheMaxAgeMs" not in config:
        return None
    host, _ = split_addr(addr)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"
