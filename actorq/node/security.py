"""A node's security settings, checked up front: keys that load, and no exposure
beyond this machine that nobody asked for.

A node refuses to start when an endpoint is reachable from elsewhere without its
protection: ZeroMQ endpoints without CurveZMQ (anyone who connects could be a
worker, a supervisor or an operator), a gateway without TLS (tokens would cross the
network in clear). `[security] allow_insecure = true` says that is meant (a private
network, TLS ending at a proxy); the node then warns at every start.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from actorq.errors import ConfigError
from actorq.wire import curve
from actorq.wire.leader import addresses

if TYPE_CHECKING:
    from actorq.node.config import Config

log = logging.getLogger("actorq.node")


class CurvePaths(msgspec.Struct, kw_only=True):
    """What an actor that connects to the broker needs to use CurveZMQ: key files."""

    key: str  # its own pair (NAME.key_secret)
    server: str  # the broker's public key (or its pair, on the broker's node)

    def load(self) -> curve.ClientCurve:
        return curve.client_curve(self.key, self.server)


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def endpoint_host(endpoint: str) -> str | None:
    """The host of a tcp:// endpoint; None for ipc:// (this machine only)."""
    if not endpoint.startswith("tcp://"):
        return None
    return endpoint[len("tcp://"):].rsplit(":", 1)[0]


def check(config: Config, file: str) -> None:
    """Resolve the key and certificate paths, load them once, and refuse insecure
    exposure (unless allowed). Raises ConfigError naming the key at fault."""
    sec = config.security
    base = Path(file).parent if Path(file).is_file() else Path.cwd()
    _resolve(config, base)
    if sec.broker_key:
        if config.broker is None:
            raise ConfigError(file, "security.broker_key", "belongs to a node with a [broker]")
        _load(file, "security.broker_key", curve.read_pair, sec.broker_key)
    for field in ("client_keys", "admin_keys", "worker_keys"):
        paths = getattr(sec, field)
        if paths and not sec.broker_key:
            raise ConfigError(file, f"security.{field}", "allow-lists need "
                              "security.broker_key (the broker's own key pair)")
        for i, path in enumerate(paths):
            _load(file, f"security.{field}[{i}]", lambda q: curve.read_allowed([q]), path)
    remote = any(pool.broker for pool in config.pools)
    if bool(sec.key) != bool(sec.broker_public_key):
        missing = "broker_public_key" if sec.key else "key"
        raise ConfigError(file, f"security.{missing}", "give both security.key (this node's "
                          "pair) and security.broker_public_key (the broker's public key)")
    if sec.key:
        if not remote:
            raise ConfigError(file, "security.key", "is for pools that join a remote broker "
                              "(pools.broker); the broker's node uses security.broker_key")
        _load(file, "security.key", curve.read_pair, sec.key)
        _load(file, "security.broker_public_key", curve.read_public, sec.broker_public_key)
    if config.http is not None:
        _check_tls(config, file)
    if not sec.allow_insecure:
        for key, why in exposures(config):
            raise ConfigError(file, key, f"{why}; see docs/security.md, or set "
                              "security.allow_insecure = true if that is really meant")


def exposures(config: Config) -> list[tuple[str, str]]:
    """Each endpoint reachable beyond this machine without its protection: (key, why)."""
    sec = config.security
    found = []
    if config.broker is not None and not sec.broker_key:
        for key in ("bind", "worker_bind"):
            host = endpoint_host(getattr(config.broker, key))
            if host is not None and not is_loopback(host):
                found.append((f"broker.{key}", f"listens on {host}, beyond loopback, without "
                              "CurveZMQ (security.broker_key)"))
    for i, pool in enumerate(config.pools):
        for address in addresses(pool.broker) if pool.broker else ():
            host = endpoint_host(address)
            if host is not None and not is_loopback(host) and not sec.key:
                found.append((f"pools[{i}].broker", f"connects to {host} without CurveZMQ "
                              "(security.key and security.broker_public_key)"))
                break
    http = config.http
    if http is not None and not http.tls_cert:
        host = http.bind.rsplit(":", 1)[0]
        if not is_loopback(host):
            found.append(("http.bind", f"serves HTTP on {host}, beyond loopback, without TLS "
                          "(http.tls_cert and http.tls_key)"))
    return found


def warn_exposures(config: Config) -> None:
    """Say at every start what security.allow_insecure lets through."""
    for key, why in exposures(config):
        log.warning("insecure, as security.allow_insecure allows: %s %s", key, why)


def broker_curve(config: Config) -> CurvePaths | None:
    """The keys this node's actors connect to the broker with, if any."""
    sec = config.security
    if sec.broker_key:
        return CurvePaths(key=sec.broker_key, server=sec.broker_key)
    if sec.key:
        return CurvePaths(key=sec.key, server=sec.broker_public_key)
    return None


def _resolve(config: Config, base: Path) -> None:
    sec = config.security

    def absolute(path: str) -> str:
        return str(base / path) if path else path

    sec.broker_key, sec.key = absolute(sec.broker_key), absolute(sec.key)
    sec.broker_public_key = absolute(sec.broker_public_key)
    for field in ("client_keys", "admin_keys", "worker_keys"):
        setattr(sec, field, [absolute(p) for p in getattr(sec, field)])
    if config.http is not None:
        config.http.tls_cert = absolute(config.http.tls_cert)
        config.http.tls_key = absolute(config.http.tls_key)


def _load(file: str, key: str, read, path: str) -> None:
    try:
        read(path)
    except curve.KeyFileError as exc:
        raise ConfigError(file, key, str(exc)) from None


def _check_tls(config: Config, file: str) -> None:
    http = config.http
    if bool(http.tls_cert) != bool(http.tls_key):
        missing = "tls_key" if http.tls_cert else "tls_cert"
        raise ConfigError(file, f"http.{missing}", "give both http.tls_cert and http.tls_key")
    if http.tls_cert:
        try:
            tls_context(http.tls_cert, http.tls_key)
        except OSError as exc:  # ssl.SSLError is one
            raise ConfigError(file, "http.tls_cert", f"cannot load the certificate and key: "
                              f"{exc}") from None


def tls_context(cert: str, key: str):
    import ssl  # OpenSSL: only in a process that serves TLS

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
