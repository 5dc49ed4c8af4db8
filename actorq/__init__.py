"""actorq: a distributed task queue built as an actor runtime on OS processes.

The public API is exactly `__all__`; everything else is internal.
"""

from .aioclient import AsyncClient, AsyncTaskHandle
from .client import Client, TaskHandle
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
    "AsyncClient",
    "AsyncTaskHandle",
    "BrokerUnavailable",
    "Client",
    "ConfigError",
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
    "task",
    "__version__",
]
