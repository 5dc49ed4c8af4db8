"""The broker's authenticator: who may connect with CurveZMQ, and in which role.

libzmq asks a ZAP handler (RFC 27) about every CURVE handshake on a socket that has
a ZAP domain; without one it lets any key in, so the broker starts this before it
binds and refuses to start without it. Each endpoint has its own domain and
allow-list:

    clients  client keys (role "s": submit and act on their own tasks) and
             admin keys (role "a": every task and operator command)
    workers  worker keys: workers, supervisors and the scheduler

The node's own key (the broker's pair, used by its gateway, scheduler and local
pools) is allowed on both, as an admin. An accepted handshake's user id is the role
letter and the z85 public key ("a" + 40 characters); the broker reads it from every
client message (ZMQ's "User-Id" property) to know who sends it.

pyzmq's zmq.auth authenticator answers the same requests, but it keeps one list
per domain with no roles and does not let a refusal be logged with the peer's
address at a bounded rate, which is most of what it would do here.
"""

from __future__ import annotations

import logging
import threading
import time

import zmq
from zmq.utils import z85

from actorq.node.ratelog import Throttle, swallowed_note

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
CLIENTS, WORKERS = "clients", "workers"  # the ZAP domains of the two endpoints
ADMIN, SUBMIT = "a", "s"


class Authenticator:
    def __init__(self, ctx: zmq.Context, *, own: bytes, admins: set[bytes],
                 submitters: set[bytes], workers: set[bytes]) -> None:
        roles = dict.fromkeys(submitters, SUBMIT)
        roles.update(dict.fromkeys(admins | {own}, ADMIN))
        self.roles = {CLIENTS: roles, WORKERS: dict.fromkeys(workers | {own}, ADMIN)}
        self.refusals = Throttle()
        self.refused_total = 0
        self._sock = ctx.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(ZAP_ENDPOINT)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="zap", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def _serve(self) -> None:
        sock = self._sock
        while not self._stop.is_set():
            if not sock.poll(200):
                continue
            request = sock.recv_multipart()
            try:
                reply = self.answer(request)
            except Exception:  # noqa: BLE001 (a refusal, never a dead authenticator)
                log.exception("authenticator failed on a request; refusing it")
                reply = [b"1.0", request[1] if len(request) > 1 else b"", b"500",
                         b"internal error", b"", b""]
            sock.send_multipart(reply)

    def answer(self, request: list[bytes]) -> list[bytes]:
        """The ZAP reply to one request (frames as RFC 27 numbers them)."""
        if len(request) < 6:
            return [b"1.0", request[1] if len(request) > 1 else b"", b"400",
                    b"malformed request", b"", b""]
        version, request_id, domain, address, _identity, mechanism = request[:6]
        credentials = request[6:]
        where = domain.decode(errors="replace")
        if version != b"1.0" or mechanism != b"CURVE" or len(credentials) != 1:
            return self._refuse(request_id, where, address, "not a CURVE handshake")
        key = z85.encode(credentials[0])
        role = self.roles.get(where, {}).get(key)
        if role is None:
            return self._refuse(request_id, where, address,
                                f"key {key.decode()} is not on the {where} allow-list")
        return [b"1.0", request_id, b"200", b"OK", (role + key.decode()).encode(), b""]

    def _refuse(self, request_id: bytes, domain: str, address: bytes, why: str) -> list[bytes]:
        self.refused_total += 1
        peer = address.decode(errors="replace")
        swallowed = self.refusals.admit((domain, peer, why), time.monotonic())
        if swallowed is not None:
            log.warning("refused a connection to the %s endpoint from %s: %s%s", domain, peer,
                        why, swallowed_note(swallowed, self.refusals))
        return [b"1.0", request_id, b"400", why.encode()[:255], b"", b""]
