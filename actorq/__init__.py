"""actorq: a distributed task queue built as an actor runtime on OS processes.

The public API is exactly `__all__`; everything else is internal.
"""

from .aioclient import AsyncChainHandle, AsyncClient, AsyncGroupHandle, AsyncTaskHandle
from .client import ChainHandle, Client, GroupHandle, TaskHandle
from .context import progress
from .errors import (
    ActorqError,
    BrokerUnavailable,
    ConfigError,
    ResultTimeout,
    SubmitRejected,
    TaskCancelled,
    TaskError,
    TaskExpired,
    TaskFailed,
    TaskNotFound,
)
from .protocol import TaskInfo, TaskState
from .tasks import task

__version__ = "0.1.0"

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
