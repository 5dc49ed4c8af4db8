"""The sync Client's socket: an I/O thread, and callers that read while they wait.

The I/O thread sends whatever submissions accumulated since it last woke as one
message, answers pings and notices a silent broker. A thread that waits on the
Client (result, gather, flush, status...) becomes the reader: it does the socket's
reading and sending itself while it waits, so its answer wakes it directly instead
of waking the I/O thread, which would then have to wake it (a thread hand-off:
40-70 us of a round trip on a VM).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import zmq

from actorq.client.handles import HandleBase
from actorq.client.session import PING_INTERVAL_S, deadline_after, remaining
from actorq.errors import BrokerUnavailable, ResultTimeout
from actorq.wire import sockets
from actorq.wire.sockets import EVENTS, NOBLOCK, POLLIN

log = logging.getLogger("actorq.client.sync")

DRAIN_MAX = 5000  # inbound frames handled per wake-up before sending again


class SyncIO:
    """Part of Client (sync.py): the I/O thread, the reader, and waiting."""

    def _wake(self) -> None:
        self._wake_owed = False
        if not self._wake_armed:
            self._wake_armed = True
            sockets.poke(self._wake_w)

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
            # Every 10 ms while frames wait on the socket's high-water mark or refused
            # tasks wait to go again (pressure.py); else each ping interval.
            soon = self._pending or self._session.pressure.refused
            if reading:
                timeout_ms = 0 if readable else (PING_INTERVAL_S * 1000 if not soon else 10)
                events = dict(everything.poll(timeout_ms))
            else:  # a caller reads: ours are the outbox, pings and silence
                self._io_watching = False
                events = dict(wake_only.poll(PING_INTERVAL_S * 1000 if not soon else 10))
            if self._wake_r in events:
                sockets.drain(self._wake_r)
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
            if self._move_to is not None:
                self._move(sock)
            now = time.monotonic()
            had_unacked = bool(session.unacked)
            instance = session.instance
            pressed = session.pressure.congested()
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
                session.instance != instance) or (pressed and not session.congested())
            if settled:
                session.completed.clear()
                session.answered.clear()
        if settled:
            with self._cond:
                self._cond.notify_all()
        return readable, settled

    def _leader_moved(self, address: str) -> None:
        """From the LeaderFinder's thread: another broker leads; the next turn moves."""
        self._move_to = address
        self._wake()
        self._poke_reader()

    def _move(self, sock: zmq.Socket) -> None:
        """Talk to the broker at _move_to from now on (holding _sock_lock). What went to
        the old one unacknowledged goes again once the new one welcomes us."""
        address, self._move_to = self._move_to, None
        sockets.move(sock, self._session.address, address)
        self.address = address
        self._session.moved(address)

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
        sockets.poke(self._reader_w)

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
                if self._session.pressure.refused:
                    wait_s = min(wait_s, 0.01)  # refused tasks go again soon (pressure.py)
                if self._reader_r in dict(poller.poll(wait_s * 1000)):
                    sockets.drain(self._reader_r)
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

    def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing = True
        if self._finder is not None:
            self._finder.stop()
        sockets.poke(self._wake_w)
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
