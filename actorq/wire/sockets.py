"""ZeroMQ sockets as the design wants them, and the helpers every peer shares.

- Broker ROUTERs set ROUTER_MANDATORY (a send to a vanished peer raises instead of
  vanishing). The worker endpoint also sets ROUTER_HANDOVER (a worker reconnecting
  under its id after a partition is back at once). The client endpoint must not: a
  second connection under a client's id would take over its route and receive its
  results. It sends ZMTP heartbeats instead, so that the route of a client that
  vanished without a word is freed for its reconnection within seconds.
- Every socket has bounded queues and a bounded linger, and DEALERs reconnect
  with a back-off capped at protocol.RECONNECT_MAX_MS.
- Frames go one at a time with plain-int flags (see below), and a wake pipe lets
  one thread wake another's poll.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import msgspec
import zmq

from actorq.wire import protocol
from actorq.wire.curve import ClientCurve

log = logging.getLogger(__name__)

SNDHWM = 100_000  # messages; every message is a batch, so this is rarely near
LINGER_MS = 1000  # on close, how long queued frames may still go out

# Plain ints for every per-message socket call: pyzmq's flags are enums, and an Enum
# `|` or conversion on each call added up to ~1 us apiece, several per round trip.
NOBLOCK = int(zmq.NOBLOCK)
MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
RCVMORE = int(zmq.RCVMORE)
EVENTS = int(zmq.EVENTS)
POLLIN = int(zmq.POLLIN)


def wake_pipe() -> tuple[int, int]:
    """A non-blocking pipe (read end, write end) that one thread pokes to wake
    another's poll."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    return r, w


def poke(fd: int) -> None:
    """Write one byte to a wake pipe; a full pipe is already waking its reader."""
    try:
        os.write(fd, b"x")
    except BlockingIOError:
        pass


def drain(fd: int) -> None:
    """Empty a wake pipe, so that its next poke wakes the poll again."""
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


CLIENT_HEARTBEAT_MS = 1000  # ZMTP pings on the client endpoint ...
CLIENT_HEARTBEAT_TIMEOUT_MS = 5000  # ... and how long a silent connection is kept


def router(ctx: zmq.Context, endpoint: str, max_frame_bytes: int, *,
           handover: bool, curve: tuple[bytes, bytes] | None = None,
           zap_domain: str = "") -> zmq.Socket:
    """A broker ROUTER: sends to vanished peers raise; with `handover`, a peer
    reconnecting under its id takes over at once, else its old connection must go
    first (found dead by heartbeats). With `curve` (the broker's public and secret
    key) it is a CurveZMQ server whose handshakes the authenticator of `zap_domain`
    decides (broker/zap.py)."""
    sock = ctx.socket(zmq.ROUTER)
    if curve is not None:
        sock.curve_server = True
        sock.curve_publickey, sock.curve_secretkey = curve
        sock.zap_domain = zap_domain.encode()
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if handover:
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    else:
        sock.setsockopt(zmq.HEARTBEAT_IVL, CLIENT_HEARTBEAT_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, CLIENT_HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.SNDHWM, SNDHWM)
    sock.setsockopt(zmq.RCVHWM, SNDHWM)
    sock.setsockopt(zmq.MAXMSGSIZE, max_frame_bytes)
    sock.bind(endpoint)
    return sock


def dealer(ctx: zmq.Context, endpoint: str, identity: bytes,
           curve: ClientCurve | None = None, connect: bool = True) -> zmq.Socket:
    """A DEALER to the broker; with `connect=False` the caller connects it (after
    watching its handshake, say)."""
    sock = ctx.socket(zmq.DEALER)
    if curve is not None:
        curve.apply(sock)
    sock.setsockopt(zmq.IDENTITY, identity)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.SNDHWM, SNDHWM)
    sock.setsockopt(zmq.RCVHWM, SNDHWM)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, protocol.RECONNECT_MAX_MS)
    if connect:
        sock.connect(endpoint)
    return sock


def move(sock: zmq.Socket, old: str, new: str) -> None:
    """Point a DEALER at another broker (the leader of a shared store, wire/leader.py):
    what was queued for the old one is dropped, and the caller says hello anew."""
    try:
        sock.disconnect(old)
    except zmq.ZMQError:
        pass  # not connected there: nothing to undo
    sock.connect(new)


def endpoint_of(sock: zmq.Socket) -> str:
    """The resolved endpoint of a bound socket (the real port when bound to `*`)."""
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def send_to_broker(sock: zmq.Socket, msg: object) -> bool:
    """Send one message on a DEALER without blocking. A broker that is not reading
    (high-water mark) costs the message, logged: heartbeats and hellos repeat."""
    try:
        sock.send(protocol.encode(msg), NOBLOCK)
        return True
    except zmq.Again:
        log.warning("broker is not reading; dropped a %s", type(msg).__name__)
        return False


def from_broker(sock: zmq.Socket, decoder: msgspec.msgpack.Decoder) -> Iterator[object]:
    """Every message waiting on a DEALER, decoded; an undecodable one is logged and
    skipped (never sent by a real broker)."""
    while True:
        try:
            data = sock.recv(NOBLOCK)
        except zmq.Again:
            return
        try:
            yield decoder.decode(data)
        except msgspec.DecodeError as exc:
            log.error("undecodable message from the broker: %s", exc)


_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class HandshakeWatch:
    """Why a connection never got an answer, when the ZeroMQ handshake is why: a key
    the broker refused, or one side with CurveZMQ and the other without. Read once, at
    a connect timeout, from the socket's monitor."""

    def __init__(self, sock: zmq.Socket) -> None:
        self._monitor = sock.get_monitor_socket(_HANDSHAKE_FAILED)

    def reason(self) -> str:
        from zmq.utils.monitor import recv_monitor_message

        why = ""
        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                why = ": the broker refused this client's CurveZMQ key (not on its allow-list)"
            elif not why:
                why = (": the handshake failed (does the broker want CurveZMQ keys, key= and "
                       "broker_key=, or is broker_key not its public key?)")
        return why

    def close(self) -> None:
        self._monitor.close(linger=0)
