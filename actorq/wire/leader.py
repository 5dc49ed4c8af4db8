"""Which of several brokers leads, for a client or worker given a list of addresses.

Brokers sharing a PostgreSQL store take turns (storage/leadership.py): one leads
and serves, the standbys do not even listen. A peer given several addresses talks
to one of them at a time, always on its one socket, so that nothing it sends can
land on a broker that does not lead. Beside it, a LeaderFinder thread keeps a
small probe socket per address and asks each, every PROBE_S, whether it serves and
under which epoch (protocol.Probe, answered with Leader). A standby that takes over
binds, the probe connects and asks, and the answer comes with a higher epoch than
the current broker's: the peer moves there (`on_leader`). A deposed leader that
wakes up still answers, with its old epoch, and is never followed.

Probes go only over connections that completed their handshake (IMMEDIATE), so
nothing piles up for an address where no broker listens.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import msgspec
import zmq

from actorq.wire import protocol as p
from actorq.wire import sockets
from actorq.wire.curve import ClientCurve

log = logging.getLogger(__name__)

PROBE_S = 0.1  # how often each other address is asked
PROBE_CURRENT_S = 0.5  # ... and the one the peer talks to
FRESH_S = 1.5  # an answer older than this no longer counts
RECONNECT_S = 0.1  # a probe tries a silent address again this often, with no back-off


def addresses(broker: str | list[str]) -> list[str]:
    """A config's `broker`: one address, or a list of the brokers sharing a store."""
    return [broker] if isinstance(broker, str) else list(broker)


class LeaderFinder:
    def __init__(self, addresses: list[str], on_leader: Callable[[str], None],
                 curve: ClientCurve | None = None) -> None:
        self.addresses = list(addresses)
        self.current = self.addresses[0]
        self.on_leader = on_leader
        self.curve = curve
        self.heard: dict[str, tuple[int, float]] = {}  # address -> (epoch, when)
        self._thread: threading.Thread | None = None

    def start(self) -> LeaderFinder:
        self._ctx = zmq.Context()
        self._stop_r, self._stop_w = sockets.wake_pipe()
        self._thread = threading.Thread(target=self._run, name="actorq-leader", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        sockets.poke(self._stop_w)
        self._thread.join(timeout=2)
        self._ctx.term()
        os.close(self._stop_r)
        os.close(self._stop_w)

    def choose(self, now: float) -> str | None:
        """The address to move to, if a broker answered under a higher epoch than the
        current one's (or the current one never answered)."""
        fresh = [(epoch, addr) for addr, (epoch, when) in self.heard.items()
                 if now - when < FRESH_S]
        if not fresh:
            return None
        epoch, best = max(fresh)
        if best == self.current:
            return None
        mine = self.heard.get(self.current, (-1, 0.0))[0]
        return best if epoch > mine else None

    def _probe_socket(self, address: str) -> zmq.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        if self.curve is not None:
            self.curve.apply(sock)
        sock.setsockopt(zmq.IDENTITY, b"probe-" + os.urandom(12).hex().encode())
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 4)
        sock.setsockopt(zmq.RECONNECT_IVL, int(RECONNECT_S * 1000))
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, int(RECONNECT_S * 1000))
        sock.connect(address)
        return sock

    def _run(self) -> None:
        probes = {self._probe_socket(a): a for a in self.addresses}
        poller = zmq.Poller()
        for sock in probes:
            poller.register(sock, zmq.POLLIN)
        poller.register(self._stop_r, zmq.POLLIN)
        decoder = msgspec.msgpack.Decoder(p.ToProber)
        due = dict.fromkeys(probes, 0.0)
        probe = p.encode(p.Probe())
        try:
            while True:
                now = time.monotonic()
                for sock, addr in probes.items():
                    if now >= due[sock]:
                        try:
                            sock.send(probe, sockets.NOBLOCK)
                            due[sock] = now + (PROBE_CURRENT_S if addr == self.current
                                               else PROBE_S)
                        except zmq.Again:  # no broker there (yet): ask again soon
                            due[sock] = now + PROBE_S
                events = dict(poller.poll(PROBE_S * 1000))
                if self._stop_r in events:
                    return
                now = time.monotonic()
                for sock in events:
                    if sock in probes:
                        self._read(sock, probes[sock], decoder, now)
                move = self.choose(now)
                if move is not None:
                    log.warning("the broker at %s leads now (epoch %d); moving there from %s",
                                move, self.heard[move][0], self.current)
                    self.current = move
                    self.on_leader(move)
        finally:
            for sock in probes:
                sock.close(linger=0)

    def _read(self, sock: zmq.Socket, address: str, decoder: msgspec.msgpack.Decoder,
              now: float) -> None:
        while True:
            try:
                data = sock.recv(sockets.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = decoder.decode(data)
            except msgspec.DecodeError:
                continue
            if isinstance(msg, p.Leader):
                self.heard[address] = (msg.epoch, now)
