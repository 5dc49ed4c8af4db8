"""AsyncClient: the Client's API as coroutines, for code already running an event loop.

It drives the same Session as the sync Client, on the running loop: the DEALER
socket's FD is watched with add_reader and drained on every wake-up (ZeroMQ's FD
is edge-triggered), and submissions made in one loop turn go out together.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import zmq

from actorq.client import requests
from actorq.client.handles import (
    AsyncChainHandle,
    AsyncGroupHandle,
    AsyncTaskHandle,
    HandleBase,
    check_owner,
    collect,
)
from actorq.client.requests import cron_entry, first_info, scale_bounds
from actorq.client.pressure import DEFAULT_FULL_TIMEOUT_S, DEFAULT_MAX_UNACKED_BYTES, Pressure
from actorq.client.session import (
    PING_INTERVAL_S,
    Session,
    deadline_after,
    needs_ack,
    remaining,
)
from actorq.errors import BrokerUnavailable, ResultTimeout, SubmitRejected
from actorq.wire import protocol as p
from actorq.wire import curve, sockets
from actorq.wire.leader import LeaderFinder, addresses
from actorq.wire.sockets import EVENTS, NOBLOCK, POLLIN

DRAIN_MAX = 5000  # inbound frames handled per wake-up before yielding to the loop


class AsyncClient:
    """The Client's API as coroutines, for code already running an event loop.

    `async with AsyncClient(address) as client:` connects (raising BrokerUnavailable
    after `connect_timeout`) and closes on exit. `key`, `broker_key`, `full_timeout`
    and `max_unacked_bytes` are as Client's.
    """

    def __init__(self, address: str | Sequence[str], *, connect_timeout: float = 10.0,
                 request_timeout: float = 30.0, key: str | None = None,
                 broker_key: str | None = None, full_timeout: float = DEFAULT_FULL_TIMEOUT_S,
                 max_unacked_bytes: int = DEFAULT_MAX_UNACKED_BYTES) -> None:
        self.addresses = addresses(address)
        address = self.address = self.addresses[0]  # the broker it talks to now
        self._finder: LeaderFinder | None = None
        self._keys = curve.optional_client_curve(key, broker_key)  # as Client takes them
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self._session = Session(address, Pressure(full_timeout, max_unacked_bytes))
        self._ctx: zmq.Context | None = None
        self._sock: zmq.Socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_scheduled = False
        self._pending: deque[bytes] = deque()
        self._decoder = p.decoder(p.BrokerToClient)
        self._ticker: asyncio.Task[None] | None = None
        self._connected: asyncio.Future[None] | None = None
        self._closed = False

    async def connect(self) -> AsyncClient:
        loop = self._loop = asyncio.get_running_loop()
        self._ctx = zmq.Context()
        self._sock = sockets.dealer(self._ctx, self.address, self._session.identity,
                                    self._keys, connect=False)
        handshake = sockets.HandshakeWatch(self._sock)  # from the first attempt on
        self._sock.connect(self.address)
        self._connected = loop.create_future()
        loop.add_reader(self._sock.getsockopt(zmq.FD), self._on_readable)
        if len(self.addresses) > 1:  # brokers sharing a store: follow the leader
            self._finder = LeaderFinder(
                self.addresses, lambda a: loop.call_soon_threadsafe(self._move, a),
                self._keys).start()
        self._ticker = loop.create_task(self._tick())
        self._flush()
        try:
            await asyncio.wait_for(asyncio.shield(self._connected), self.connect_timeout)
        except TimeoutError:
            why = handshake.reason()
            await self.close()
            raise BrokerUnavailable(f"no broker answered at {', '.join(self.addresses)} "
                                    f"within {self.connect_timeout:g} s{why}") from None
        finally:
            handshake.close()
        return self

    async def __aenter__(self) -> AsyncClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- I/O on the loop -------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._sock is None:
            return
        self._pending.extend(self._session.take_messages(time.monotonic()))
        while self._pending:
            try:
                self._sock.send(self._pending[0], NOBLOCK)
            except zmq.Again:
                self._loop.call_later(0.01, self._schedule_flush)
                break
            self._pending.popleft()
        # Sending can swallow the edge of ZeroMQ's edge-triggered FD: look again.
        if self._sock.getsockopt(EVENTS) & POLLIN:
            self._loop.call_soon(self._on_readable)

    def _move(self, address: str) -> None:
        """Another broker leads (the LeaderFinder says): talk to it from now on."""
        if self._sock is None:
            return
        sockets.move(self._sock, self.address, address)
        self.address = address
        self._session.moved(address)
        self._schedule_flush()

    def _on_readable(self) -> None:
        sock, session, decoder = self._sock, self._session, self._decoder
        if sock is None:
            return
        now = time.monotonic()
        more = True
        recv, get = sock.recv, sock.getsockopt
        for _ in range(DRAIN_MAX):
            if not get(EVENTS) & POLLIN:  # cheaper than the Again exception
                more = False
                break
            data = recv(NOBLOCK)
            try:
                session.on_message(decoder.decode(data), now)
            except msgspec.DecodeError:
                continue
        self._resolve()
        if more:
            self._loop.call_soon(self._on_readable)

    def _resolve(self) -> None:
        session = self._session
        if session.instance is not None and self._connected and not self._connected.done():
            self._connected.set_result(None)
        for h in session.completed:
            if h._future is not None and not h._future.done():
                h._future.set_result(None)
        session.completed.clear()
        for slot in session.answered:
            if slot.future is not None and not slot.future.done():
                slot.future.set_result(None)
        session.answered.clear()
        if session.control or session.outbox:
            self._schedule_flush()

    async def _tick(self) -> None:
        while True:
            # Refused tasks go again soon (pressure.py); else once a ping interval.
            await asyncio.sleep(0.01 if self._session.pressure.refused else PING_INTERVAL_S)
            self._session.check_silence(time.monotonic())
            self._flush()  # may fail refused tasks that waited too long: resolve after
            self._resolve()

    async def _wait_done(self, handles: Sequence[HandleBase], timeout: float | None) -> None:
        # One deadline for the whole wait, not a timer per handle. A timeout cancels
        # the future being awaited; the next wait on that handle makes a fresh one.
        loop = self._loop
        current: HandleBase | None = None
        try:
            async with asyncio.timeout(timeout):
                for current in handles:
                    if current.done:
                        continue
                    fut = current._future
                    if fut is None or fut.cancelled():
                        fut = current._future = loop.create_future()
                    await fut
        except TimeoutError:
            raise ResultTimeout(f"task {current.id if current else '?'} did not finish in "
                                "time") from None

    async def _call(self, make: Any, timeout: float | None) -> Any:
        req, slot = self._session.request(make)
        slot.future = self._loop.create_future()
        self._schedule_flush()
        try:
            await asyncio.wait_for(slot.future,
                                   self.request_timeout if timeout is None else timeout)
        except TimeoutError:
            self._session.requests.pop(req, None)  # a late reply finds nothing
            raise ResultTimeout("the broker did not answer in time") from None
        if slot.error is not None:
            raise slot.error
        return slot.reply

    # ---- public API ------------------------------------------------------------------

    async def submit(self, name: Any, args: Sequence[Any] | None = (),
                     kwargs: dict | None = None, **options: Any) -> AsyncTaskHandle:
        """As Client.submit()."""
        spec = self._session.build(name, args, kwargs, options)
        if self._session.congested():
            await self._wait_room()
        handle = AsyncTaskHandle(spec.id, self)
        self._session.add(spec, handle)
        self._schedule_flush()
        if needs_ack(spec):
            await self._wait_acked(handle, spec.id)
        return handle

    async def _wait_room(self) -> None:
        """As Client's: wait while the broker is full or too much is unacknowledged."""
        session = self._session
        deadline = deadline_after(session.pressure.full_timeout)
        while session.congested():
            if remaining(deadline) == 0.0:
                raise SubmitRejected(session.pressure.why_code(), session.pressure.why())
            await asyncio.sleep(0.01)

    async def _wait_acked(self, handle: AsyncTaskHandle, spec_id: str) -> None:
        deadline = deadline_after(self.request_timeout)
        while spec_id in self._session.unacked and not handle.done:
            if remaining(deadline) == 0.0:
                raise ResultTimeout("the broker did not acknowledge the submission in time")
            await asyncio.sleep(0.001)
        if isinstance(handle._error, SubmitRejected):
            raise handle._error

    async def submit_many(self, items: Iterable[tuple], **options: Any) -> list[AsyncTaskHandle]:
        """As Client.submit_many()."""
        specs = self._session.build_many(items, options)
        if self._session.congested():
            await self._wait_room()
        handles = [AsyncTaskHandle(spec.id, self) for spec in specs]
        self._session.add_many(specs, handles)
        self._schedule_flush()
        return handles

    async def _submit_linked(self, items: Iterable[tuple], options: dict,
                             piped: bool) -> list[AsyncTaskHandle]:
        specs = self._session.build_chain(items, options, piped)
        handles = [AsyncTaskHandle(spec.id, self) for spec in specs]
        for spec, h in zip(specs, handles):
            self._session.add(spec, h)
        self._schedule_flush()
        for spec, h in zip(specs, handles):
            if needs_ack(spec):
                await self._wait_acked(h, spec.id)
        return handles

    async def chain(self, items: Iterable[tuple], **options: Any) -> AsyncChainHandle:
        """As Client.chain()."""
        return AsyncChainHandle(await self._submit_linked(items, options, piped=True))

    async def group(self, items: Iterable[tuple], **options: Any) -> AsyncGroupHandle:
        """As Client.group()."""
        return AsyncGroupHandle(await self._submit_linked(items, options, piped=False))

    async def dead_letters(self, queue: str | None = None, limit: int = 100,
                           timeout: float | None = None) -> list[p.TaskInfo]:
        reply = await self._call(lambda req: p.DeadLetters(req, queue, limit), timeout)
        return [i for i in reply.items if i is not None]

    async def requeue(self, task_id: str, timeout: float | None = None) -> bool:
        return (await self._call(lambda req: p.Requeue(req, [task_id]), timeout)).ok[0]

    async def add_cron(self, name: str, schedule: str, task: Any, args: Sequence[Any] = (),
                       kwargs: dict | None = None, *, queue: str = "default", priority: int = 0,
                       timeout: float | None = None) -> None:
        entry = cron_entry(name, schedule, task, args, kwargs, queue, priority)
        await self._call(lambda req: p.AddCron(req, entry), timeout)

    async def remove_cron(self, name: str, timeout: float | None = None) -> bool:
        return (await self._call(lambda req: p.RemoveCron(req, name), timeout)).ok[0]

    async def crons(self, timeout: float | None = None) -> list[p.CronEntry]:
        return (await self._call(lambda req: p.ListCrons(req), timeout)).entries

    async def gather(self, handles: Sequence[AsyncTaskHandle], timeout: float | None = None,
                     return_exceptions: bool = False) -> list[Any]:
        """As Client.gather()."""
        check_owner(handles, self)
        await self._wait_done(handles, timeout)
        return collect(handles, return_exceptions)

    def handle(self, task_id: str) -> AsyncTaskHandle:
        h = AsyncTaskHandle(task_id, self)
        self._session.watch(h)
        self._schedule_flush()
        return h

    async def status(self, task_id: str, timeout: float | None = None) -> p.TaskInfo:
        return first_info(task_id, await self._call(lambda req: p.Query(req, [task_id]), timeout))

    async def cancel(self, task_id: str, timeout: float | None = None) -> bool:
        return (await self._call(lambda req: p.Cancel(req, [task_id]), timeout)).cancelled[0]

    async def stats(self, timeout: float | None = None) -> p.Stats:
        return (await self._call(lambda req: p.GetStats(req), timeout)).stats

    async def scale(self, pool: str, *, min_workers: int | None = None,
                    max_workers: int | None = None, timeout: float | None = None) -> None:
        """As Client.scale()."""
        low, high = scale_bounds(min_workers, max_workers)
        await self._call(lambda req: p.Scale(req, pool, low, high), timeout)

    # ---- for operators: as Client's ---------------------------------------------------

    async def list_tasks(self, state: str | None = None, *, queue: str | None = None,
                         name: str | None = None, limit: int = 50, cursor: str | None = None,
                         timeout: float | None = None) -> p.TaskPage:
        make = requests.list_tasks(state, queue, name, limit, cursor)
        return (await self._call(make, timeout)).page

    async def task(self, task_id: str, timeout: float | None = None) -> p.TaskInfo:
        return first_info(task_id, await self._call(
            lambda req: p.Query(req, [task_id], True), timeout))

    async def requeue_dead(self, *, queue: str | None = None, name: str | None = None,
                           timeout: float | None = None) -> int:
        return (await self._call(lambda req: p.RequeueDead(req, queue, name), timeout)).n

    async def workers(self, timeout: float | None = None) -> list[p.WorkerInfo]:
        return (await self._call(lambda req: p.Inspect(req, "workers"), timeout)).workers

    async def pools(self, timeout: float | None = None) -> list[p.PoolInfo]:
        return (await self._call(lambda req: p.Inspect(req, "pools"), timeout)).pools

    async def queues(self, timeout: float | None = None) -> list[p.QueueInfo]:
        return (await self._call(lambda req: p.Inspect(req, "queues"), timeout)).queues

    async def pause(self, queue: str, timeout: float | None = None) -> bool:
        return bool((await self._call(requests.queue_command(queue, "pause"), timeout)).n)

    async def resume(self, queue: str, timeout: float | None = None) -> bool:
        return bool((await self._call(requests.queue_command(queue, "resume"), timeout)).n)

    async def purge(self, queue: str, timeout: float | None = None) -> int:
        return (await self._call(requests.queue_command(queue, "purge"), timeout)).n

    async def run_cron(self, name: str, timeout: float | None = None) -> bool:
        return (await self._call(lambda req: p.RunCron(req, name), timeout)).ok[0]

    async def flush(self, timeout: float | None = None) -> None:
        deadline = deadline_after(timeout)
        self._session.want_acks()
        self._schedule_flush()
        while self._session.unacked:
            if remaining(deadline) == 0.0:
                raise ResultTimeout(f"{len(self._session.unacked)} submission(s) not "
                                    "acknowledged in time")
            await asyncio.sleep(0.01)

    async def close(self, close_timeout: float = 5.0) -> None:
        if self._closed:
            return
        if self._connected is not None and self._connected.done():
            try:
                await self.flush(close_timeout)
            except (ResultTimeout, BrokerUnavailable):
                pass
        self._closed = True
        if self._finder is not None:
            self._finder.stop()
        if self._ticker is not None:
            self._ticker.cancel()
        if self._sock is not None:
            self._loop.remove_reader(self._sock.getsockopt(zmq.FD))
            self._sock.close(linger=0)
            self._sock = None
        if self._ctx is not None:
            self._ctx.term()
        self._session.fail_all(BrokerUnavailable("the client is closed"))
        self._resolve()



__all__ = ["AsyncChainHandle", "AsyncClient", "AsyncGroupHandle", "AsyncTaskHandle"]
