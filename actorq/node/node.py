"""The node: root of the supervision tree that `actorq run` starts.

It starts the broker first (its resolved endpoints are what everything else
connects to), then the gateway and one supervisor per pool; writes the ready file
once every actor reported ready; restarts any actor that dies (a broker comes back
on the same ports); and on SIGTERM/SIGINT drains in order: the broker stops taking
submissions, supervisors let running tasks finish within the grace period, then
the gateway and the broker stop. It exits 0 with no child left behind.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import time
from pathlib import Path

import zmq

from actorq.node import actor, security
from actorq.node.children import Child, RestartIntensity, wait_all
from actorq.node.config import Config
from actorq.node.specs import (
    STORAGE_UNUSABLE,
    BrokerSpec,
    GatewaySpec,
    SchedulerSpec,
    SupervisorSpec,
)
from actorq.wire.leader import addresses

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0  # for actors with nothing to drain (gateway, broker)
WAITING_NOTE_S = 10.0  # how often a node still waiting for its actors says so


class StartupFailed(Exception):
    pass


class Node:
    def __init__(self, config: Config, ready_file: str | None) -> None:
        self.config = config
        self.ready_file = ready_file
        self.signals = actor.Signals()
        self.signals.watch_children()
        self.children: dict[str, Child] = {}  # name -> child
        self.intensity = RestartIntensity(config.node.max_restarts, config.node.restart_window)
        self.endpoints: dict[str, str] = {}
        self.http_bind: str | None = None
        self.level = config.node.log_level
        self.scheduler_secret = secrets.token_hex(16)  # see BrokerSpec
        self.curve = security.broker_curve(config)  # keys the actors connect with
        security.warn_exposures(config)  # allowed ones: the config refuses the others

    # ---- starting actors -------------------------------------------------------------

    def _start(self, name: str) -> Child:
        cfg = self.config
        if name == "broker":
            child = Child("broker", name, BrokerSpec(config=cfg.broker, crons=cfg.cron,
                                                     storage=cfg.storage,
                                                     scheduler_secret=self.scheduler_secret,
                                                     security=cfg.security),
                          self.level)
        elif name == "scheduler":
            spec = SchedulerSpec(broker=self.endpoints["worker_bind"],
                                 secret=self.scheduler_secret, curve=self.curve)
            child = Child("scheduler", name, spec, self.level)
        elif name == "gateway":
            spec = GatewaySpec(bind=self.http_bind or cfg.http.bind,
                               broker=self.endpoints["bind"],
                               pools={pl.name: pl.bounds[0] for pl in cfg.pools},
                               tokens=cfg.http.tokens,
                               max_body_bytes=cfg.broker.max_payload_bytes + 65536,
                               idle_timeout=cfg.http.idle_timeout, curve=self.curve,
                               tls_cert=cfg.http.tls_cert, tls_key=cfg.http.tls_key)
            child = Child("gateway", name, spec, self.level)
        else:
            pool = next(pl for pl in cfg.pools if f"pool:{pl.name}" == name)
            spec = SupervisorSpec(pool=pool, broker=pool.broker or self.endpoints["worker_bind"],
                                  shutdown_grace=cfg.node.shutdown_grace, log_level=self.level,
                                  curve=self.curve)
            child = Child("supervisor", name, spec, self.level)
        self.children[name] = child
        return child

    def _wait_ready(self, names: list[str], timeout_s: float | None) -> None:
        """Wait for children to report ready; with no timeout, say every so often why."""
        start = time.monotonic()
        next_note = start + WAITING_NOTE_S
        waiting = {n: self.children[n] for n in names}
        standby = False
        while waiting:
            if self.signals.stop:
                raise StartupFailed("stopped during start-up")
            for name, child in list(waiting.items()):
                if child.read_ready():
                    del waiting[name]
                elif child.poll() is not None:
                    raise StartupFailed(f"{name} {child.describe_exit()} during start-up")
            # Actors already up may die while the rest start: a broker that took over a
            # shared store may be deposed at once. They are restarted as when running.
            if not self._reap():
                raise StartupFailed("the restart intensity was used up during start-up")
            broker = self.children.get("broker")
            if broker is not None and "broker" not in waiting:
                broker.read_ready()  # a restarted broker reports again, maybe as a standby
            if broker is not None and broker.standby and not standby:
                # Waiting for another broker's lease to lapse takes as long as it takes.
                standby, timeout_s = True, None
                log.info("the broker is a standby: this node starts the rest once it leads")
                self._write_ready_file(standby=True)
            now = time.monotonic()
            if timeout_s is not None and now - start > timeout_s:
                raise StartupFailed(f"not ready after {timeout_s:g} s: {', '.join(waiting)}")
            if waiting and now >= next_note and not standby:
                next_note = now + WAITING_NOTE_S
                brokers = sorted({a for pl in self.config.pools if pl.broker
                                  for a in addresses(pl.broker)})
                log.warning("still waiting after %.0f s for %s (broker %s not answering?)",
                            now - start, ", ".join(waiting), ", ".join(brokers) or "local")
            if waiting:
                time.sleep(0.02)

    def start(self) -> None:
        cfg = self.config
        if cfg.broker is not None:
            broker = self._start("broker")
            self._wait_ready(["broker"], cfg.node.startup_timeout)
            self.endpoints = dict(broker.ready_info)
            # A restarted broker must come back where everyone is connected, even when
            # the config asked for any free port.
            cfg.broker.bind = self.endpoints["bind"]
            cfg.broker.worker_bind = self.endpoints["worker_bind"]
        names = []
        if cfg.broker is not None:
            names.append("scheduler")
        if cfg.http is not None:
            names.append("gateway")
        names += [f"pool:{pl.name}" for pl in cfg.pools]
        for name in names:
            self._start(name)
        # A worker-only node may well start before its broker (as Celery workers may):
        # it waits for as long as it takes. With a broker of its own, a slow start is a fault.
        self._wait_ready(names, cfg.node.startup_timeout if cfg.broker is not None else None)
        if cfg.http is not None:
            self.http_bind = self.children["gateway"].ready_info["http"]
        self._write_ready_file()
        log.info("node up: broker %s, http %s, pools %s",
                 self.endpoints.get("bind", "(remote)"), self.http_bind or "(none)",
                 [pl.name for pl in cfg.pools])

    def _write_ready_file(self, standby: bool = False) -> None:
        if not self.ready_file:
            return
        info = {
            "pid": os.getpid(),
            "standby": standby,
            "broker": self.endpoints.get("bind"),
            "worker_bind": self.endpoints.get("worker_bind"),
            "http": self.http_bind,
            "actors": {n: c.pid for n, c in self.children.items()},
        }
        path = Path(self.ready_file)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(path)  # readers never see a half-written file

    # ---- running ---------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.start()
        except StartupFailed as exc:
            broker = self.children.get("broker")
            if self.signals.stop and broker is not None and broker.standby:
                log.info("node stopping while its broker was a standby")
                self.stop()
                return 0
            log.error("node failed to start: %s", exc)
            unusable = broker is not None and broker.exit_code == STORAGE_UNUSABLE
            self.stop()
            return STORAGE_UNUSABLE if unusable else 1
        poller = zmq.Poller()
        poller.register(self.signals.fd, zmq.POLLIN)
        while not self.signals.stop:
            poller.poll(1000)
            self.signals.clear()
            for child in list(self.children.values()):
                child.read_ready()  # restarted children report again; just consume it
            if not self._reap():
                self.stop()
                return 1
        log.info("node stopping (drain, %.1f s grace)", self.config.node.shutdown_grace)
        self.stop()
        return 0

    def _reap(self) -> bool:
        """Restart actors that died; False when the node's own intensity is exceeded."""
        for name, child in list(self.children.items()):
            if child.poll() is None:
                continue
            del self.children[name]
            if not self.intensity.allow(time.monotonic()):
                log.error("%s %s, and the node's restart intensity (%d in %g s) is used up: "
                          "stopping", name, child.describe_exit(), self.config.node.max_restarts,
                          self.config.node.restart_window)
                return False
            log.warning("%s %s; restarting it", name, child.describe_exit())
            self._start(name)
        return True

    def stop(self) -> None:
        """Drain in dependency order; SIGKILL whatever outlives its bound."""
        broker = self.children.get("broker")
        if broker is not None:
            broker.signal(signal.SIGUSR1)  # refuse new submissions from here on
        pools = [c for c in self.children.values() if c.role == "supervisor"]
        for child in pools:
            child.signal(signal.SIGTERM)
        # Supervisors enforce the grace period on their workers; allow them that plus time
        # to kill and reap.
        self._bounded_wait(pools, self.config.node.shutdown_grace + STOP_TIMEOUT_S)
        rest = [c for c in self.children.values() if c.role != "supervisor"]
        for child in rest:
            child.signal(signal.SIGTERM)
        self._bounded_wait(rest, STOP_TIMEOUT_S)
        log.info("node stopped")

    @staticmethod
    def _bounded_wait(children: list[Child], timeout_s: float) -> None:
        for child in wait_all(children, timeout_s):
            log.warning("%s did not stop within %.1f s; killing it", child.name, timeout_s)
            child.signal(signal.SIGKILL)
            child.proc.wait(5)


def run(config: Config, ready_file: str | None = None) -> int:
    return Node(config, ready_file).run()
