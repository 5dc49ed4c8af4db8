"""Client: submit tasks, wait for results, ask about tasks (synchronous).

Client (here) and AsyncClient (aio.py) both drive a Session (session.py); results
are pushed by the broker when a task ends, and nothing polls. Submissions are batched without the caller doing anything:
the sync Client hands them to an I/O thread that sends whatever accumulated since
it last woke as one message, and AsyncClient sends once per event-loop turn. A
thread that waits on the sync Client (result, gather, flush, status...) does the
socket's reading and sending itself while it waits, so its answer wakes it directly.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import zmq

from actorq.client import requests
from actorq.client.pressure import DEFAULT_FULL_TIMEOUT_S, DEFAULT_MAX_UNACKED_BYTES, Pressure
from actorq.client.handles import ChainHandle, GroupHandle, TaskHandle, check_owner, collect
from actorq.client.requests import cron_entry, first_info, scale_bounds
from actorq.client.session import (
    PIPELINE_CHUNK,
    Session,
    deadline_after,
    needs_ack,
)
from actorq.client.sync_io import SyncIO
from actorq.errors import BrokerUnavailable, ResultTimeout, SubmitRejected
from actorq.wire import protocol as p
from actorq.wire import curve, sockets
from actorq.wire.leader import LeaderFinder, addresses


class Client(SyncIO):
    """A connection to a broker, safe to share between threads.

    `Client("tcp://127.0.0.1:5555")` connects and waits up to `connect_timeout`
    seconds for the broker to answer, raising BrokerUnavailable if it does not.
    Use it as a context manager, or call close(): closing waits (up to
    `close_timeout`) until every submission was acknowledged.

    A broker with CurveZMQ needs `key` (this client's NAME.key_secret file, whose
    public key is on the broker's client or admin allow-list) and `broker_key` (the
    broker's public key file): docs/security.md.

    When the broker is full (queue_full) or this client holds `max_unacked_bytes` of
    arguments the broker has not acknowledged, submit() waits, up to `full_timeout`
    seconds, then raises SubmitRejected("queue_full"); tasks the broker refused as
    full are sent again until it takes them (docs/operations.md#limits).
    """

    def __init__(self, address: str | Sequence[str], *, connect_timeout: float = 10.0,
                 request_timeout: float = 30.0, key: str | None = None,
                 broker_key: str | None = None, full_timeout: float = DEFAULT_FULL_TIMEOUT_S,
                 max_unacked_bytes: int = DEFAULT_MAX_UNACKED_BYTES) -> None:
        self.addresses = addresses(address)
        address = self.address = self.addresses[0]  # the broker it talks to now
        self.request_timeout = request_timeout
        self._session = Session(address, Pressure(full_timeout, max_unacked_bytes))
        self._cond = threading.Condition()
        keys = curve.optional_client_curve(key, broker_key)  # a bad key file: before sockets
        self._ctx = zmq.Context()
        self._sock = sockets.dealer(self._ctx, address, self._session.identity, keys,
                                    connect=False)
        handshake = sockets.HandshakeWatch(self._sock)  # from the first attempt on
        self._sock.connect(address)
        self._wake_r, self._wake_w = sockets.wake_pipe()
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
        self._reader_r, self._reader_w = sockets.wake_pipe()  # wakes the reader's poll
        self._reader_poller = zmq.Poller()
        self._reader_poller.register(self._fd, zmq.POLLIN)
        self._reader_poller.register(self._reader_r, zmq.POLLIN)
        self._closing = False
        self._io_watching = False  # the I/O thread polls the socket (not just its pipe)
        self._closed = False  # _shutdown ran
        self._shut = False  # the socket is closed (set under _sock_lock)
        self._decoder = p.decoder(p.BrokerToClient)
        self._thread = threading.Thread(target=self._io, name="actorq-client-io", daemon=True)
        self._move_to: str | None = None  # the leader the finder found, for the I/O to move to
        self._finder = None
        if len(self.addresses) > 1:  # brokers sharing a store: follow the leader
            self._finder = LeaderFinder(self.addresses, self._leader_moved, keys).start()
        self._thread.start()
        self._wake()
        with self._cond:
            answered = self._cond.wait_for(lambda: self._session.instance is not None,
                                           connect_timeout)
        why = "" if answered else handshake.reason()
        handshake.close()
        if not answered:
            self._shutdown()
            raise BrokerUnavailable(f"no broker answered at {', '.join(self.addresses)} "
                                    f"within {connect_timeout:g} s{why}")

    # ---- I/O thread ------------------------------------------------------------------

    # ---- waiting ---------------------------------------------------------------------

    # ---- public API ------------------------------------------------------------------

    def submit(self, name: Any, args: Sequence[Any] | None = (), kwargs: dict | None = None,
               **options: Any) -> TaskHandle:
        """Submit one task; returns its handle at once (the broker's ack comes later).

        `name` is "module:function" of an @task function (or the function itself).
        `options` are those docs/tasks.md describes (queue, priority, retries, backoff,
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
        if session.congested():
            self._wait_room()
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

    def _wait_room(self, *, raising: bool = True) -> None:
        """Back-pressure (client/pressure.py): wait while the broker is full or this
        client holds too much unacknowledged, up to full_timeout; then raise."""
        session = self._session
        if self._await(lambda: not session.congested(),
                       deadline_after(session.pressure.full_timeout)) or not raising:
            return
        raise SubmitRejected(session.pressure.why_code(), session.pressure.why())

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
            if session.congested():
                # Once some are submitted, raising would lose their handles: the rest
                # go anyway, and fail one by one if the broker stays full.
                self._wait_room(raising=not handles)
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

    def scale(self, pool: str, *, min_workers: int | None = None,
              max_workers: int | None = None, timeout: float | None = None) -> None:
        """Change a pool's bounds at run time: it grows and shrinks between them (equal
        bounds fix its size; a bound left out stays as it is). Applies to every host the
        pool runs on, each keeping its workers within the bounds. Raises
        RequestRejected (code bad_option) for an unknown pool or bounds that make no
        sense (below 1, min over max), changing nothing."""
        low, high = scale_bounds(min_workers, max_workers)
        self._call(lambda req: p.Scale(req, pool, low, high), timeout)

    # ---- for operators: listings, inspection and commands (docs/operations.md) -----

    def list_tasks(self, state: str | None = None, *, queue: str | None = None,
                   name: str | None = None, limit: int = 50, cursor: str | None = None,
                   timeout: float | None = None) -> p.TaskPage:
        """A page of tasks, newest first, filtered by state, queue and task name. Pass the
        page's `next_cursor` for the next page (None when there is no more). A page
        costs the broker O(limit), however many tasks it holds."""
        make = requests.list_tasks(state, queue, name, limit, cursor)
        return self._call(make, timeout).page

    def task(self, task_id: str, timeout: float | None = None) -> p.TaskInfo:
        """A task in full: status plus arguments (`payload`), result (`value`),
        `traceback` and every attempt (`history`). Raises TaskNotFound."""
        return first_info(task_id, self._call(lambda req: p.Query(req, [task_id], True),
                                              timeout))

    def requeue_dead(self, *, queue: str | None = None, name: str | None = None,
                     timeout: float | None = None) -> int:
        """Run again every dead letter of `queue` and/or task `name` (every one when
        neither is given), each with a fresh retry budget; returns how many."""
        return self._call(lambda req: p.RequeueDead(req, queue, name), timeout).n

    def workers(self, timeout: float | None = None) -> list[p.WorkerInfo]:
        """Every connected worker: pool, host, pid, state, its leases, slots, credit."""
        return self._call(lambda req: p.Inspect(req, "workers"), timeout).workers

    def pools(self, timeout: float | None = None) -> list[p.PoolInfo]:
        """Every pool the broker knows, with its size, bounds and state."""
        return self._call(lambda req: p.Inspect(req, "pools"), timeout).pools

    def queues(self, timeout: float | None = None) -> list[p.QueueInfo]:
        """Every queue: depth (and by priority), paused, consumers, oldest task's age."""
        return self._call(lambda req: p.Inspect(req, "queues"), timeout).queues

    def pause(self, queue: str, timeout: float | None = None) -> bool:
        """Stop dispatching from `queue` (it still takes submissions): True if it ran."""
        return bool(self._call(requests.queue_command(queue, "pause"), timeout).n)

    def resume(self, queue: str, timeout: float | None = None) -> bool:
        """Dispatch from a paused queue again: True if it was paused."""
        return bool(self._call(requests.queue_command(queue, "resume"), timeout).n)

    def purge(self, queue: str, timeout: float | None = None) -> int:
        """Cancel every task queued in `queue` (running ones are not touched); returns
        how many. Their waiters get TaskCancelled."""
        return self._call(requests.queue_command(queue, "purge"), timeout).n

    def run_cron(self, name: str, timeout: float | None = None) -> bool:
        """Fire a cron entry now, once, besides its schedule: True if it exists."""
        return self._call(lambda req: p.RunCron(req, name), timeout).ok[0]

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

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ChainHandle", "Client", "GroupHandle", "TaskHandle"]
