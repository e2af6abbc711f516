"""ACL on the wire: RocketMQ's request signatures, verified before a request changes anything.

RocketMQ's clients sign requests through ``AclClientRPCHook`` when ACL credentials are set
(``mqadmin`` with ``conf/tools.yml``, producers and consumers with an RPC hook, RocketMQ 5
brokers with ``innerClientAuthenticationCredentials``): the ext fields ``AccessKey`` (and
``SecurityToken`` if any) are added, then ``Signature`` = Base64(HmacSHA1(secretKey,
content)), where content is the values of every ext field except ``Signature``, in the order
of their keys (Java's TreeMap: String order, i.e. UTF-16 code units), concatenated and
UTF-8 encoded, followed by the body bytes. :func:`signature` computes exactly that.

:class:`AclGuard` is asked once per request, at the processor's dispatch, and answers
``None`` (go on) or the NO_PERMISSION (16) response to send instead: mutating request codes
need a valid signature by a credential allowed that code; reads stay open unless
``aclRequireSignedReads``. Registrations may also be limited to broker address ranges.
Refusals are counted in ``namesrv_acl_refusals_total`` and logged without secrets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from namesrv_redis.remoting.handler_types import Connection, Response
from namesrv_redis.rocketmq.codes import RequestCode, ResponseCode
from namesrv_redis.store.acl import AclStore, Credential, Permission
from namesrv_redis.telemetry.metrics import ACL_REFUSALS

if TYPE_CHECKING:
    from namesrv_redis.remoting.codec import RemotingCommand

log = logging.getLogger(__name__)

ACCESS_KEY = "AccessKey"
SECURITY_TOKEN = "SecurityToken"
SIGNATURE = "Signature"

RC = RequestCode
BROKER_CODES = frozenset(
    int(c)
    for c in (
        RC.REGISTER_BROKER,
        RC.UNREGISTER_BROKER,
        RC.BROKER_HEARTBEAT,
        RC.QUERY_DATA_VERSION,
    )
)
"""What a ``broker`` credential may do (besides reads)."""
MUTATING = BROKER_CODES | frozenset(
    int(c)
    for c in (
        RC.PUT_KV_CONFIG,
        RC.DELETE_KV_CONFIG,
        RC.WIPE_WRITE_PERM_OF_BROKER,
        RC.ADD_WRITE_PERM_OF_BROKER,
        RC.DELETE_TOPIC_IN_NAMESRV,
        RC.REGISTER_TOPIC_IN_NAMESRV,
        RC.UPDATE_NAMESRV_CONFIG,
        RC.NOTIFY_MIN_BROKER_ID_CHANGE,
    )
)
"""Request codes that change the route tables, liveness, KV or name-server config."""
ADDRESS_CHECKED = BROKER_CODES
"""Checked against aclBrokerAddrAllowlist (connection and announced broker address)."""
_KNOWN_CODES = frozenset(int(c) for c in RequestCode)


def _java_order(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def signing_content(
    ext_fields: Mapping[str, str | None] | None, body: bytes | bytearray | None
) -> bytes:
    """The bytes RocketMQ signs (AclUtils.combineRequestContent over the sorted ext fields)."""
    ext = ext_fields or {}
    text = "".join(
        "null" if ext[k] is None else str(ext[k])  # Java's StringBuilder.append(null)
        for k in sorted(ext, key=_java_order)
        if k != SIGNATURE
    )
    return text.encode("utf-8") + (bytes(body) if body else b"")


def signature(
    secret_key: str, ext_fields: Mapping[str, str | None] | None, body: bytes | bytearray | None
) -> str:
    mac = hmac.new(secret_key.encode("utf-8"), signing_content(ext_fields, body), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def sign_request(
    access_key: str, secret_key: str, ext_fields: dict[str, str] | None, body: bytes | None
) -> dict[str, str]:
    """The ext fields of a request as AclClientRPCHook sends them (for clients and tests)."""
    ext = dict(ext_fields or {})
    ext[ACCESS_KEY] = access_key
    ext[SIGNATURE] = signature(secret_key, ext, body)
    return ext


def parse_networks(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``10.0.0.0/8, 192.168.1.7;fd00::/8`` -> networks (ValueError names a bad entry)."""
    out = []
    for part in text.replace(";", ",").replace(" ", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise AclConfigError(
                f"aclBrokerAddrAllowlist: {part!r} is not an address range"
            ) from None
    return out


class AclConfigError(ValueError):
    """An ACL option that cannot be used (the message names it)."""


def _host_of(addr: str) -> str:
    """The host of ``host:port`` (RocketMQ splits at the last colon, IPv6 included)."""
    return addr.rsplit(":", 1)[0].strip("[]")


class AclGuard:
    """Checks one request against the namespace's credentials (cached per pod)."""

    def __init__(
        self,
        store: AclStore | None,
        *,
        signatures: bool = True,
        require_signed_reads: bool = False,
        broker_allowlist: str = "",
        unsigned_brokers: bool = False,
        refresh_s: float = 1.0,
    ) -> None:
        self.store = store
        self.signatures = signatures and store is not None
        self.require_signed_reads = require_signed_reads and self.signatures
        self.allowlist = parse_networks(broker_allowlist)
        if unsigned_brokers and not self.allowlist:
            raise AclConfigError(
                "aclAllowUnsignedBrokers needs aclBrokerAddrAllowlist (the address ranges "
                "unsigned brokers may register from)"
            )
        self.unsigned_brokers = unsigned_brokers
        """RocketMQ 4.x brokers never sign: let their unsigned broker requests through when
        they come from (and announce) an allowed address."""
        self.refresh_s = refresh_s
        self._creds: dict[str, Credential] | None = None
        self._loaded_at = 0.0

    async def credentials(self) -> dict[str, Credential] | None:
        """The credentials, re-read from Redis at most every ``refresh_s``; the last copy is
        kept when Redis cannot be read (None if there never was one)."""
        now = time.monotonic()
        if self._creds is None or now - self._loaded_at >= self.refresh_s:
            assert self.store is not None
            try:
                self._creds = await self.store.all()
                self._loaded_at = now
            except Exception as e:
                log.warning("ACL: cannot read credentials from Redis (%s)", type(e).__name__)
        return self._creds

    async def check(self, cmd: RemotingCommand, conn: Connection) -> Response | None:
        code = cmd.code
        mutating = code in MUTATING
        if self.signatures and (mutating or self.require_signed_reads):
            refused = await self._check_signature(cmd, conn, mutating)
            if refused is not None:
                return refused
        if self.allowlist and code in ADDRESS_CHECKED:
            return self._check_address(cmd, conn)
        return None

    async def _check_signature(
        self, cmd: RemotingCommand, conn: Connection, mutating: bool
    ) -> Response | None:
        ext = cmd.ext_fields or {}
        ak, sig = ext.get(ACCESS_KEY), ext.get(SIGNATURE)
        if not ak or not sig:
            if self.unsigned_brokers and cmd.code in BROKER_CODES:
                return None  # the address allowlist decides (check() runs it next)
            return self._refuse(
                cmd,
                conn,
                "unsigned",
                f"ACL: request code {cmd.code} must be signed (ext fields AccessKey and "
                "Signature, as RocketMQ's AclClientRPCHook adds them with accessKey/secretKey)",
            )
        creds = await self.credentials()
        if creds is None:
            return self._refuse(
                cmd, conn, "unavailable", "ACL: credentials unavailable (route store down)"
            )
        cred = creds.get(ak)
        expected = signature(cred.secret_key, ext, cmd.body) if cred is not None else ""
        if cred is None or not hmac.compare_digest(expected.encode(), sig.encode()):
            return self._refuse(
                cmd,
                conn,
                "unknown_key" if cred is None else "bad_signature",
                f"ACL: signature check failed for AccessKey {ak!r} "
                "(unknown accessKey, wrong secretKey, or the request was altered)",
                access_key=ak,
            )
        if mutating and cred.permission is Permission.BROKER and cmd.code not in BROKER_CODES:
            return self._refuse(
                cmd,
                conn,
                "forbidden",
                f"ACL: AccessKey {ak!r} has permission broker; request code {cmd.code} needs admin",
                access_key=ak,
            )
        return None

    def _check_address(self, cmd: RemotingCommand, conn: Connection) -> Response | None:
        ext = cmd.ext_fields or {}
        candidates = [("connection", _host_of(conn.remote_addr))]
        if ext.get("brokerAddr"):
            candidates.append(("brokerAddr", _host_of(ext["brokerAddr"])))
        for what, host in candidates:
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                ip = None
            if ip is None or not any(ip in net for net in self.allowlist):
                return self._refuse(
                    cmd,
                    conn,
                    "address",
                    f"ACL: {what} address {host} is outside aclBrokerAddrAllowlist",
                )
        return None

    def _refuse(
        self,
        cmd: RemotingCommand,
        conn: Connection,
        reason: str,
        remark: str,
        *,
        access_key: str | None = None,
    ) -> Response:
        ACL_REFUSALS.labels(str(cmd.code) if cmd.code in _KNOWN_CODES else "other", reason).inc()
        log.warning(
            "ACL refused request code=%d from %s: %s%s",
            cmd.code,
            conn.remote_addr,
            reason,
            f" (AccessKey {access_key!r})" if access_key else "",
        )
        return Response(ResponseCode.NO_PERMISSION, remark)


def guard_from_settings(settings: Any, store: AclStore | None) -> AclGuard | None:
    """The pod's guard, or None when neither ACL nor an address allowlist is configured."""
    if not settings.acl_enable and not settings.acl_broker_addr_allowlist.strip():
        return None
    return AclGuard(
        store,
        signatures=settings.acl_enable,
        require_signed_reads=settings.acl_require_signed_reads,
        broker_allowlist=settings.acl_broker_addr_allowlist,
        unsigned_brokers=settings.acl_allow_unsigned_brokers,
        refresh_s=settings.acl_refresh_ms / 1000,
    )


async def start_acl(settings: Any, store: AclStore) -> AclGuard | None:
    """At pod start: create the bootstrap file's credentials, then build the guard."""
    if settings.acl_bootstrap_file:
        try:
            created = await store.bootstrap(settings.acl_bootstrap_file)
        except (OSError, ValueError) as e:
            raise AclConfigError(f"aclBootstrapFile: {e}") from None
        log.info(
            "ACL bootstrap file %s: %d new credential(s)", settings.acl_bootstrap_file, created
        )
    guard = guard_from_settings(settings, store)
    if guard is not None and guard.signatures:
        count = len(await store.all())
        if count == 0:
            log.warning(
                "ACL is on but namespace has no credentials: every mutating request will be "
                "refused until one is added (aclBootstrapFile, PUT /v1/acl/credentials/{ak})"
            )
        log.info(
            "ACL on: %d credential(s); mutating requests must be signed%s",
            count,
            ", reads too" if guard.require_signed_reads else "",
        )
    return guard
