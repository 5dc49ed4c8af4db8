"""Task handles: what submit() returns, for the sync Client and for AsyncClient.

A handle is an id and, once the broker pushes it, the task's outcome. It learns its
outcome through the client that made it; waiting goes through that client.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from actorq.client.session import deadline_after
from actorq.errors import BrokerUnavailable, TaskCancelled, TaskExpired, TaskFailed, TaskNotFound
from actorq.wire import protocol as p
from actorq.wire.payload import decode_result


class HandleBase:
    """What every task handle holds: the id and, once known, how the task ended."""

    __slots__ = ("id", "_outcome", "_error", "_future", "_client")

    # The subclasses use this __init__ as their own (one handle per task: a
    # super().__init__ call in each was a tenth of submit_many's time).
    def __init__(self, task_id: str, client: Any = None) -> None:
        self.id = task_id
        self._client = client  # the Client / AsyncClient that learns its outcome
        self._outcome: p.Outcome | None = None
        self._error: Exception | None = None  # a failure of the submission itself
        self._future: Any = None  # AsyncClient's waiter, made on first await

    @property
    def done(self) -> bool:
        return self._ended()

    def _ended(self) -> bool:
        """`done`, for the clients' own checks: Client's TaskHandle.done also starts the
        reading of an outcome nobody is reading yet, which a waiter does itself."""
        return self._outcome is not None or self._error is not None

    def _value(self) -> Any:
        """The result, or the exception that stands for how the task ended."""
        if self._error is not None:
            raise self._error
        out = self._outcome
        assert out is not None  # only called once done; never on network input
        state = out.state
        if state == p.TaskState.SUCCEEDED:
            return decode_result(out.value)
        if state in (p.TaskState.FAILED, p.TaskState.DEAD):
            raise TaskFailed(self.id, state, out.error or "unknown error", out.traceback)
        if state == p.TaskState.CANCELLED:
            raise TaskCancelled(self.id, state, f"task {self.id} was cancelled")
        if state == p.TaskState.EXPIRED:
            raise TaskExpired(self.id, state, f"task {self.id} expired before it could run")
        if state == "lost":
            raise BrokerUnavailable(f"task {self.id}: {out.error}")
        raise TaskNotFound(self.id)

    def __repr__(self) -> str:
        state = self._outcome.state if self._outcome else ("error" if self._error else "pending")
        return f"<{type(self).__name__} {self.id} {state}>"


def check_owner(handles: Iterable[HandleBase], client: object) -> None:
    """A handle learns its result through the client that made it: waiting on it
    through another would only time out. Say so at once instead."""
    for h in handles:
        if h._client is not None and h._client is not client:
            raise ValueError(f"the handle of task {h.id} belongs to another client; "
                             f"use this client's handle({h.id!r}) to wait on it here")


def collect(handles: Iterable[HandleBase], return_exceptions: bool) -> list[Any]:
    """Results of settled handles in order; the first failure raises unless collected."""
    out = []
    for h in handles:
        try:
            out.append(h._value())
        except Exception as exc:
            if not return_exceptions:
                raise
            out.append(exc)
    return out


def chain_value(handles: list[HandleBase]) -> Any:
    """A chain's result: its last step's, or the failure that stopped it."""
    try:
        return handles[-1]._value()
    except TaskCancelled:
        for h in handles[:-1]:
            if h._ended():
                try:
                    h._value()
                except TaskCancelled:
                    continue
                except Exception as exc:
                    raise exc from None
        raise


# ---- the synchronous client's handles ----------------------------------------------------


class TaskHandle(HandleBase):
    """A submitted task, as the synchronous Client returns it."""

    __slots__ = ()  # HandleBase's fields and __init__(task_id, client)

    @property
    def done(self) -> bool:
        """True once the task ended (or its submission failed). Never blocks."""
        if self._ended():
            return True
        client = self._client
        if client._wake_owed:  # its outcome may sit unread: the I/O thread reads it
            client._wake()
        return False

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the task to end and return its result.

        Raises TaskFailed (with the remote `.error` and `.traceback`), TaskCancelled,
        TaskExpired, SubmitRejected, BrokerUnavailable, or ResultTimeout (a
        TimeoutError) when `timeout` seconds pass first.
        """
        self._client._wait_done([self], deadline_after(timeout))
        return self._value()

    def status(self) -> p.TaskInfo:
        return self._client.status(self.id)

    def cancel(self) -> bool:
        return self._client.cancel(self.id)


class ChainHandle:
    """The handle of a chain: `.handles` are its steps, `.id` the last step's id."""

    def __init__(self, handles: list[TaskHandle]) -> None:
        self.handles = handles
        self.id = handles[-1].id

    def result(self, timeout: float | None = None) -> Any:
        """The last step's result; if a step failed, the TaskFailed that stopped it."""
        last = self.handles[-1]
        last._client._wait_done([last], deadline_after(timeout))
        return chain_value(self.handles)

    def cancel(self) -> bool:
        """Cancel every step not yet finished; True if any was."""
        return any([h.cancel() for h in self.handles])


class GroupHandle:
    """The handle of a group: `.handles` are its members, in order."""

    def __init__(self, handles: list[TaskHandle]) -> None:
        self.handles = handles
        self.ids = [h.id for h in handles]

    def result(self, timeout: float | None = None, return_exceptions: bool = False) -> list[Any]:
        """Every member's result, in order (the first failure raises unless collected)."""
        return self.handles[0]._client.gather(self.handles, timeout, return_exceptions)

    def cancel(self) -> bool:
        return any([h.cancel() for h in self.handles])


# ---- AsyncClient's handles ---------------------------------------------------------------


class AsyncTaskHandle(HandleBase):
    """A submitted task, as AsyncClient returns it."""

    __slots__ = ()  # HandleBase's fields and __init__(task_id, client)

    async def result(self, timeout: float | None = None) -> Any:
        """As TaskHandle.result(), awaited."""
        await self._client._wait_done([self], timeout)
        return self._value()

    async def status(self) -> p.TaskInfo:
        return await self._client.status(self.id)

    async def cancel(self) -> bool:
        return await self._client.cancel(self.id)


class AsyncChainHandle:
    """As ChainHandle, awaited."""

    def __init__(self, handles: list[AsyncTaskHandle]) -> None:
        self.handles = handles
        self.id = handles[-1].id

    async def result(self, timeout: float | None = None) -> Any:
        last = self.handles[-1]
        await last._client._wait_done([last], timeout)
        return chain_value(self.handles)

    async def cancel(self) -> bool:
        return any([await h.cancel() for h in self.handles])


class AsyncGroupHandle:
    """As GroupHandle, awaited."""

    def __init__(self, handles: list[AsyncTaskHandle]) -> None:
        self.handles = handles
        self.ids = [h.id for h in handles]

    async def result(self, timeout: float | None = None,
                     return_exceptions: bool = False) -> list[Any]:
        return await self.handles[0]._client.gather(self.handles, timeout, return_exceptions)

    async def cancel(self) -> bool:
        return any([await h.cancel() for h in self.handles])
