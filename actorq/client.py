"""Client and AsyncClient: submit tasks, wait for results, ask about tasks.

Client (here) and AsyncClient (aioclient.py) both drive a Session (session.py). Results are pushed by the broker when a task
ends; nothing polls. Submissions are batched without the caller doing anything:
the sync Client hands them to an I/O thread that sends whatever accumulated since
it last woke as one message, and AsyncClient sends once per event-loop turn. A
thread that waits on the sync Client (result, gather, flush, status...) does the
socket's reading and sending itself while it waits, so its answer wakes it directly.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec
import zmq

from . import actor
from .actor import EVENTS, NOBLOCK, POLLIN
from . import protocol as p
from .errors import BrokerUnavailable, ResultTimeout, SubmitRejected
from .session import (
    PING_INTERVAL_S,
    PIPELINE_CHUNK,
    HandleBase,
    Session,
    chain_value,
    check_owner,
    collect,
    cron_entry,
    deadline_after,
    first_info,
    needs_ack,
    remaining,
)

log = logging.getLogger(__name__)

DRAIN_MAX = 5000  # inbound frames handled per wake-up before sending again


# ---- the synchronous client ------------------------------------------------------------


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
        self._wake_r, self._wake_w = actor.wake_pipe()
        self._wake_armed = False
        self._wake_owed = False  # a submission was sent while nobody watched the socket
        # Whoever holds this may use the socket: the I/O thread, or the caller that is
        # the reader (below). Both poll the socket's FD, not the socket, so neither
        # holds it while asleep; the lock is also the barrier ZeroMQ asks for when a
        # socket changes threads.
        self._sock_lock = threading.Lock()
        self._fd = self._sock.getsockopt(zmq.FD)
        self._pending: deque[bytes] = deque()  # frames the socket would not take yet (HWM)
        # The reader: a caller waiting for an answer reads the socket itself while it
        # waits, and the I/O thread stops watching it; the answer then wakes the
        # thread that wants it instead of the I/O thread, which would have to wake
        # the caller in turn (a thread hand-off: 40-70 us of a round trip on a VM).
        # One reader at a time; other callers wait on _cond as before.
        self._reader = False
        self._reader_r, self._reader_w = actor.wake_pipe()  # wakes the reader's poll
        self._reader_poller = zmq.Poller()
        self._reader_poller.register(self._fd, zmq.POLLIN)
        self._reader_poller.register(self._reader_r, zmq.POLLIN)
        self._closing = False
        self._io_watching = False  # the I/O thread polls the socket (not just its pipe)
        self._closed = False  # _shutdown ran
        self._shut = False  # the socket is closed (set under _sock_lock)
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
        self._wake_owed = False
        if not self._wake_armed:
            self._wake_armed = True
            actor.poke(self._wake_w)

    def _io(self) -> None:
        try:
            self._io_loop()
        except Exception as exc:  # a dead I/O thread must not leave callers waiting forever
            log.exception("actorq client I/O failed")
            self._session.fail_all(BrokerUnavailable(f"the client's I/O thread failed: {exc!r}"))
            self._closing = True
            self._poke_reader()
            with self._cond:
                self._cond.notify_all()

    def _io_loop(self) -> None:
        everything = zmq.Poller()
        everything.register(self._fd, zmq.POLLIN)
        everything.register(self._wake_r, zmq.POLLIN)
        wake_only = zmq.Poller()
        wake_only.register(self._wake_r, zmq.POLLIN)
        readable = False
        while not self._closing:
            # Set before reading _reader, which a new reader sets before reading this:
            # one of the two always sees the other (see _await).
            self._io_watching = True
            reading = not self._reader
            if reading:
                timeout_ms = 0 if readable else (PING_INTERVAL_S * 1000 if not self._pending
                                                 else 10)
                events = dict(everything.poll(timeout_ms))
            else:  # a caller reads: ours are the outbox, pings and silence
                self._io_watching = False
                events = dict(wake_only.poll(PING_INTERVAL_S * 1000 if not self._pending
                                             else 10))
            if self._wake_r in events:
                actor.drain(self._wake_r)
            # Disarm before taking the outbox: a submit that lands after this
            # point writes the pipe again, so nothing is left waiting.
            self._wake_armed = False
            readable, settled = self._turn(read=reading)
            # A caller reading now needs to look: our send may have taken the edge it
            # polls for, or (if it became the reader after we chose to read) our read
            # may have taken the answer it waits for, and with it the FD's signal.
            if self._reader and (readable or settled):
                self._poke_reader()

    def _turn(self, *, read: bool) -> tuple[bool, bool]:
        """One turn on the socket: read what waits (if `read`), send what is due.
        Returns (more is waiting to be read, something a caller waits for happened).

        ZeroMQ's FD only says "look again": it is edge-triggered, and a send may take
        the edge of a message that arrived meanwhile, so a turn ends by asking the
        socket itself whether more is waiting."""
        session, sock = self._session, self._sock
        with self._sock_lock:
            if self._shut:
                return False, False  # the socket is closed (a reader racing close())
            now = time.monotonic()
            had_unacked = bool(session.unacked)
            instance = session.instance
            if read:
                decoder = self._decoder
                recv, get = sock.recv, sock.getsockopt
                for _ in range(DRAIN_MAX):
                    if not get(EVENTS) & POLLIN:  # cheaper than the Again exception
                        break
                    data = recv(NOBLOCK)
                    try:
                        msg = decoder.decode(data)
                    except msgspec.DecodeError:
                        continue  # never from a real broker; nothing to answer
                    session.on_message(msg, now)
            session.check_silence(now)
            self._send_due(now)
            readable = bool(sock.getsockopt(EVENTS) & POLLIN)
            # Wake callers only when something they wait for happened: a handle
            # settled, a reply came, the last submission was acknowledged (flush), or
            # the broker answered for the first time or as a new instance (connect).
            # Waking them for every ack would cost a GIL hand-off per round trip.
            settled = bool(session.completed or session.answered)
            settled = settled or (had_unacked and not session.unacked) or (
                session.instance != instance)
            if settled:
                session.completed.clear()
                session.answered.clear()
        if settled:
            with self._cond:
                self._cond.notify_all()
        return readable, settled

    def _send_now(self) -> bool:
        """Send what is queued from the calling thread, unless another thread is on the
        socket (its turn sends it). A lone submission then leaves at once; traced, it
        waited 46 us (p50) for the caller's own first read turn, behind the I/O
        thread's turn for the same submission. True if everything left."""
        if not self._sock_lock.acquire(blocking=False):
            return False
        try:
            if self._shut:
                return False
            self._send_due(time.monotonic())
            return not self._pending
        finally:
            self._sock_lock.release()

    def _send_due(self, now: float) -> None:
        """Send what the session has due, holding _sock_lock; what the socket will not
        take yet (high-water mark) waits in _pending for a later turn."""
        pending, sock = self._pending, self._sock
        pending.extend(self._session.take_messages(now))
        while pending:
            try:
                sock.send(pending[0], NOBLOCK)
            except zmq.Again:
                break
            pending.popleft()

    def _poke_reader(self) -> None:
        actor.poke(self._reader_w)

    # ---- waiting ---------------------------------------------------------------------

    def _await(self, done: Callable[[], bool], deadline: float | None) -> bool:
        """Wait until done() (True) or the deadline (False); BrokerUnavailable once the
        client is closed. The first caller to wait becomes the reader."""
        if done():
            return True
        with self._cond:
            reader = not self._reader and not self._closing
            if reader:
                self._reader = True
                self._wake_owed = False  # this reader reads whatever it was owed for
        if reader:
            # If the I/O thread is asleep watching the socket, wake it to stop. Usually
            # it is not: the last reader left it waiting on its pipe alone.
            if self._io_watching:
                self._wake()
            try:
                return self._read_until(done, deadline)
            finally:
                self._reader = False
                # The I/O thread watches the socket again, if anything may still come
                # that someone waits for. A lone caller whose result is in has nothing
                # left (the common round trip), and its next submit wakes that thread
                # anyway: a wake-up here would cost the return a pipe write (~25 us).
                if self._session.outstanding() or self._pending:
                    self._wake()
                if self._closing:  # close() waits for the reader to be out of poll
                    with self._cond:
                        self._cond.notify_all()
        with self._cond:
            while not done():
                if self._closing:
                    raise BrokerUnavailable("the client is closed")
                left = remaining(deadline)
                if left == 0.0:
                    return False
                self._cond.wait(left)
        return True

    def _read_until(self, done: Callable[[], bool], deadline: float | None) -> bool:
        poller = self._reader_poller
        readable = True  # the first turn sends what this caller queued, at once
        while True:
            if not readable:
                left = remaining(deadline)
                wait_s = PING_INTERVAL_S if left is None else min(left, PING_INTERVAL_S)
                if self._reader_r in dict(poller.poll(wait_s * 1000)):
                    actor.drain(self._reader_r)
            if self._closing:
                if done():
                    return True
                raise BrokerUnavailable("the client is closed")
            readable, _ = self._turn(read=True)
            if done():
                return True
            if remaining(deadline) == 0.0:
                return False

    def _wait_done(self, handles: Sequence[HandleBase], deadline: float | None) -> None:
        i, n = 0, len(handles)

        def all_done() -> bool:
            nonlocal i
            while i < n and handles[i]._ended():
                i += 1
            return i == n

        if not self._await(all_done, deadline):
            raise ResultTimeout(f"task {handles[i].id} did not finish in time")

    def _call(self, make: Any, timeout: float | None) -> Any:
        req, slot = self._session.request(make)
        self._wake()
        deadline = deadline_after(self.request_timeout if timeout is None else timeout)
        if not self._await(lambda: slot.reply is not None or slot.error is not None,
                           deadline):
            self._session.requests.pop(req, None)  # a late reply finds nothing
            raise ResultTimeout("the broker did not answer in time")
        if slot.error is not None:
            raise slot.error
        return slot.reply

    # ---- public API ------------------------------------------------------------------

    def submit(self, name: Any, args: Sequence[Any] | None = (), kwargs: dict | None = None,
               **options: Any) -> TaskHandle:
        """Submit one task; returns its handle at once (the broker's ack comes later).

        `name` is "module:function" of an @task function (or the function itself).
        `options` are those the README lists (queue, priority, retries, backoff,
        max_backoff, retry_on, timeout, expires, delay, eta, depends_on, key,
        ignore_result); each defaults to the task's @task default when this process
        has imported its module. Arguments must be msgpack-encodable (TypeError
        otherwise, before anything is sent). Raises SubmitRejected for a bad option
        or a payload over the broker's limit. With `depends_on` or `key` it waits
        for the broker's answer, so an unknown dependency raises here and a key
        already taken returns the first task's handle.
        """
        session = self._session
        spec = session.build(name, args, kwargs, options)
        handle = TaskHandle(spec.id, self)
        session.add(spec, handle)
        # A lone submission leaves from here, at once; submissions in a stream stay for
        # the I/O thread, which batches them.
        if len(session.unacked) == 1 and self._send_now() and not self._io_watching:
            # Nobody watches the socket, and the caller usually waits on the result
            # next, reading it itself: the I/O thread's wake-up would find nothing to
            # do (48 us of CPU a round trip, beside the caller's). It is owed instead,
            # paid by a look at the handle (TaskHandle.done) or its ping within 1 s.
            self._wake_owed = True
        else:
            self._wake()
        if spec.opts is not None and needs_ack(spec):
            self._wait_acked(handle, spec.id)
        return handle

    def _wait_acked(self, handle: TaskHandle, spec_id: str) -> None:
        unacked = self._session.unacked
        if not self._await(lambda: spec_id not in unacked or handle._ended(),
                           deadline_after(self.request_timeout)):
            raise ResultTimeout("the broker did not acknowledge the submission in time")
        if isinstance(handle._error, SubmitRejected):
            raise handle._error

    def submit_many(self, items: Iterable[tuple], **options: Any) -> list[TaskHandle]:
        """Submit many `(name, args)` or `(name, args, kwargs)` tuples in batched messages.

        `options` apply to every item (over each task's @task defaults). Every item
        is validated and encoded before any is sent, so a bad item raises without
        submitting the others.
        """
        session = self._session
        prepared = session.prepare_many(items, options)  # every item valid, or raise
        handles: list[TaskHandle] = []
        # Nothing below can fail, so the sender may start on the first chunk while
        # the rest are still being turned into specs and handles.
        for start in range(0, len(prepared), PIPELINE_CHUNK):
            specs = session.specs(prepared[start:start + PIPELINE_CHUNK])
            chunk = [TaskHandle(spec.id, self) for spec in specs]
            session.add_many(specs, chunk)
            handles.extend(chunk)
            self._wake()
        return handles

    def _submit_linked(self, items: Iterable[tuple], options: dict, piped: bool
                       ) -> list[TaskHandle]:
        session = self._session
        specs = session.build_chain(items, options, piped)
        handles = [TaskHandle(spec.id, self) for spec in specs]
        for spec, h in zip(specs, handles):
            session.add(spec, h)
        self._wake()
        for spec, h in zip(specs, handles):
            if needs_ack(spec):
                self._wait_acked(h, spec.id)
        return handles

    def chain(self, items: Iterable[tuple], **options: Any) -> ChainHandle:
        """Run `(name, args[, kwargs])` steps one after another; each step after the
        first gets the previous step's result as its first argument. The handle's
        result() is the last step's result, or raises the failure that stopped it."""
        return ChainHandle(self._submit_linked(items, options, piped=True))

    def group(self, items: Iterable[tuple], **options: Any) -> GroupHandle:
        """Run steps in parallel; the handle's result() is the list of their results."""
        return GroupHandle(self._submit_linked(items, options, piped=False))

    def gather(self, handles: Sequence[TaskHandle], timeout: float | None = None,
               return_exceptions: bool = False) -> list[Any]:
        """Wait for all handles; results in the same order. Raises the first failure
        unless `return_exceptions`, which puts exceptions in the list instead."""
        check_owner(handles, self)
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
        """Cancel a task: True if it is now cancelled, False if it had already ended.

        A task not yet running never will; a running one is stopped within about a
        second (async: cancelled in place; plain: its worker is killed and replaced)."""
        return self._call(lambda req: p.Cancel(req, [task_id]), timeout).cancelled[0]

    def dead_letters(self, queue: str | None = None, limit: int = 100,
                     timeout: float | None = None) -> list[p.TaskInfo]:
        """Tasks whose last attempt failed (oldest first), kept until result_ttl."""
        reply = self._call(lambda req: p.DeadLetters(req, queue, limit), timeout)
        return [i for i in reply.items if i is not None]

    def requeue(self, task_id: str, timeout: float | None = None) -> bool:
        """Run a dead task again, with a fresh retry budget: True if it was dead."""
        return self._call(lambda req: p.Requeue(req, [task_id]), timeout).ok[0]

    def add_cron(self, name: str, schedule: str, task: Any, args: Sequence[Any] = (),
                 kwargs: dict | None = None, *, queue: str = "default", priority: int = 0,
                 timeout: float | None = None) -> None:
        """Add (or replace) a cron entry: `schedule` is five cron fields, or six with a
        leading seconds field, in UTC. Raises SubmitRejected for a bad entry."""
        entry = cron_entry(name, schedule, task, args, kwargs, queue, priority)
        self._call(lambda req: p.AddCron(req, entry), timeout)

    def remove_cron(self, name: str, timeout: float | None = None) -> bool:
        """Remove a cron entry: True if there was one."""
        return self._call(lambda req: p.RemoveCron(req, name), timeout).ok[0]

    def crons(self, timeout: float | None = None) -> list[p.CronEntry]:
        """The cron table, with each entry's last due time fired (unix seconds)."""
        return self._call(lambda req: p.ListCrons(req), timeout).entries

    def stats(self, timeout: float | None = None) -> p.Stats:
        """A snapshot of the broker's counters."""
        return self._call(lambda req: p.GetStats(req), timeout).stats

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the broker has acknowledged (or rejected) every submission."""
        deadline = deadline_after(timeout)
        self._session.want_acks()
        self._wake()
        unacked = self._session.unacked
        if not self._await(lambda: not unacked, deadline):
            raise ResultTimeout(f"{len(unacked)} submission(s) not acknowledged in time")

    def close(self, close_timeout: float = 5.0) -> None:
        if not self._closing:
            try:
                self.flush(close_timeout)
            except (ResultTimeout, BrokerUnavailable):
                pass
        self._shutdown()  # also after the I/O thread failed: the socket is still open

    def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing = True
        actor.poke(self._wake_w)
        self._poke_reader()
        self._thread.join(5)
        with self._cond:
            self._cond.notify_all()
            # A reader (poked above) leaves its poll before the FDs it polls close.
            self._cond.wait_for(lambda: not self._reader, 2.0)
        with self._sock_lock:  # and any turn in progress finishes first
            self._shut = True
            self._sock.close(linger=0)
        self._ctx.term()
        for fd in (self._wake_r, self._wake_w, self._reader_r, self._reader_w):
            os.close(fd)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ChainHandle", "Client", "GroupHandle", "TaskHandle"]
