"""The broker actor: the socket loop around BrokerState.

One turn: poll (timeout = next timer) -> drain every readable socket (bounded) ->
hand each message to the state -> tick timers -> dispatch -> flush one message
per peer and kind. All logic lives in state/ (BrokerState); this file only moves frames.
With storage, a turn's messages (but leases) wait for the commit of its changes,
which runs on the Committer's thread while the next turns go on.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import NoReturn

import msgspec
import zmq

from actorq.broker.committer import Committer
from actorq.broker.leading import lead, open_shared, step_down
from actorq.broker.spinpoll import SpinPoll
from actorq.broker.state import BrokerState, Outbox
from actorq.broker.state.access import MAX_BOUND_PEERS
from actorq.broker.zap import ADMIN, CLIENTS, WORKERS, Authenticator
from actorq.node import actor
from actorq.node.config import BrokerConfig, CronConfig, SecurityConfig
from actorq.node.ratelog import Throttle, swallowed_note
from actorq.node.specs import CANNOT_START, STORAGE_UNUSABLE, BrokerSpec
from actorq.storage.journal import prepare
from actorq.storage.leadership import Lease
from actorq.storage.sqlite import DiskFull, Store, StorageError, open_store
from actorq.wire import curve, sockets
from actorq.wire import protocol as p
from actorq.wire.payload import encode_args

log = logging.getLogger(__name__)

DRAIN_MAX = 2000  # frames read from one socket per turn, so one busy peer cannot starve the rest
# A turn's refusals wait in its outbox until the turn ends: a flood against a full
# broker (a thousand refusals a frame) ends the turn early rather than hold millions.
REJECTED_PER_TURN = 50_000
DISK_RETRY_S = 1.0  # how often a commit that found the disk full is tried again
# How long an acknowledgement the client is not waiting on (Submit.ack_later) may be
# held to ride with the tasks' outcomes. A no-op task's round trip is well under
# this, so it takes one message to the client instead of two; on this 2-core machine
# the separate Accepted cost 0.08 ms of round-trip p50 (0.44 -> 0.36 ms without it).
ACK_DELAY_S = 0.002
# Frames go one at a time: send_multipart/recv_multipart wrap the same calls in a
# loop of option reads and enum flags (3-4 us a message against 1 here).
NOBLOCK, MORE_NOBLOCK, RCVMORE = sockets.NOBLOCK, sockets.MORE_NOBLOCK, sockets.RCVMORE
EVENTS, POLLIN = sockets.EVENTS, sockets.POLLIN
EHOSTUNREACH = int(zmq.EHOSTUNREACH)
EAGAIN = int(zmq.EAGAIN)


class Broker:
    def __init__(self, cfg: BrokerConfig, cron: list[CronConfig] | None = None,
                 store: Store | None = None, scheduler_secret: str = "",
                 security: SecurityConfig | None = None, lease: Lease | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.lease = lease  # the store's leadership, held by this broker (leadership.py)
        self.max_frame = cfg.max_payload_bytes + p.FRAME_OVERHEAD_BYTES
        self.complaints = Throttle()  # bad frames: one log line per kind and peer a minute
        self.ctx = zmq.Context()
        # With CurveZMQ, the authenticator runs before anything binds: libzmq lets every
        # key in while no ZAP handler is there.
        self.auth: Authenticator | None = None
        keys = None
        if security is not None and security.broker_key:
            keys = curve.read_pair(security.broker_key)
            self.auth = Authenticator(
                self.ctx, own=keys[0], admins=curve.read_allowed(security.admin_keys),
                submitters=curve.read_allowed(security.client_keys),
                workers=curve.read_allowed(security.worker_keys))
            self.auth.start()
        self.bound: dict[bytes, str] = {}  # client route -> the ZAP user id it spoke with
        # A frame over the payload limit plus the envelope is refused by ZeroMQ before it
        # is held (MAXMSGSIZE drops the connection): memory per connection is bounded.
        # A task over the payload limit in a frame under this one gets too_large.
        self.clients = sockets.router(self.ctx, cfg.bind, self.max_frame, handover=False,
                                      curve=keys, zap_domain=CLIENTS)
        self.workers = sockets.router(self.ctx, cfg.worker_bind, self.max_frame,
                                      handover=True, curve=keys, zap_domain=WORKERS)
        self.state = BrokerState(
            now=time.monotonic(),
            wall_offset=time.time() - time.monotonic(),
            max_payload_bytes=cfg.max_payload_bytes,
            max_queued=cfg.max_queued,
            max_queued_bytes=cfg.max_queued_bytes,
            heartbeat_interval_s=cfg.heartbeat_interval,
            heartbeat_liveness=cfg.heartbeat_liveness,
            result_ttl_s=cfg.result_ttl,
            max_deliveries=cfg.max_deliveries,
            kill_grace_s=cfg.kill_grace,
            crons=[p.CronEntry(c.name, c.schedule, c.task, encode_args(c.args, c.kwargs),
                               c.queue, c.priority) for c in cron or ()],
            durable=store is not None,
            scheduler_secret=scheduler_secret,
            epoch=lease.epoch if lease is not None else 0,
            leader=lease.name if lease is not None else "",
        )
        if store is not None:
            t0 = time.monotonic()
            # A million rows become a million objects: the cyclic GC would walk the
            # growing heap again and again (1.6 s of 7 at 1M rows); nothing made here
            # forms a cycle.
            gc.disable()
            try:
                rows, crons = store.load()
                self.state.recover(rows, crons, time.monotonic())
                del rows
            finally:
                gc.enable()
            log.info("recovered from %s in %.2f s", store.path, time.monotonic() - t0)
        self.state.process_usage = actor.process_usage
        self.client_decoder = p.decoder(p.ClientToBroker)
        self.worker_decoder = p.decoder(p.WorkerToBroker)
        self.again = False
        self.heap = actor.HeapTrimmer()
        self.committer = Committer(store) if store is not None else None
        self.acks: dict[bytes, p.Accepted] = {}  # held acknowledgements (see ACK_DELAY_S)
        self.acks_due = 0.0  # when the oldest of them must go
        self.held: list[Outbox] = []  # turns' outboxes whose changes are not yet committed
        self.in_flight: list[Outbox] = []  # those the commit now running covers
        self.disk_retry_at = 0.0  # when a commit that found the disk full goes again

    def endpoints(self) -> dict[str, str]:
        return {"bind": sockets.endpoint_of(self.clients),
                "worker_bind": sockets.endpoint_of(self.workers)}

    def run(self, signals: actor.Signals) -> int:
        state = self.state
        poller = zmq.Poller()
        poller.register(self.clients, zmq.POLLIN)
        poller.register(self.workers, zmq.POLLIN)
        poller.register(signals.fd, zmq.POLLIN)
        committer = self.committer
        if committer is not None:
            poller.register(committer.fd, zmq.POLLIN)
        lease = self.lease
        if lease is not None:
            poller.register(lease.fd, zmq.POLLIN)
        log.info("broker %s listening: clients %s, workers %s", state.instance,
                 *self.endpoints().values())
        actor.report_ready(self.endpoints())
        spin = SpinPoll(poller, self.cfg.spin_us / 1e6)
        near = False  # the last turn makes an answer likely soon (Outbox.handoff)
        while not signals.stop:
            now = time.monotonic()
            deadline = min(state.next_deadline(), self.acks_due) if self.acks else state.next_deadline()
            if committer is not None and committer.stalled is not None:
                deadline = min(deadline, self.disk_retry_at)
            if lease is not None:
                if not lease.valid(now):
                    return self._deposed()
                deadline = min(deadline, lease.renewed_at + lease.lease_s)
            timeout_ms = 0 if self.again else max(0.0, deadline - now) * 1000
            self.again = False
            events = spin.poll(self.heap.poll_timeout(timeout_ms), near)
            if not events:
                self.heap.idle()
            now = time.monotonic()
            if lease is not None and not lease.valid(now):  # e.g. woken after a pause
                return self._deposed()
            if self.acks and now >= self.acks_due:
                self._release_acks(list(self.acks))
            if committer is not None:
                if committer.fd in events:
                    try:
                        self._commit_done(committer, now)
                    except StorageError as exc:
                        if lease is None:
                            raise
                        # Deposed, or a commit that may or may not have landed (the
                        # session ended by a broker that took over, a partition): either
                        # way, what it covered is not ours to acknowledge.
                        return self._deposed(str(exc))
                if committer.stalled is not None and now >= self.disk_retry_at:
                    committer.retry()
            if self.clients in events:
                self._drain(self.clients, self.client_decoder, state.on_client, False, now,
                            self.auth is not None)
            if self.workers in events:
                self._drain(self.workers, self.worker_decoder, state.on_worker, True, now)
            if signals.fd in events:
                signals.clear()
                if signals.drain and not state.draining:
                    log.info("draining: new submissions are refused")
                    state.draining = True
            state.tick(now)
            state.dispatch(now)
            out = state.take_outbox()
            near = out.handoff
            if committer is None:
                self._flush(out)
            else:
                self._commit_then_send(committer, out)
        self._stop(spin)
        return 0

    def _deposed(self, why: str = "") -> NoReturn:
        """Another broker leads now, or may: stop at once (leading.step_down)."""
        return step_down(self.lease, self.state.instance, (self.clients, self.workers), why)

    def _commit_then_send(self, committer: Committer, out: Outbox) -> None:
        """Group commit: what a turn decided leaves only once the transaction holding
        its changes is committed. With a commit already running, this turn's changes
        and outbox wait for the next one (see committer.py).

        Leases are an exception: they promise nothing to a client, and a task whose
        lease was not yet committed when the broker died runs again after recovery,
        as one whose worker died would (at least once). Holding them would leave
        the workers idle for every commit. Refusals are the other: they promise
        nothing either, and a client must hear them while a full disk holds the rest."""
        if out.dispatch:
            self._dispatch(out)
        if out.rejected:
            for peer, items in out.rejected.items():
                self._send(self.clients, peer, p.Rejected(items))
            out.rejected = {}
        if out:
            self.held.append(out)
        if committer.busy or committer.stalled is not None:
            return
        state = self.state
        if state.journal_leases():
            self.again = True  # one more turn writes them even if nothing else happens
        if state.journal:
            committer.start(prepare(state.take_journal(), state.scheduled))
            self.in_flight, self.held = self.held, []
        else:
            self._flush_all(self.held)  # nothing uncommitted behind them

    def _commit_done(self, committer: Committer, now: float) -> None:
        """A commit ended: send what it covered; or, the disk being full, refuse new
        work and try again every DISK_RETRY_S, holding what waits on it."""
        state = self.state
        try:
            if not committer.finished():
                return
        except DiskFull as exc:
            if not state.storage_full:
                log.error("%s: the disk is full; new submissions are refused (disk_full) "
                          "and nothing is acknowledged until a commit succeeds; trying "
                          "again every %g s", exc, DISK_RETRY_S)
            state.storage_full = True
            self.disk_retry_at = now + DISK_RETRY_S
            return
        if state.storage_full:
            log.warning("storage: a commit succeeded again; submissions are taken again")
            state.storage_full = False
        self._flush_all(self.in_flight)

    def _flush_all(self, outboxes: list[Outbox]) -> None:
        for out in outboxes:
            self._flush(out)
        outboxes.clear()

    def _drain(self, sock: zmq.Socket, decoder: msgspec.msgpack.Decoder, handle, from_worker: bool,
               now: float, keyed: bool = False) -> None:
        """Read and handle what waits on one socket. `keyed`: each message's CurveZMQ
        user id (role and key, broker/zap.py) says who sends it."""
        bound = self.bound
        recv, get = sock.recv, sock.getsockopt
        received = 0
        state = self.state
        enough = state.rejected_total + REJECTED_PER_TURN
        for n in range(DRAIN_MAX):
            if state.rejected_total > enough:
                self.again = True
                break
            # Asking is cheaper than the Again exception that would end the loop, and
            # a turn usually finds one message (poll said the first one is there).
            if n == 1 and not get(EVENTS) & POLLIN:
                break
            try:
                peer = recv(NOBLOCK)  # a ROUTER's first frame, always followed by one
            except zmq.Again:
                break
            if keyed:
                frame = recv(NOBLOCK, copy=False)
                data = frame.buffer
                user = frame.get("User-Id")
                if bound.get(peer) != user:
                    self._bind(peer, user)
            else:
                data = recv(NOBLOCK)
            if get(RCVMORE):
                frames = 2
                while get(RCVMORE):
                    recv(NOBLOCK)
                    frames += 1
                self._bad_frame(peer, from_worker, "multi-part frame", f"expected 1 frame "
                                f"after the routing id, got {frames - 1}", now)
                continue
            received += len(data)
            try:
                msg = decoder.decode(data)
            except msgspec.DecodeError as exc:
                self._bad_frame(peer, from_worker, "undecodable frame",
                                f"undecodable message: {exc}", now)
                continue
            handle(peer, msg, now)
        else:
            self.again = True  # more may be waiting; come straight back after this turn
        self.heap.received += received

    def _bind(self, peer: bytes, user: str) -> None:
        """A client route speaks with this key (and role) now."""
        if len(self.bound) >= MAX_BOUND_PEERS:
            self.bound.clear()  # the state forgets its bindings at the same count
        self.bound[peer] = user
        self.state.bind_principal(peer, user[1:].encode(), user[:1] == ADMIN)

    def _bad_frame(self, peer: bytes, from_worker: bool, kind: str, reason: str,
                   now: float) -> None:
        """Answer and count a bad frame; say so in the log, once a minute per kind and peer."""
        self.state.bad_frame(peer, from_worker, reason)
        swallowed = self.complaints.admit((kind, peer), now)
        if swallowed is not None:
            log.warning("%s from %s %s: %s%s", kind, "worker" if from_worker else "client",
                        peer.hex(), reason[:200], swallowed_note(swallowed, self.complaints))

    def _send(self, sock: zmq.Socket, peer: bytes, msg: object) -> bool:
        data = p.encode(msg)
        try:
            sock.send(peer, MORE_NOBLOCK)  # where a ROUTER fails, if it does
            sock.send(data, NOBLOCK)
            return True
        except zmq.ZMQError as exc:
            if exc.errno == EHOSTUNREACH:
                if sock is self.workers:
                    self.state.peer_unreachable(peer, time.monotonic())
                    self.again = True
            elif exc.errno == EAGAIN:  # a peer that does not read: once a minute, not per message
                swallowed = self.complaints.admit(("not reading", peer), time.monotonic())
                if swallowed is not None:
                    log.warning("peer %s is not reading; dropped a %s%s", peer.hex()[:64],
                                type(msg).__name__, swallowed_note(swallowed, self.complaints))
            else:
                raise
            return False

    def _dispatch(self, out: Outbox) -> None:
        """Send an outbox's leases (and only those), taking them out of it."""
        more = out.more
        for peer, leases in out.dispatch.items():
            self._send(self.workers, peer, p.Dispatch(leases, peer in more))
        out.dispatch = {}

    def _flush(self, out: Outbox) -> None:
        if not out:
            return
        send, clients, workers = self._send, self.clients, self.workers
        instance = self.state.instance
        # Workers first: a dispatch is on the latency path of a task, an ack is not.
        if out.dispatch:
            self._dispatch(out)
        for peer, msg in out.to_workers:
            send(workers, peer, msg)
        acks = self.acks
        for peer, ids in out.accepted.items():
            if not ids:
                continue
            held = acks.get(peer)
            if held is None:
                if not acks:
                    self.acks_due = time.monotonic() + ACK_DELAY_S
                acks[peer] = p.Accepted(ids, instance, out.aliases.get(peer, {}),
                                        sorted(out.unserved.get(peer, ())))
            else:
                held.ids.extend(ids)
                if peer in out.aliases:
                    held.aliases.update(out.aliases[peer])
                if peer in out.unserved:
                    held.unserved[:] = sorted(set(held.unserved) | out.unserved[peer])
        if out.ack_now:
            self._release_acks(out.ack_now)
        for peer, items in out.rejected.items():
            send(clients, peer, p.Rejected(items))
        for peer, outcomes in out.outcomes.items():
            send(clients, peer, p.Outcomes(outcomes, acks.pop(peer, None)))
        for peer, msg in out.to_clients:
            if acks and peer in acks:
                # A reply must not overtake the acknowledgement of a submission made
                # before the request: a client that saw its task `running` in a
                # status reply and then lost the broker would otherwise resubmit it.
                self._release_acks((peer,))
            send(clients, peer, msg)

    def _release_acks(self, peers) -> None:
        """Send the held acknowledgements of `peers` on their own."""
        acks = self.acks
        for peer in peers:
            ack = acks.pop(peer, None)
            if ack is not None:
                self._send(self.clients, peer, ack)

    def _stop(self, spin: SpinPoll) -> None:
        """Answer everything pending: clients waiting on tasks this broker will forget hear so."""
        state = self.state
        if self.committer is not None:
            try:
                self.committer.wait()
                if self.committer.stalled is not None:
                    self.committer.retry()
                    self.committer.wait()
                self._flush_all(self.in_flight)
                state.journal_leases()  # both generations: nothing is left for later
                state.journal_leases()
                if state.journal:
                    self.store.commit(state.take_journal(), state.scheduled)
                self._flush_all(self.held)
            except DiskFull as exc:
                # What is not written was not acknowledged either: clients send it
                # again to the next broker, and workers' results come again.
                log.error("%s: stopping with the disk still full; what was not written "
                          "was not acknowledged", exc)
                state.journal = None
            self.committer.close()
        lost = 0
        for task in state.tasks.values() if self.store is None else ():  # durable: kept
            watchers = task.watchers
            if watchers and task.state not in p.FINAL_STATES:
                out = p.Outcome(task.id, "lost",
                                error="the broker stopped and this in-memory task was lost")
                for peer in (watchers,) if isinstance(watchers, bytes) else watchers:
                    state.outbox.outcomes.setdefault(peer, []).append(out)
                lost += 1
        self._flush(state.take_outbox())
        self._release_acks(list(self.acks))
        s = state.stats(time.monotonic())
        log.info("broker %s stopping: submitted=%d finished=%s queued=%d running=%d "
                 "bad_frames=%d stale_results=%d lost_on_stop=%d spins=%d (found an "
                 "answer: %d)", state.instance, s.submitted_total, s.finished_total,
                 state.queued, s.running, s.bad_frames_total, s.stale_results_total, lost,
                 spin.spins, spin.hits)
        if state.journal:
            try:
                self.store.commit(state.journal, state.scheduled)
            except DiskFull as exc:
                log.error("%s: the last changes are not written", exc)
        if self.store is not None:
            self.store.close()
        if self.lease is not None:
            self.lease.close(release=True)
        self.clients.close()
        self.workers.close()
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()


def main(spec: BrokerSpec) -> int:
    actor.die_with_parent()
    signals = actor.Signals(drain_signal=True)
    cfg = spec.config
    store = lease = None
    if spec.storage is not None:
        storage = spec.storage
        try:
            if storage.url:
                store = open_shared(storage, signals)
                lease = lead(store, storage.lease, signals) if store is not None else None
                if lease is None:  # told to stop while waiting
                    if store is not None:
                        store.close()
                    return 0
            else:
                store = open_store(storage.path, storage.synchronous)
        except StorageError as exc:
            log.error("broker cannot use its storage: %s", exc)
            return STORAGE_UNUSABLE
    try:
        broker = Broker(cfg, spec.crons, store, spec.scheduler_secret, spec.security, lease)
    except zmq.ZMQError as exc:
        log.error("broker cannot bind %s / %s: %s", cfg.bind, cfg.worker_bind, exc)
        return CANNOT_START
    except curve.KeyFileError as exc:
        log.error("broker cannot read its keys: %s", exc)
        return CANNOT_START
    return broker.run(signals)
