"""The gateway actor: HTTP for operators. A broker client; it never touches broker state.

- GET /health: 200 with a JSON summary once the broker answers and every local
  pool has its supervisor up and all its workers connected; 503 (same JSON) else.
- GET /metrics: Prometheus text, from one broker Stats snapshot per scrape.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import uvloop
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from actorq.client.aio import AsyncClient
from actorq.errors import ActorqError
from actorq.http import badinput, openapi
from actorq.http.api import Api
from actorq.http.auth import Tokens
from actorq.http.events import EventHub
from actorq.metrics import StatsCollector
from actorq.node import actor, security
from actorq.node.specs import CANNOT_START, GatewaySpec
from actorq.wire.protocol import Stats

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"  # the dashboard: no build step
STATS_TIMEOUT_S = 2.0  # a scrape or health check waits this long for the broker
FULL_TIMEOUT_S = 2.0


class Gateway:
    def __init__(self, spec: GatewaySpec) -> None:
        self.spec = spec
        keys = spec.curve
        # A full broker: an HTTP submission waits this long before its 503 (queue_full).
        self.client = AsyncClient(spec.broker, key=keys.key if keys else None,
                                  broker_key=keys.server if keys else None,
                                  full_timeout=FULL_TIMEOUT_S)
        self.collector = StatsCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    async def _stats(self) -> Stats | None:
        try:
            return await self.client.stats(timeout=STATS_TIMEOUT_S)
        except ActorqError as exc:
            log.warning("cannot read broker stats: %s", exc)
            return None

    async def health(self, request: web.Request) -> web.Response:
        stats = await self._stats()
        if stats is None:
            return web.json_response({"status": "unavailable", "broker": None}, status=503)
        pools = {}
        healthy = not stats.draining
        # This node's pools, and those that joined from worker-only nodes elsewhere.
        names = {**{n: 0 for n in (*stats.supervisors, *stats.pools)}, **self.spec.pools}
        for name, expected in sorted(names.items()):
            alive = stats.workers_alive.get(name, 0)
            supervisor = stats.supervisors.get(name, "missing")
            size = stats.pools.get(name)
            if size is not None:  # bounds may have changed (client.scale); every host counts
                expected = size.min_workers * size.hosts
            pools[name] = {"workers_alive": alive, "workers_expected": expected,
                           "supervisor": supervisor}
            if size is not None:
                pools[name].update(workers_target=size.target, min_workers=size.min_workers,
                                   max_workers=size.max_workers)
            healthy = healthy and supervisor == "up" and alive >= expected
        body = {
            "status": "ok" if healthy else "degraded",
            "broker": stats.instance,
            # Brokers sharing a PostgreSQL store: which one leads, since which takeover.
            "leader": stats.leader or None,
            "epoch": stats.epoch,
            "draining": stats.draining,
            "queued": sum(stats.queue_depth.values()),
            "running": stats.running,
            "pools": pools,
            # Named, not counted against health: restarting this node would not give
            # those queues a consumer.
            "unserved_queues": stats.unserved_queues,
        }
        return web.json_response(body, status=200 if healthy else 503)

    async def dashboard(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi.document())

    async def metrics(self, request: web.Request) -> web.Response:
        self.collector.stats = await self._stats()
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def run(self) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await self.client.connect()
        badinput.install()
        api = Api(self.client, Tokens(self.spec.tokens))
        self.events = EventHub(self.client)
        app = web.Application(middlewares=[api.middleware],
                              client_max_size=self.spec.max_body_bytes)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/api/openapi.json", self.openapi)
        app.router.add_get("/api/events", self.events.stream)
        app.router.add_get("/", self.dashboard)
        app.router.add_static("/static/", STATIC)
        api.add_routes(app)
        # aiohttp's keep-alive timer also runs before a connection's first request and
        # while one is half sent, so it closes idle and half-open connections alike.
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               keepalive_timeout=self.spec.idle_timeout)
        await runner.setup()
        host, port = self.spec.bind.rsplit(":", 1)
        tls = None
        if self.spec.tls_cert:
            tls = security.tls_context(self.spec.tls_cert, self.spec.tls_key)
        site = web.TCPSite(runner, host, int(port), ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:
            log.error("gateway cannot listen on %s: %s", self.spec.bind, exc)
            await self.client.close()
            return CANNOT_START
        bound = runner.addresses[0]
        address = f"{bound[0]}:{bound[1]}"
        log.info("gateway serving %s://%s (/health, /metrics, /api%s)",
                 "https" if tls else "http", address,
                 ", tokens required" if self.spec.tokens else "")
        actor.report_ready({"http": address})
        await stop.wait()
        await self.events.close()
        await runner.cleanup()
        await self.client.close()
        log.info("gateway stopping")
        return 0


def main(spec: GatewaySpec) -> int:
    actor.die_with_parent()
    return uvloop.run(Gateway(spec).run())
