"""What a parent hands each actor process it starts, and the exit codes it reads back.

A child is `python -m actorq _actor ROLE SPEC_JSON` (children.py); SPEC_JSON is one
of these Structs. They live here, below the actors, so that the node can build
every actor's spec without importing the actor itself.
"""

from __future__ import annotations

import msgspec

from actorq.node.config import (
    BrokerConfig,
    CronConfig,
    PoolConfig,
    SecurityConfig,
    StorageConfig,
    TokenConfig,
)
from actorq.node.security import CurvePaths

# Exit codes an actor uses to tell its parent not to restart it.
CANNOT_START = 3  # a port in use, a task module that cannot be imported
STORAGE_UNUSABLE = 2  # corrupt or too-new database; never replaced
DEPOSED = 4  # another broker took the shared store's lease: restarted, as a standby


class BrokerSpec(msgspec.Struct, kw_only=True):
    config: BrokerConfig
    crons: list[CronConfig] = []
    storage: StorageConfig | None = None
    # Made afresh by each node: only a scheduler that says it is the scheduler.
    scheduler_secret: str = ""
    security: SecurityConfig | None = None  # with broker_key: CurveZMQ on both endpoints


class SchedulerSpec(msgspec.Struct, kw_only=True):
    broker: str  # the broker's worker endpoint
    secret: str = ""  # BrokerSpec.scheduler_secret
    curve: CurvePaths | None = None


class SupervisorSpec(msgspec.Struct, kw_only=True):
    pool: PoolConfig
    broker: str | list[str]  # worker endpoint of the broker, or of each sharing a store
    shutdown_grace: float
    log_level: str = "INFO"
    curve: CurvePaths | None = None


class WorkerSpec(msgspec.Struct, kw_only=True):
    pool: PoolConfig
    broker: str | list[str]  # as SupervisorSpec's
    worker_id: str
    supervisor: str = ""  # the routing id of the supervisor that started it
    curve: CurvePaths | None = None


class GatewaySpec(msgspec.Struct, kw_only=True):
    bind: str  # HOST:PORT
    broker: str  # the broker's client endpoint
    pools: dict[str, int]  # local pools and their min_workers, for /health
    tokens: list[TokenConfig] = []  # [[http.tokens]]: who may use /api
    max_body_bytes: int = 10 * 1024 * 1024 + 65536  # largest request body read
    idle_timeout: float = 60.0  # [http] idle_timeout
    curve: CurvePaths | None = None
    tls_cert: str = ""  # [http] tls_cert and tls_key: serve HTTPS
    tls_key: str = ""
