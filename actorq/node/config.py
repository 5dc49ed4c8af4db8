"""The TOML config, decoded into typed Structs.

Unknown keys and wrong types are errors that name the file and the key path
(`pools[0].wrokers`), never silently ignored: a typo in a production config
must stop the node, not run it with defaults.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import msgspec

from actorq.errors import ConfigError
from actorq.node import security
from actorq.node.security import is_loopback
from actorq.tasks import cron as crons

DEFAULT_MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
MAX_POOL_WORKERS = 1024  # worker processes one pool may run on one host
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The broker's spin (spinpoll.py) waits for an answer that is near; past 10 ms it
# would only burn CPU.
MAX_SPIN_US = 10_000

_strict = dict(forbid_unknown_fields=True, kw_only=True)


class NodeConfig(msgspec.Struct, **_strict):
    name: str = ""
    shutdown_grace: float = 30.0  # seconds running tasks get to finish on SIGTERM
    startup_timeout: float = 60.0  # seconds a node with a broker gives its actors to start
    max_restarts: int = 10  # restart intensity for the node's own actors ...
    restart_window: float = 60.0  # ... in this many seconds
    log_level: str = "INFO"


class BrokerConfig(msgspec.Struct, **_strict):
    bind: str = "tcp://127.0.0.1:5555"  # clients
    worker_bind: str = "tcp://127.0.0.1:5556"  # supervisors and workers
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    heartbeat_interval: float = 1.0  # seconds between heartbeats, both ways
    heartbeat_liveness: int = 3  # missed beats before a worker is presumed dead
    result_ttl: float = 86400.0  # seconds a finished task's result is kept
    max_deliveries: int = 5  # leases without a result (workers died) before a task fails
    kill_grace: float = 1.0  # seconds between SIGTERM and SIGKILL for a worker stuck in a task
    spin_us: int = 600  # when an answer is near, poll this long before sleeping (spinpoll.py)
    # Unfinished tasks the broker holds at most, and their arguments' bytes: past
    # either, a submission is refused with queue_full (docs/operations.md#limits).
    max_queued: int = 1_000_000
    max_queued_bytes: int = 1 << 30


class TokenConfig(msgspec.Struct, **_strict):
    """An `[[http.tokens]]` entry: who may use the HTTP API, and for what."""

    name: str
    role: str  # "read" (GET routes) or "admin" (every route)
    sha256: str  # hex digest of the token: the secret itself never sits in a config


class HttpConfig(msgspec.Struct, **_strict):
    bind: str = "127.0.0.1:8080"
    tokens: list[TokenConfig] = msgspec.field(default_factory=list)
    # Serve beyond loopback without tokens: only when that is really meant.
    allow_anonymous: bool = False
    # A connection that sends no complete request for this long is closed, so idle and
    # half-open connections cannot pile up to the fd limit.
    idle_timeout: float = 60.0
    tls_cert: str = ""  # PEM certificate chain: the gateway serves HTTPS ...
    tls_key: str = ""  # ... with this PEM private key


class SecurityConfig(msgspec.Struct, **_strict):
    """CurveZMQ keys and allow-lists (docs/security.md). Paths are from the config's
    directory; key files are what `actorq keys generate` writes."""

    broker_key: str = ""  # the broker's pair (NAME.key_secret): turns CurveZMQ on
    client_keys: list[str] = msgspec.field(default_factory=list)  # may submit (own tasks)
    admin_keys: list[str] = msgspec.field(default_factory=list)  # may do everything
    worker_keys: list[str] = msgspec.field(default_factory=list)  # workers, supervisors
    key: str = ""  # this node's pair, for pools joining a remote broker
    broker_public_key: str = ""  # that remote broker's public key (NAME.key)
    # Listen (or connect) beyond loopback without CurveZMQ, or serve HTTP beyond it
    # without TLS: refused unless this says it is meant, and then warned at every start.
    allow_insecure: bool = False


class StorageConfig(msgspec.Struct, **_strict):
    path: str = ""  # the SQLite database file; relative paths are from the node's directory
    url: str = ""  # or a PostgreSQL database: postgresql://user:password@host:port/dbname
    synchronous: str = "full"  # "full" | "normal": docs/operations.md says what NORMAL risks
    # With url: seconds a leader's lease lasts (storage/leadership.py). A standby
    # takes over this long after the leader's last renewal: failover time.
    lease: float = 1.0


class PoolConfig(msgspec.Struct, **_strict):
    name: str = "default"
    workers: int = 2
    concurrency: int = 1  # slots per worker process
    prefetch: int = 0  # leases a worker may hold; 0: adaptive (worker/credit.py)
    queues: list[str] = msgspec.field(default_factory=lambda: ["default"])
    tasks: list[str] = msgspec.field(default_factory=list)
    max_restarts: int = 5
    restart_window: float = 60.0
    # worker_bind of a remote broker, for worker-only nodes; or a list of them, the
    # brokers sharing a PostgreSQL store: the pool works for whichever leads.
    broker: str | list[str] = ""
    # Autoscaling: the pool keeps between these many workers, starting at `workers`.
    # 0 means unset: the pool stays at `workers` (until client.scale says otherwise).
    min_workers: int = 0
    max_workers: int = 0
    scale_down_after: float = 30.0  # seconds a worker may stay idle before it is drained

    @property
    def bounds(self) -> tuple[int, int]:
        """(min_workers, max_workers), a bound left unset taken as `workers`."""
        return self.min_workers or self.workers, self.max_workers or self.workers

    @property
    def start_workers(self) -> int:
        """How many workers the pool starts with: `workers`, kept within its bounds."""
        low, high = self.bounds
        return min(max(self.workers, low), high)


class CronConfig(msgspec.Struct, **_strict):
    """A `[[cron]]` entry: submit `task` with `args`/`kwargs` at every due time."""

    name: str
    schedule: str  # five cron fields, or six with leading seconds; UTC
    task: str
    args: list = msgspec.field(default_factory=list)
    kwargs: dict = msgspec.field(default_factory=dict)
    queue: str = "default"
    priority: int = 0


class Config(msgspec.Struct, **_strict):
    node: NodeConfig = msgspec.field(default_factory=NodeConfig)
    broker: BrokerConfig | None = None
    http: HttpConfig | None = None
    storage: StorageConfig | None = None
    pools: list[PoolConfig] = msgspec.field(default_factory=list)
    cron: list[CronConfig] = msgspec.field(default_factory=list)
    security: SecurityConfig = msgspec.field(default_factory=SecurityConfig)


_PATH_RE = re.compile(r"`\$((?:\.[A-Za-z_][\w-]*|\[\d+\])*)`")
_UNKNOWN_RE = re.compile(r"unknown field `([^`]+)`")


def _key_path(message: str) -> str:
    """Turn msgspec's `$.pools[0]` into `pools[0]`, adding the unknown field's name."""
    m = _PATH_RE.search(message)
    path = m.group(1).lstrip(".") if m else ""
    unknown = _UNKNOWN_RE.search(message)
    if unknown:
        path = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
    return path


def _reason(message: str) -> str:
    if _UNKNOWN_RE.search(message):
        return "unknown key"
    return _PATH_RE.sub("", message).rstrip(" -")


def parse(text: str, file: str = "<config>") -> Config:
    """Parse and validate config text; raise ConfigError naming the file and key path."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", f"not valid TOML: {exc}") from None
    try:
        config = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(file, _key_path(str(exc)), _reason(str(exc))) from None
    _check(config, file)
    return config


def load(path: str | Path) -> Config:
    """Read and validate a config file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(str(p), "", f"cannot read: {exc.strerror}") from None
    return parse(text, str(p))


def _check(config: Config, file: str) -> None:
    """Rules the types alone cannot say."""
    if config.broker is None and not config.pools:
        raise ConfigError(file, "", "nothing to run: add a [broker] or a [[pools]] entry")
    if config.node.startup_timeout <= 0:
        raise ConfigError(file, "node.startup_timeout", "must be > 0")
    if config.node.shutdown_grace < 0:
        raise ConfigError(file, "node.shutdown_grace", "must be >= 0")
    if config.node.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(file, "node.log_level", f"{config.node.log_level!r} is not one of "
                          f"{', '.join(LOG_LEVELS)}")
    if config.broker is not None:
        _check_broker(config.broker, file)
    if config.storage is not None:
        if config.broker is None:
            raise ConfigError(file, "storage", "storage belongs to a node with a [broker]")
        if bool(config.storage.path) == bool(config.storage.url):
            raise ConfigError(file, "storage.path", "name a SQLite file (path) or a "
                              "PostgreSQL database (url), one of the two")
        if config.storage.url and not config.storage.url.startswith(
                ("postgresql://", "postgres://")):
            raise ConfigError(file, "storage.url", "must be a postgresql:// URL")
        if config.storage.synchronous not in ("full", "normal"):
            raise ConfigError(file, "storage.synchronous", 'must be "full" or "normal"')
        if not 0.2 <= config.storage.lease <= 60:
            raise ConfigError(file, "storage.lease", "must be between 0.2 and 60 seconds")
        if config.storage.url and config.broker is not None:
            for key in ("bind", "worker_bind"):
                if getattr(config.broker, key).endswith(":*"):
                    raise ConfigError(file, f"broker.{key}", "a broker on a shared PostgreSQL "
                                      "store may wait as a standby, and its peers must know "
                                      "where it will listen: give a fixed port")
    if config.cron and config.broker is None:
        raise ConfigError(file, "cron", "cron entries need a [broker] on the same node")
    _check_crons(config.cron, file)
    if config.http is not None and config.broker is None:
        raise ConfigError(file, "http", "the gateway needs a [broker] on the same node")
    if config.http is not None:
        _check_http(config.http, file)
    names = set()
    for i, pool in enumerate(config.pools):
        if pool.name in names:
            raise ConfigError(file, f"pools[{i}].name", f"pool name {pool.name!r} is used twice")
        names.add(pool.name)
        _check_pool(pool, f"pools[{i}]", config.broker is not None, file)
    security.check(config, file)


def _check_http(http: HttpConfig, file: str) -> None:
    if not re.fullmatch(r"[^:\s]+:\d+", http.bind):
        raise ConfigError(file, "http.bind", "must look like HOST:PORT, e.g. 127.0.0.1:8080")
    if int(http.bind.rsplit(":", 1)[1]) > 65535:
        raise ConfigError(file, "http.bind", "the port must be in 0..65535 (0: any free one)")
    if not http.idle_timeout > 0:
        raise ConfigError(file, "http.idle_timeout", "must be > 0")
    host = http.bind.rsplit(":", 1)[0]
    if not http.tokens and not http.allow_anonymous and not is_loopback(host):
        raise ConfigError(file, "http.bind", f"{host} is reachable beyond this machine and no "
                          "[[http.tokens]] are set: add tokens (actorq token new), or set "
                          "http.allow_anonymous = true if anyone who can reach it may use it")
    names = set()
    for i, token in enumerate(http.tokens):
        where = f"http.tokens[{i}]"
        if not token.name or token.name in names:
            raise ConfigError(file, f"{where}.name", f"{token.name!r}: give each a unique name")
        names.add(token.name)
        if token.role not in ("read", "admin"):
            raise ConfigError(file, f"{where}.role", f'{token.role!r}: must be "read" or "admin"')
        if not re.fullmatch(r"[0-9a-f]{64}", token.sha256):
            raise ConfigError(file, f"{where}.sha256", "must be the token's SHA-256 hex digest "
                              "(64 lowercase hex digits), as `actorq token new` prints it")


def _importable(module: str) -> bool:
    """Whether `module` can be found, without running it (the workers import it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _check_broker(b: BrokerConfig, file: str) -> None:
    for key in ("bind", "worker_bind"):
        endpoint = getattr(b, key)
        if not endpoint.startswith(("tcp://", "ipc://")):
            raise ConfigError(file, f"broker.{key}", "must be a tcp:// or ipc:// endpoint")
        port = endpoint.rsplit(":", 1)[-1] if endpoint.startswith("tcp://") else "*"
        if port != "*" and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(file, f"broker.{key}", f"port {port!r} is not in 1..65535 (or *)")
    if b.bind == b.worker_bind and not b.bind.endswith(":*"):
        raise ConfigError(file, "broker.worker_bind", f"is the same endpoint as broker.bind "
                          f"({b.bind}): clients and workers need one each")
    if b.max_payload_bytes <= 0:
        raise ConfigError(file, "broker.max_payload_bytes", "must be > 0")
    if b.heartbeat_interval <= 0:
        raise ConfigError(file, "broker.heartbeat_interval", "must be > 0")
    if b.heartbeat_liveness < 1:
        raise ConfigError(file, "broker.heartbeat_liveness", "must be >= 1")
    if b.max_deliveries < 1:
        raise ConfigError(file, "broker.max_deliveries", "must be >= 1")
    if b.result_ttl <= 0:
        raise ConfigError(file, "broker.result_ttl", "must be > 0")
    if b.kill_grace < 0:
        raise ConfigError(file, "broker.kill_grace", "must be >= 0")
    if b.max_queued < 1:
        raise ConfigError(file, "broker.max_queued", "must be >= 1")
    if b.max_queued_bytes < b.max_payload_bytes:
        raise ConfigError(file, "broker.max_queued_bytes", f"must be at least "
                          f"broker.max_payload_bytes ({b.max_payload_bytes})")
    if not 0 <= b.spin_us <= MAX_SPIN_US:
        raise ConfigError(file, "broker.spin_us", f"must be in 0..{MAX_SPIN_US}")


def _check_crons(entries: list[CronConfig], file: str) -> None:
    seen = set()
    for i, c in enumerate(entries):
        where = f"cron[{i}]"
        if not crons.NAME_RE.fullmatch(c.name):
            raise ConfigError(file, f"{where}.name", f"{c.name!r}: use 1..64 of letters, "
                              "digits, '_', '.', ':', '-'")
        if c.name in seen:
            raise ConfigError(file, f"{where}.name", f"cron name {c.name!r} is used twice")
        seen.add(c.name)
        problem = crons.check_schedule(c.schedule)
        if problem:
            raise ConfigError(file, f"{where}.schedule", problem)
        if ":" not in c.task:
            raise ConfigError(file, f"{where}.task", f"{c.task!r} is not 'module:function'")
        if not c.queue:
            raise ConfigError(file, f"{where}.queue", "must be a non-empty string")
        if not 0 <= c.priority <= 255:
            raise ConfigError(file, f"{where}.priority", "must be in 0..255")


def _check_pool(pool: PoolConfig, where: str, has_broker: bool, file: str) -> None:
    if pool.workers < 1:
        raise ConfigError(file, f"{where}.workers", "must be >= 1")
    if pool.concurrency < 1:
        raise ConfigError(file, f"{where}.concurrency", "must be >= 1")
    if pool.prefetch < 0:
        raise ConfigError(file, f"{where}.prefetch", "must be >= 0")
    low, high = pool.bounds
    for key in ("workers", "min_workers", "max_workers"):
        if getattr(pool, key) > MAX_POOL_WORKERS:
            raise ConfigError(file, f"{where}.{key}", f"must be at most {MAX_POOL_WORKERS}")
    if pool.min_workers < 0 or pool.max_workers < 0:
        key = "min_workers" if pool.min_workers < 0 else "max_workers"
        raise ConfigError(file, f"{where}.{key}", "must be >= 1")
    if low > high:
        raise ConfigError(file, f"{where}.min_workers", f"{low} is over max_workers {high}")
    if pool.scale_down_after <= 0:
        raise ConfigError(file, f"{where}.scale_down_after", "must be > 0")
    if not pool.queues:
        raise ConfigError(file, f"{where}.queues", "must name at least one queue")
    if not pool.tasks:
        raise ConfigError(file, f"{where}.tasks", "must list at least one task module")
    for i, module in enumerate(pool.tasks):
        if not _importable(module):
            raise ConfigError(file, f"{where}.tasks[{i}]", f"no module {module!r} can be "
                              "imported from here (the working directory and PYTHONPATH)")
    if pool.max_restarts < 0 or pool.restart_window <= 0:
        raise ConfigError(file, f"{where}.max_restarts", "restart intensity must be >= 0 in > 0 s")
    if not has_broker and not pool.broker:
        raise ConfigError(
            file, f"{where}.broker", "a node without [broker] must say which broker to join"
        )
    if isinstance(pool.broker, list):
        if not pool.broker:
            raise ConfigError(file, f"{where}.broker", "an empty list: name the brokers")
        for i, address in enumerate(pool.broker):
            if not address.startswith(("tcp://", "ipc://")):
                raise ConfigError(file, f"{where}.broker[{i}]", "must be a tcp:// or ipc:// "
                                  "endpoint")
