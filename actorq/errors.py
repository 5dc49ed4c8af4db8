"""The error tree: every exception actorq raises derives from ActorqError.

    ActorqError
    ├── ConfigError          .file, .key, .reason: a bad config file or key
    ├── RequestRejected      .code, .message: the broker refused a request (scale, add_cron)
    │   └── SubmitRejected   .code (too_large, bad_option, draining, ...), .task_id
    ├── TaskError            .task_id, .state: raised by TaskHandle.result()
    │   ├── TaskFailed       .error "ExcType: message", .traceback (remote)
    │   ├── TaskCancelled
    │   └── TaskExpired
    ├── TaskNotFound         also a KeyError: the broker does not know this id
    ├── ResultTimeout        also a TimeoutError
    └── BrokerUnavailable    also a ConnectionError

Errors carry their context as attributes so callers can act on them without
parsing messages.
"""

from __future__ import annotations


class ActorqError(Exception):
    """Root of every error actorq raises."""


class ConfigError(ActorqError):
    """A config file that cannot be used; names the file and the key path."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        self.file = file
        self.key = key
        self.reason = reason
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {reason}")


class RequestRejected(ActorqError):
    """The client or the broker refused a request; nothing changed. `.code` says why
    (bad_option, ...), `.message` how."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class SubmitRejected(RequestRejected):
    """The client or the broker refused a submission; nothing was queued."""

    def __init__(self, code: str, message: str, task_id: str | None = None) -> None:
        self.task_id = task_id
        super().__init__(code, message)


class TaskError(ActorqError):
    """A task ended without a result."""

    def __init__(self, task_id: str, state: str, message: str) -> None:
        self.task_id = task_id
        self.state = state
        super().__init__(message)


class TaskFailed(TaskError):
    """The task raised; `.error` is "ExcType: message" and `.traceback` the remote one."""

    def __init__(self, task_id: str, state: str, error: str, traceback: str | None) -> None:
        self.error = error
        self.traceback = traceback
        super().__init__(task_id, state, f"task {task_id} {state}: {error}")

    @property
    def exc_type(self) -> str:
        """The remote exception's class name."""
        return self.error.split(":", 1)[0]


class TaskCancelled(TaskError):
    """The task was cancelled before it finished."""


class TaskExpired(TaskError):
    """The task's deadline passed before it could run."""


class TaskNotFound(ActorqError, KeyError):
    """The broker has no task with this id (never submitted, purged, or lost in a restart)."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"no task {task_id!r} on the broker")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class ResultTimeout(ActorqError, TimeoutError):
    """Waiting for a result or a reply took longer than the caller allowed."""


class BrokerUnavailable(ActorqError, ConnectionError):
    """The broker cannot be reached, or restarted and lost the state a call relied on."""
