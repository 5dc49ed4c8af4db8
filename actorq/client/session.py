"""The client's logic without I/O, shared by Client and AsyncClient.

It builds and validates task specs, batches what is to be sent, applies what the
broker answers to the handles waiting on it, and notices a restarted broker.
The two clients only move bytes and wake waiters.

Task ids come from ids.py. The routing identity is random, and appears in no id:
it is what the broker sends a client's results to, so knowing a task id gives
nobody a way to receive them.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any


from actorq.client.building import SpecBuilder
from actorq.client.ids import TaskIds
from actorq.client.pressure import RETRIED, Pressure
from actorq.errors import BrokerUnavailable, RequestRejected, SubmitRejected
from actorq.node.config import DEFAULT_MAX_PAYLOAD_BYTES
from actorq.wire import protocol as p

if TYPE_CHECKING:
    from actorq.client.handles import HandleBase

SUBMIT_BATCH = 1000  # tasks per Submit message at most
PIPELINE_CHUNK = 5000  # submit_many hands this many tasks at a time to the sender
SUBMIT_OVERHEAD_BYTES = 128  # per task, beyond its payload, when sizing a batch
PING_INTERVAL_S = 1.0  # how often a client checks the broker is there and unchanged
SILENCE_LIMIT_S = 30.0  # a broker silent this long fails every wait with BrokerUnavailable
UNSERVED_WARN_EVERY_S = 60.0  # how often a client repeats that a queue has no consumer

log = logging.getLogger("actorq.client")


class Request:
    """A request awaiting its reply (status, cancel, stats)."""

    __slots__ = ("reply", "error", "future")

    def __init__(self) -> None:
        self.reply: Any = None
        self.error: Exception | None = None
        self.future: Any = None


class Session(SpecBuilder):
    def __init__(self, address: str, pressure: Pressure | None = None) -> None:
        self.address = address
        self.identity = f"c-{secrets.token_hex(16)}".encode()
        self.ids = TaskIds()
        self.pressure = pressure or Pressure()
        self.warned: dict[str, float] = {}  # queue -> when we last said nobody consumes it
        self._req = itertools.count(1)
        self.outbox: deque[p.TaskSpec] = deque()
        self.control: deque[object] = deque()  # messages, or requests already encoded
        self.handles: dict[str, HandleBase] = {}  # waiting for an outcome
        # More handles waiting on an id that already has one (idempotency keys).
        self.also: dict[str, list[HandleBase]] = {}
        self.unacked: dict[str, p.TaskSpec] = {}  # sent or queued, not yet accepted
        self.requests: dict[int, Request] = {}
        self.completed: list[HandleBase] = []  # done since the driver last looked
        self.answered: list[Request] = []  # likewise for requests
        self.instance: str | None = None
        self.max_payload_bytes = DEFAULT_MAX_PAYLOAD_BYTES
        self.durable = False  # the broker said its tasks survive its restart
        self.last_heard = time.monotonic()
        self.next_ping = 0.0
        # A submission someone waits on the acknowledgement of is queued: the next
        # Submit asks for its acks at once (see p.Submit.ack_later).
        self.ack_wanted = False
        self.control.append(p.Hello(version=p.PROTOCOL_VERSION, role="client"))

    def congested(self) -> bool:
        """Whether submit() should wait (pressure.py). The byte count is kept by more
        than one thread without a lock, so it may drift: past the cap it is counted
        afresh before anyone waits on it."""
        pressure = self.pressure
        if pressure.unacked_bytes > pressure.max_unacked_bytes:
            unacked = self.unacked.copy()
            pressure.unacked_bytes = (sum(len(s.payload) for s in unacked.values())
                                      + SUBMIT_OVERHEAD_BYTES * len(unacked))
        return pressure.congested()

    def add(self, spec: p.TaskSpec, handle: HandleBase) -> None:
        self.handles[spec.id] = handle
        self.unacked[spec.id] = spec
        self.pressure.unacked_bytes += len(spec.payload) + SUBMIT_OVERHEAD_BYTES
        if spec.opts is not None and needs_ack(spec):
            self.ack_wanted = True  # set before the spec is in the outbox
        self.outbox.append(spec)

    def add_many(self, specs: list[p.TaskSpec], handles: list[HandleBase]) -> None:
        """add() for a batch, in the same order: handles and unacked before the outbox,
        so the I/O thread never sends a spec it could not match an answer to. Each
        step is one C-level call, never interrupted by the I/O thread."""
        ids = [spec.id for spec in specs]
        self.handles.update(zip(ids, handles))
        self.unacked.update(zip(ids, specs))
        self.pressure.unacked_bytes += (sum([len(spec.payload) for spec in specs])
                                        + SUBMIT_OVERHEAD_BYTES * len(specs))
        if any(spec.opts is not None and needs_ack(spec) for spec in specs):
            self.ack_wanted = True
        self.outbox.extend(specs)

    def want_acks(self) -> None:
        """flush(): have the broker send what it acknowledged now, not with outcomes."""
        self.ack_wanted = True
        if self.unacked:
            self.control.append(p.Ping())

    def request(self, make: Any) -> tuple[int, Request]:
        """Queue a request; encoded here, so a value the wire cannot carry (an int past
        64 bits) fails this caller with RequestRejected instead of every later send."""
        req = next(self._req)
        try:
            frame = p.encode(make(req))
        except (OverflowError, TypeError) as exc:
            raise RequestRejected("bad_option", f"the request cannot be encoded: {exc}") from None
        slot = self.requests[req] = Request()
        self.control.append(frame)
        return req, slot

    def watch(self, handle: HandleBase) -> None:
        self.handles[handle.id] = handle
        self.control.append(p.Watch([handle.id]))

    # ---- output ----------------------------------------------------------------------

    def take_messages(self, now: float) -> list[bytes]:
        """Everything due to go out now, encoded, batched."""
        # Submissions go first: a status, watch or cancel request made after a
        # submit must reach the broker after it.
        out: list[bytes] = []
        outbox = self.outbox
        pressure = self.pressure
        if pressure.refused:
            again, expired = pressure.due(now)
            outbox.extendleft(reversed(again))
            for spec in expired:
                self._refused(spec.id, SubmitRejected(pressure.code, pressure.reason, spec.id))
        budget = self.max_payload_bytes
        later = not self.ack_wanted
        self.ack_wanted = False
        while outbox:
            n = min(len(outbox), SUBMIT_BATCH)
            batch = [outbox.popleft() for _ in range(n)]
            if sum(len(s.payload) + len(s.name) for s in batch) + n * SUBMIT_OVERHEAD_BYTES <= budget:
                out.append(p.encode(p.Submit(batch, later)))
                continue
            # Large payloads: split so every message stays under the broker's limit.
            outbox.extendleft(reversed(batch))
            batch = []
            size = 0
            while outbox and len(batch) < SUBMIT_BATCH:
                spec = outbox[0]
                cost = len(spec.payload) + len(spec.name) + SUBMIT_OVERHEAD_BYTES
                if batch and size + cost > budget:
                    break
                batch.append(outbox.popleft())
                size += cost
            out.append(p.encode(p.Submit(batch, later)))
        control = self.control
        while control:  # popleft, not iteration: user threads may append meanwhile
            item = control.popleft()
            out.append(item if item.__class__ is bytes else p.encode(item))
        if now >= self.next_ping:
            self.next_ping = now + PING_INTERVAL_S
            out.append(p.encode(p.Ping()))
        return out

    # ---- input -----------------------------------------------------------------------

    def _done(self, handle: HandleBase) -> None:
        self.completed.append(handle)

    def on_message(self, msg: object, now: float) -> None:
        self.last_heard = now
        match msg:
            case p.Outcomes(items=items, accepted=accepted):
                if accepted is not None:
                    self._accepted(accepted)
                # One per finished task: the methods are looked up once a message.
                take_handle = self.handles.pop
                unacked_pop = self.unacked.pop
                settled = self.completed.append
                also = self.also
                for out in items:
                    tid = out.id
                    h = take_handle(tid, None)
                    if h is not None:
                        h._outcome = out
                        spec = unacked_pop(tid, None)
                        if spec is not None:  # its ack was held to come with it
                            self.pressure.unacked_bytes -= (len(spec.payload)
                                                            + SUBMIT_OVERHEAD_BYTES)
                        settled(h)
                        if also:
                            for extra in also.pop(tid, ()):
                                extra._outcome = out
                                settled(extra)
            case p.Accepted() as accepted:
                self._accepted(accepted)
            case p.Rejected(items=items):
                for r in items:
                    spec = self.unacked.get(r.id)
                    if spec is not None and r.code in RETRIED:  # sent again later
                        self.pressure.refuse(spec, r.code, r.message, now)
                        continue
                    self._refused(r.id, SubmitRejected(r.code, r.message, r.id))
            case (p.Infos(req=req) | p.CancelReply(req=req) | p.StatsReply(req=req)
                  | p.Done(req=req) | p.CronsReply(req=req) | p.Page(req=req)
                  | p.Listing(req=req) | p.Count(req=req)):
                slot = self.requests.pop(req, None)
                if slot is not None:
                    slot.reply = msg
                    self.answered.append(slot)
            case p.Pong(instance=instance):
                self._check_instance(instance)
            case p.Welcome() as w:
                self.max_payload_bytes = w.max_payload_bytes
                self.durable = w.durable
                self._check_instance(w.instance)
            case p.Error(code=code, message=message, req=req):
                err: Exception = (BrokerUnavailable(message) if code == "protocol_version"
                                  else SubmitRejected(code, message))
                slot = self.requests.pop(req, None) if req else None
                if slot is not None:
                    slot.error = err
                    self.answered.append(slot)
                elif code == "protocol_version":
                    self.fail_all(err)

    def _refused(self, tid: str, err: SubmitRejected) -> None:
        spec = self.unacked.pop(tid, None)
        if spec is not None:
            self.pressure.unacked_bytes -= len(spec.payload) + SUBMIT_OVERHEAD_BYTES
        h = self.handles.pop(tid, None)
        if h is not None:
            h._error = err
            self._done(h)

    def _accepted(self, msg: p.Accepted) -> None:
        # Checked before the ids are applied: at an instance change, every handle
        # no longer unacked was acknowledged by the old broker.
        self._check_instance(msg.instance)
        pop = self.unacked.pop
        pressure = self.pressure
        size = 0
        for tid in msg.ids:
            spec = pop(tid, None)
            if spec is not None:
                size += len(spec.payload) + SUBMIT_OVERHEAD_BYTES
        pressure.unacked_bytes -= size
        if msg.ids and pressure.full_since is not None:
            pressure.accepted()
        for new, first in msg.aliases.items():
            self._alias(new, first)
        if msg.unserved:
            self._warn_unserved(msg.unserved)

    def _warn_unserved(self, queues: list[str]) -> None:
        """Tasks went to a queue no live worker consumes: say so, once a while per queue."""
        now = time.monotonic()
        for queue in queues:
            if now - self.warned.get(queue, -UNSERVED_WARN_EVERY_S) >= UNSERVED_WARN_EVERY_S:
                self.warned[queue] = now
                log.warning("queue %r has no live worker consuming it: tasks submitted to "
                            "it wait until a worker serving it connects", queue)

    def _alias(self, new: str, first: str) -> None:
        """A submission with an idempotency key the broker already held: its handle
        becomes a handle of the first task."""
        h = self.handles.pop(new, None)
        if h is None:
            return
        h.id = first
        if first in self.handles:
            self.also.setdefault(first, []).append(h)
        else:
            self.handles[first] = h

    def _check_instance(self, instance: str) -> None:
        old = self.instance
        self.instance = instance
        if old is None or old == instance:
            return
        # A new broker: tasks the old one accepted died with its memory. Say so now
        # rather than let anyone wait forever. Submissions it never acknowledged are
        # sent again (ids make that idempotent).
        if self.durable:
            # The new broker recovered what the old one acknowledged: ask it again for
            # the outcomes this client waits on.
            # Copies (atomic under the GIL): user threads may add handles meanwhile.
            unacked = self.unacked.copy()
            waiting = [tid for tid in self.handles.copy() if tid not in unacked]
            for i in range(0, len(waiting), SUBMIT_BATCH):
                self.control.append(p.Watch(waiting[i:i + SUBMIT_BATCH]))
        for tid, h in self.handles.copy().items() if not self.durable else ():
            if tid not in self.unacked:
                del self.handles[tid]
                for lost in (h, *self.also.pop(tid, ())):
                    lost._error = BrokerUnavailable(
                        f"the broker restarted (instance {old} -> {instance}) and task {tid} "
                        "was lost with its in-memory state")
                    self._done(lost)
        self.pressure.refused = []  # all of unacked goes again, these with it
        if self.unacked:
            self.outbox.extendleft(reversed(self.unacked.copy().values()))
        for req, slot in list(self.requests.items()):
            slot.error = BrokerUnavailable(f"the broker restarted before answering request {req}")
            self.answered.append(slot)
            del self.requests[req]

    def moved(self, address: str) -> None:
        """The client talks to another broker now (the leader of a shared store): say
        hello, so that its Welcome (a new instance) sends again what is unacknowledged
        and asks again for the outcomes waited on (_check_instance)."""
        self.address = address
        self.control.append(p.Hello(version=p.PROTOCOL_VERSION, role="client"))

    def outstanding(self) -> bool:
        """Whether anything is still to be sent or heard about."""
        return bool(self.handles or self.requests or self.unacked or self.outbox
                    or self.control)

    def check_silence(self, now: float) -> None:
        """Fail every wait when the broker has been silent too long (pings go unanswered)."""
        if now - self.last_heard < SILENCE_LIMIT_S or not (self.handles or self.requests):
            return
        self.fail_all(BrokerUnavailable(
            f"no answer from the broker at {self.address} for {now - self.last_heard:.0f} s"))

    def fail_all(self, err: Exception) -> None:
        # popitem, not iteration: user threads may add handles meanwhile (sync Client).
        while self.handles:
            try:
                _, h = self.handles.popitem()
            except KeyError:
                break
            h._error = err
            self._done(h)
        while self.also:
            try:
                _, extra = self.also.popitem()
            except KeyError:
                break
            for h in extra:
                h._error = err
                self._done(h)
        self.unacked.clear()
        self.pressure.unacked_bytes = 0
        self.pressure.refused = []
        while self.requests:
            try:
                _, slot = self.requests.popitem()
            except KeyError:
                break
            slot.error = err
            self.answered.append(slot)
        self.outbox.clear()


def needs_ack(spec: p.TaskSpec) -> bool:
    """Options only the broker can check (a dependency exists, a key is taken): submit()
    waits for the broker's answer so that a bad one raises there, and a keyed
    submission returns the handle of the task holding the key."""
    o = spec.opts
    return o is not None and (o.depends_on is not None or o.key is not None)


def deadline_after(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
