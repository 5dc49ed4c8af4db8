"""How a broker on a shared PostgreSQL store comes to lead it (storage/leadership.py).

A broker that finds the lease held reports itself a standby to its node and waits;
nothing binds before it leads, so a standby is invisible to clients and workers,
which find the leader by its answer (wire/leader.py).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, NoReturn

from actorq.node import actor
from actorq.node.config import StorageConfig
from actorq.node.specs import DEPOSED
from actorq.storage.leadership import Lease, holder_name

if TYPE_CHECKING:
    from actorq.storage.postgres import PostgresStore

RECONNECT_S = 1.0  # how often a broker tries a database it cannot reach

log = logging.getLogger("actorq.broker.loop")


def lead(store: PostgresStore, lease_s: float, signals: actor.Signals) -> Lease | None:
    """Take the shared store's leadership, waiting as a standby while another broker
    holds it; None if told to stop first. Nothing binds before this returns: a
    standby is invisible to clients and workers, which find the leader by its answer."""
    lease = Lease(store.url, store.holder, lease_s, store.path)
    if not lease.try_take():
        actor.report_ready({"standby": True}, final=False)
        if not lease.wait(lambda: signals.stop):
            lease.close()
            return None
    lease.keep()
    store.fence = lease
    log.info("broker %s leads %s (epoch %d)", lease.name, store.path, lease.epoch)
    return lease


def open_shared(storage: StorageConfig, signals: actor.Signals) -> PostgresStore | None:
    """The shared store, waiting while the database cannot be reached (a host cut
    off, a server restarting): giving up would have the node start this broker
    again and again until its restart intensity ran out. None if told to stop."""
    from actorq.storage.postgres import PostgresStore, Unreachable

    holder = holder_name()  # its sessions carry it, for a broker taking over to end them
    said = False
    while not signals.stop:
        try:
            return PostgresStore(storage.url, storage.synchronous, storage.lease, holder)
        except Unreachable as exc:
            if not said:
                log.warning("%s; trying again every %g s", exc, RECONNECT_S)
                said = True
            time.sleep(RECONNECT_S)
    return None


def step_down(lease: Lease, instance: str, sockets, why: str = "") -> NoReturn:
    """The broker no longer leads, or may not: stop at once. Nothing held is sent (the
    new leader has what was committed, and clients resend the rest), and nothing
    more is written. The node starts this broker again, as a standby."""
    if not why:
        why = ("another broker took the lease" if lease.deposed else
               f"the lease was not renewed for {lease.lease_s:g} s")
    log.error("broker %s no longer leads (epoch %d): %s; stopping without sending "
              "anything uncommitted", instance, lease.epoch, why)
    for sock in sockets:
        sock.close(linger=0)
    logging.shutdown()
    # Threads may be stuck in a call to a database that is cut off: exit now.
    os._exit(DEPOSED)
