"""Client and AsyncClient: submit tasks, wait for results, ask about tasks.

Client (here) and AsyncClient (aioclient.py) both drive a Session (session.py). Results are pushed by the broker when a task
ends; nothing polls. Submissions are batched without the caller doing anything:
the sync Client hands them to an I/O thread that sends whatever accumulated since
it last woke as one message, and AsyncClient sends once per event-loop turn.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import zmq

from . import actor
from . import protocol as p
from .errors import BrokerUnavailable, ResultTimeout
from .session import (
    PING_INTERVAL_S,
    PIPELINE_CHUNK,
    HandleBase,
    Session,
    collect,
    deadline_after,
    first_info,
    remaining,
)

log = logging.getLogger(__name__)

DRAIN_MAX = 5000  # inbound frames handled per wake-up before sending again


# ---- the synchronous client ------------------------------------------------------------


class TaskHandle(HandleBase):
    """A submitted task, as the synchronous Client returns it."""

    __slots__ = ("_client",)

    def __init__(self, task_id: str, client: Client) -> None:
        super().__init__(task_id)
        self._client = client

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


class Client:
    """A connection to a broker, safe to share between threads.

    `Client("tcp://127.0.0.1:5555")` connects and waits up to `connect_timeout`
    seconds for the broker to answer, raising BrokerUnavailable if it does not.
    Use it as a context manager, or call close(): closing waits (up to
    `close_timeout`) until every submission was acknowledged.
    """

    def __init__(self, address: str, *, connect_timeout: float = 10.0,
                 request_timeout: float = 30.0) -> None:
        self.address = address
        self.request_timeout = request_timeout
        self._session = Session(address)
        self._cond = threading.Condition()
        self._ctx = zmq.Context()
        self._sock = actor.dealer(self._ctx, address, self._session.identity)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._wake_armed = False
        self._closing = False
        self._decoder = p.decoder(p.BrokerToClient)
        self._thread = threading.Thread(target=self._io, name="actorq-client-io", daemon=True)
        self._thread.start()
        self._wake()
        with self._cond:
            if not self._cond.wait_for(lambda: self._session.instance is not None,
                                       connect_timeout):
                self._shutdown()
                raise BrokerUnavailable(f"no broker answered at {address} within "
                                        f"{connect_timeout:g} s")

    # ---- I/O thread ------------------------------------------------------------------

    def _wake(self) -> None:
        if not self._wake_armed:
            self._wake_armed = True
            os.write(self._wake_w, b"x")

    def _io(self) -> None:
        try:
            self._io_loop()
        except Exception as exc:  # a dead I/O thread must not leave callers waiting forever
            log.exception("actorq client I/O failed")
            self._session.fail_all(BrokerUnavailable(f"the client's I/O thread failed: {exc!r}"))
            self._closing = True
            with self._cond:
                self._cond.notify_all()

    def _io_loop(self) -> None:
        session, sock, decoder = self._session, self._sock, self._decoder
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        pending: deque[bytes] = deque()  # frames the socket would not take yet (HWM)
        while not self._closing:
            events = dict(poller.poll(PING_INTERVAL_S * 1000 if not pending else 10))
            if self._wake_r in events:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
            # Disarm before taking the outbox: a submit that lands after this
            # point writes the pipe again, so nothing is left waiting.
            self._wake_armed = False
            now = time.monotonic()
            had_unacked = bool(session.unacked)
            instance = session.instance
            for _ in range(DRAIN_MAX):
                try:
                    data = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    msg = decoder.decode(data)
                except msgspec.DecodeError:
                    continue  # never from a real broker; nothing to answer
                session.on_message(msg, now)
            session.check_silence(now)
            pending.extend(session.take_messages(now))
            while pending:
                try:
                    sock.send(pending[0], zmq.NOBLOCK)
                except zmq.Again:
                    break  # high-water mark: try again on the next turn
                pending.popleft()
            # Wake callers only when something they wait for happened: a handle settled,
            # a reply came, the last submission was acknowledged (flush), or the broker
            # answered for the first time or as a new instance (connect). Waking them
            # for every ack would cost a GIL hand-off per round trip.
            settled = bool(session.completed or session.answered)
            if (settled or (had_unacked and not session.unacked)
                    or session.instance != instance):
                session.completed.clear()
                session.answered.clear()
                with self._cond:
                    self._cond.notify_all()

    # ---- waiting ---------------------------------------------------------------------

    def _wait_done(self, handles: Sequence[HandleBase], deadline: float | None) -> None:
        with self._cond:
            for h in handles:
                while not h.done:
                    if self._closing:
                        raise BrokerUnavailable("the client is closed")
                    left = remaining(deadline)
                    if left == 0.0:
                        raise ResultTimeout(f"task {h.id} did not finish in time")
                    self._cond.wait(left)

    def _call(self, make: Any, timeout: float | None) -> Any:
        req, slot = self._session.request(make)
        self._wake()
        deadline = deadline_after(self.request_timeout if timeout is None else timeout)
        with self._cond:
            while slot.reply is None and slot.error is None:
                left = remaining(deadline)
                if left == 0.0:
                    self._session.requests.pop(req, None)  # a late reply finds nothing
                    raise ResultTimeout("the broker did not answer in time")
                self._cond.wait(left)
        if slot.error is not None:
            raise slot.error
        return slot.reply

    # ---- public API ------------------------------------------------------------------

    def submit(self, name: str, args: Sequence[Any] | None = (), kwargs: dict | None = None, *,
               queue: str | None = None, priority: int | None = None) -> TaskHandle:
        """Submit one task; returns its handle at once (the broker's ack comes later).

        `name` is "module:function" of an @task function (or the function itself).
        `queue` and `priority` default to the task's @task defaults when this process
        has imported its module, else to "default" and 0. Arguments must be
        msgpack-encodable (TypeError otherwise, before anything is sent). Raises
        SubmitRejected for a bad option or a payload over the broker's limit.
        """
        spec = self._session.build(name, args, kwargs, queue, priority)
        handle = TaskHandle(spec.id, self)
        self._session.add(spec, handle)
        self._wake()
        return handle

    def submit_many(self, items: Iterable[tuple], *, queue: str | None = None,
                    priority: int | None = None) -> list[TaskHandle]:
        """Submit many `(name, args)` or `(name, args, kwargs)` tuples in batched messages.

        Every item is validated and encoded before any is sent, so a bad item
        raises without submitting the others.
        """
        session = self._session
        prepared = session.prepare_many(items, queue, priority)  # every item valid, or raise
        handles: list[TaskHandle] = []
        # Nothing below can fail, so the sender may start on the first chunk while
        # the rest are still being turned into specs and handles.
        for start in range(0, len(prepared), PIPELINE_CHUNK):
            for spec in session.specs(prepared[start:start + PIPELINE_CHUNK]):
                h = TaskHandle(spec.id, self)
                session.add(spec, h)
                handles.append(h)
            self._wake()
        return handles

    def gather(self, handles: Sequence[TaskHandle], timeout: float | None = None,
               return_exceptions: bool = False) -> list[Any]:
        """Wait for all handles; results in the same order. Raises the first failure
        unless `return_exceptions`, which puts exceptions in the list instead."""
        self._wait_done(handles, deadline_after(timeout))
        return collect(handles, return_exceptions)

    def handle(self, task_id: str) -> TaskHandle:
        """A handle for a task submitted elsewhere; its result() waits as usual.

        The broker must already hold the task (the submitter's flush() returned),
        else result() raises TaskNotFound."""
        h = TaskHandle(task_id, self)
        self._session.watch(h)
        self._wake()
        return h

    def status(self, task_id: str, timeout: float | None = None) -> p.TaskInfo:
        """The task's TaskInfo (state, attempts, worker, timestamps, error).
        Raises TaskNotFound for an id the broker does not hold."""
        return first_info(task_id, self._call(lambda req: p.Query(req, [task_id]), timeout))

    def cancel(self, task_id: str, timeout: float | None = None) -> bool:
        """Cancel a task that has not started: True if it is now cancelled."""
        return self._call(lambda req: p.Cancel(req, [task_id]), timeout).cancelled[0]

    def stats(self, timeout: float | None = None) -> p.Stats:
        """A snapshot of the broker's counters."""
        return self._call(lambda req: p.GetStats(req), timeout).stats

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the broker has acknowledged (or rejected) every submission."""
        deadline = deadline_after(timeout)
        self._wake()
        while self._session.unacked:
            left = remaining(deadline)
            if left == 0.0:
                raise ResultTimeout(f"{len(self._session.unacked)} submission(s) not "
                                    "acknowledged in time")
            with self._cond:
                if self._session.unacked:
                    self._cond.wait(left)

    def close(self, close_timeout: float = 5.0) -> None:
        if self._closing:
            return
        try:
            self.flush(close_timeout)
        except (ResultTimeout, BrokerUnavailable):
            pass
        self._shutdown()

    def _shutdown(self) -> None:
        self._closing = True
        os.write(self._wake_w, b"x")
        self._thread.join(5)
        with self._cond:
            self._cond.notify_all()
        self._sock.close(linger=0)
        self._ctx.term()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Client", "TaskHandle"]
