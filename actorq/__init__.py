"""actorq: a distributed task queue built as an actor runtime on OS processes.

The public API is exactly `__all__`; everything else is internal.

Names are imported on first use (PEP 562) rather than here: every actor process
imports this package, and a broker that loaded the clients, asyncio and uvloop it
never uses would carry ~12 MB more resident memory for nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "AsyncChainHandle": "client.aio",
    "AsyncClient": "client.aio",
    "AsyncGroupHandle": "client.aio",
    "AsyncTaskHandle": "client.aio",
    "ChainHandle": "client.sync",
    "Client": "client.sync",
    "GroupHandle": "client.sync",
    "TaskHandle": "client.sync",
    "progress": "worker.context",
    "ActorqError": "errors",
    "BrokerUnavailable": "errors",
    "ConfigError": "errors",
    "RequestRejected": "errors",
    "ResultTimeout": "errors",
    "SubmitRejected": "errors",
    "TaskCancelled": "errors",
    "TaskError": "errors",
    "TaskExpired": "errors",
    "TaskFailed": "errors",
    "TaskNotFound": "errors",
    "TaskInfo": "wire.protocol",
    "TaskState": "wire.protocol",
    "task": "tasks.registry",
}

__all__ = [
    "ActorqError",
    "AsyncChainHandle",
    "AsyncClient",
    "AsyncGroupHandle",
    "AsyncTaskHandle",
    "BrokerUnavailable",
    "ChainHandle",
    "Client",
    "ConfigError",
    "GroupHandle",
    "RequestRejected",
    "ResultTimeout",
    "SubmitRejected",
    "TaskCancelled",
    "TaskError",
    "TaskExpired",
    "TaskFailed",
    "TaskHandle",
    "TaskInfo",
    "TaskNotFound",
    "TaskState",
    "progress",
    "task",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'actorq' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:  # what type checkers and IDEs see
    from .client.aio import AsyncChainHandle, AsyncClient, AsyncGroupHandle, AsyncTaskHandle
    from .client.sync import ChainHandle, Client, GroupHandle, TaskHandle
    from .errors import (
        ActorqError,
        BrokerUnavailable,
        ConfigError,
        RequestRejected,
        ResultTimeout,
        SubmitRejected,
        TaskCancelled,
        TaskError,
        TaskExpired,
        TaskFailed,
        TaskNotFound,
    )
    from .tasks.registry import task
    from .wire.protocol import TaskInfo, TaskState
    from .worker.context import progress
