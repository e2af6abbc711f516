"""TLS of the remoting port, configured as RocketMQ configures it (TlsSystemConfig, TlsHelper).

Options keep RocketMQ's names: ``tls.server.mode`` (``disabled``, ``permissive`` — the
default, as in Java — or ``enforcing``), ``tls.server.certPath``, ``tls.server.keyPath``,
``tls.server.keyPassword``, ``tls.server.trustCertPath``, ``tls.server.need.client.auth``
(``none``, ``optional``, ``require``) and ``tls.test.mode.enable`` (default true). Like Java,
the ``tls.*`` keys of the properties file named by ``tls.config.file`` (default
``/etc/rocketmq/tls.properties``, read when it exists) are honoured too; an option set
explicitly (config file, environment, command line) wins over that file.

With no certificate configured and test mode on, a self-signed certificate is generated at
start (Java uses Netty's SelfSignedCertificate the same way; RocketMQ clients in test mode
accept any server certificate). With test mode off and no certificate, TLS refuses to start.

:class:`ServerTls` owns the current :class:`ssl.SSLContext`. :meth:`ServerTls.reload` builds
a new one from the files (SIGHUP, or the file watch when the files change); connections
accepted afterwards use it, open ones keep theirs. A reload that fails keeps the old context.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import ssl
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from namesrv_redis.remoting.selfsigned import write_self_signed
from namesrv_redis.settings.tls_modes import (
    ClientAuth,
    TlsConfigError,
    TlsMode,
    parse_client_auth,
    parse_mode,
)

if TYPE_CHECKING:
    from namesrv_redis.settings.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TlsOptions:
    mode: TlsMode = TlsMode.PERMISSIVE
    cert_path: str | None = None
    key_path: str | None = None
    key_password: str | None = None
    trust_cert_path: str | None = None
    need_client_auth: ClientAuth = ClientAuth.NONE
    test_mode: bool = True
    ciphers: str | None = None
    """OpenSSL cipher string (Java's ``tls.ciphers`` takes JSSE names; give OpenSSL's here)."""
    handshake_timeout_s: float = 10.0
    reload_interval_s: float = 5.0
    """How often the certificate files are checked for changes (0 turns the watch off)."""

    @property
    def enabled(self) -> bool:
        return self.mode is not TlsMode.DISABLED


TLS_FILE_KEYS = {
    "tls.server.mode": "mode",
    "tls.server.certPath": "cert_path",
    "tls.server.keyPath": "key_path",
    "tls.server.keyPassword": "key_password",
    "tls.server.trustCertPath": "trust_cert_path",
    "tls.server.need.client.auth": "need_client_auth",
    "tls.test.mode.enable": "test_mode",
    "tls.ciphers": "ciphers",
}
"""Keys of a RocketMQ ``tls.properties`` file and the :class:`TlsOptions` field each sets."""


def options_from_properties(base: TlsOptions, props: dict[str, str], keep: set[str]) -> TlsOptions:
    """``base`` with the values of a ``tls.properties`` file, except the fields in ``keep``
    (those were set explicitly and win)."""
    updates: dict[str, Any] = {}
    for key, field_name in TLS_FILE_KEYS.items():
        value = props.get(key)
        if value is None or field_name in keep:
            continue
        value = value.strip()
        if field_name == "mode":
            updates[field_name] = parse_mode(value)
        elif field_name == "need_client_auth":
            updates[field_name] = parse_client_auth(value)
        elif field_name == "test_mode":
            updates[field_name] = value.lower() == "true"
        else:
            updates[field_name] = value or None
    return replace(base, **updates) if updates else base


_SETTINGS_FIELDS = {
    "mode": "tls_server_mode",
    "cert_path": "tls_server_cert_path",
    "key_path": "tls_server_key_path",
    "key_password": "tls_server_key_password",
    "trust_cert_path": "tls_server_trust_cert_path",
    "need_client_auth": "tls_server_need_client_auth",
    "test_mode": "tls_test_mode_enable",
    "ciphers": "tls_ciphers",
}


def tls_options(settings: Settings) -> TlsOptions:
    """The remoting TLS options of a pod: its settings, then the ``tls.config.file``
    properties for what the settings leave at its default (as Java's TlsHelper reads it)."""
    from namesrv_redis.settings.config import parse_properties

    password = settings.tls_server_key_password
    opts = TlsOptions(
        mode=parse_mode(settings.tls_server_mode),
        cert_path=settings.tls_server_cert_path or None,
        key_path=settings.tls_server_key_path or None,
        key_password=password.get_secret_value() if password is not None else None,
        trust_cert_path=settings.tls_server_trust_cert_path or None,
        need_client_auth=parse_client_auth(settings.tls_server_need_client_auth),
        test_mode=settings.tls_test_mode_enable,
        ciphers=settings.tls_ciphers or None,
        reload_interval_s=settings.tls_reload_interval_seconds,
    )
    path = Path(settings.tls_config_file) if settings.tls_config_file else None
    if path is None or not path.is_file():
        return opts
    try:
        props = parse_properties(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise TlsConfigError(f"cannot read tls.config.file={path}: {e}") from None
    explicit = {f for f, name in _SETTINGS_FIELDS.items() if name in settings.model_fields_set}
    log.info("TLS options from tls.config.file=%s", path)
    return options_from_properties(opts, props, explicit)


# ------------------------------------------------------------------ self-signed certificates


def generate_self_signed(directory: Path, hostnames: list[str] | None = None) -> tuple[Path, Path]:
    """Write a fresh self-signed certificate and its key into ``directory`` (in this process;
    :func:`namesrv_redis.remoting.selfsigned.write_self_signed` is what a pod uses)."""
    from namesrv_redis.remoting.selfsigned import generate

    return generate(directory, hostnames)


# ------------------------------------------------------------------ contexts


def build_server_context(opts: TlsOptions, cert_path: str, key_path: str) -> ssl.SSLContext:
    """A server-side context from PEM files; raises :class:`TlsConfigError` naming the file."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_path, key_path, password=opts.key_password)
    except (OSError, ssl.SSLError) as e:
        raise TlsConfigError(
            f"cannot load tls.server.certPath={cert_path} / tls.server.keyPath={key_path}: {e}"
        ) from None
    if opts.need_client_auth is not ClientAuth.NONE:
        if not opts.trust_cert_path:
            raise TlsConfigError(
                f"tls.server.need.client.auth={opts.need_client_auth.value} needs "
                "tls.server.trustCertPath (the CA certificates client certificates must chain to)"
            )
        try:
            ctx.load_verify_locations(cafile=opts.trust_cert_path)
        except (OSError, ssl.SSLError) as e:
            raise TlsConfigError(
                f"cannot load tls.server.trustCertPath={opts.trust_cert_path}: {e}"
            ) from None
        ctx.verify_mode = (
            ssl.CERT_REQUIRED if opts.need_client_auth is ClientAuth.REQUIRE else ssl.CERT_OPTIONAL
        )
    if opts.ciphers:
        try:
            ctx.set_ciphers(opts.ciphers)
        except ssl.SSLError as e:
            raise TlsConfigError(f"tls.ciphers={opts.ciphers!r}: {e}") from None
    return ctx


def client_context_insecure() -> ssl.SSLContext:
    """What a RocketMQ client in test mode does: TLS without checking the server certificate
    (tests and the benchmark use it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ServerTls:
    """The certificate and SSL context of one pod (remoting and, when asked, HTTPS)."""

    def __init__(self, opts: TlsOptions) -> None:
        self.opts = opts
        self.cert_path: str | None = opts.cert_path
        self.key_path: str | None = opts.key_path
        self.self_signed = False
        self._tmpdir: str | None = None
        self._context: ssl.SSLContext | None = None
        self._mtimes: tuple[float, ...] = ()
        self._watch: asyncio.Task[None] | None = None
        self._followers: list[ssl.SSLContext] = []

    def load(self) -> ssl.SSLContext:
        """Build the first context (generating a self-signed certificate in test mode)."""
        o = self.opts
        if bool(o.cert_path) != bool(o.key_path):
            raise TlsConfigError("set both tls.server.certPath and tls.server.keyPath, or neither")
        if not o.cert_path:
            if not o.test_mode:
                raise TlsConfigError(
                    f"tls.server.mode={o.mode.value} needs a certificate: set "
                    "tls.server.certPath and tls.server.keyPath, or turn tls.test.mode.enable "
                    "on for a self-signed one, or set tls.server.mode=disabled"
                )
            self._tmpdir = tempfile.mkdtemp(prefix="namesrv-tls-")
            cert, key = write_self_signed(Path(self._tmpdir))
            self.cert_path, self.key_path = str(cert), str(key)
            self.self_signed = True
            # permissive (the default): TLS is opportunistic, plain clients work, nothing to
            # act on; enforcing: every client must trust a certificate nobody can verify
            log.log(
                logging.WARNING if o.mode is TlsMode.ENFORCING else logging.INFO,
                "TLS test mode: no tls.server.certPath configured, generated a self-signed "
                "certificate (clients cannot authenticate this server; configure a real "
                "certificate for production)",
            )
        assert self.cert_path is not None and self.key_path is not None
        self._context = build_server_context(o, self.cert_path, self.key_path)
        self._mtimes = self._file_mtimes()
        return self._context

    @property
    def context(self) -> ssl.SSLContext:
        if self._context is None:
            return self.load()
        return self._context

    def follow(self, ctx: ssl.SSLContext) -> None:
        """Also reload the certificate of ``ctx`` (the HTTPS tier's context) on reload."""
        self._followers.append(ctx)

    def reload(self) -> bool:
        """Rebuild the context from the files; True when the new one is in use."""
        if self.self_signed or self.cert_path is None or self.key_path is None:
            log.info("TLS reload: self-signed test certificate, nothing to reload")
            return False
        try:
            ctx = build_server_context(self.opts, self.cert_path, self.key_path)
            for f in self._followers:
                f.load_cert_chain(self.cert_path, self.key_path, password=self.opts.key_password)
        except (TlsConfigError, OSError, ssl.SSLError) as e:
            log.error("TLS reload failed, keeping the current certificate: %s", e)
            return False
        self._context = ctx
        self._mtimes = self._file_mtimes()
        log.info("TLS certificate reloaded from %s", self.cert_path)
        return True

    def _file_mtimes(self) -> tuple[float, ...]:
        out = []
        for p in (self.cert_path, self.key_path, self.opts.trust_cert_path):
            try:
                out.append(os.stat(p).st_mtime if p else 0.0)
            except OSError:
                out.append(-1.0)
        return tuple(out)

    def changed_on_disk(self) -> bool:
        return not self.self_signed and self._file_mtimes() != self._mtimes

    def start_watch(self) -> None:
        if self.self_signed or self.opts.reload_interval_s <= 0 or self._watch is not None:
            return
        self._watch = asyncio.get_running_loop().create_task(self._watch_loop(), name="tls-watch")

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.opts.reload_interval_s)
            try:
                if self.changed_on_disk():
                    self.reload()
            except Exception:  # the watch never dies silently (STYLE.md #14)
                log.exception("TLS certificate watch failed")

    def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)


def https_options(tls: ServerTls | None) -> dict[str, Any]:
    """uvicorn's TLS options for the HTTP tier, from the same certificate options."""
    if tls is None:
        return {}
    o = tls.opts
    reqs = {
        ClientAuth.NONE: ssl.CERT_NONE,
        ClientAuth.OPTIONAL: ssl.CERT_OPTIONAL,
        ClientAuth.REQUIRE: ssl.CERT_REQUIRED,
    }[o.need_client_auth]
    return {
        "ssl_certfile": tls.cert_path,
        "ssl_keyfile": tls.key_path,
        "ssl_keyfile_password": o.key_password,
        "ssl_ca_certs": o.trust_cert_path if reqs != ssl.CERT_NONE else None,
        "ssl_cert_reqs": reqs,
    }
