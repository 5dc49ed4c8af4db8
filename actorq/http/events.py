"""GET /api/events: one live stream of the broker's state, shared by every dashboard.

While anybody listens, one poll a tick (TICK_S) reads the broker's statistics and
workers through the gateway's client, however many listeners there are, and every
listener gets the same server-sent events:

- `stats`: counters, rates, depths and workers alive/busy, every tick;
- `workers`: the workers whose state, leases or counts changed since the last tick
  (`changed`) and those that went away (`gone`); a new listener first gets them all.

Browsers' EventSource cannot send headers, so with tokens configured this route also
takes the token as `?access_token=` (auth.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import msgspec
from aiohttp import web

from actorq.client.aio import AsyncClient
from actorq.errors import ActorqError

log = logging.getLogger(__name__)

TICK_S = 0.25  # how often the broker is read while anybody listens
KEEPALIVE_S = 15.0  # a comment line this often keeps idle proxies from closing the stream
QUEUE_EVENTS = 64  # events a slow listener may fall behind before it is dropped


class EventHub:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.listeners: set[asyncio.Queue] = set()
        self.workers: dict[str, dict[str, Any]] = {}  # as last sent
        self.polls = 0
        self._task: asyncio.Task | None = None

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        queue: asyncio.Queue = asyncio.Queue(QUEUE_EVENTS)
        if self.workers:  # a new listener starts from the whole picture
            queue.put_nowait(("workers", {"changed": list(self.workers.values()),
                                          "gone": []}))
        self.listeners.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll())
        try:
            while True:
                try:
                    kind, data = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if kind == "close":
                    break
                await response.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.listeners.discard(queue)
        return response

    async def _poll(self) -> None:
        """One read of the broker a tick while anybody listens, sent to everybody."""
        while self.listeners:
            started = time.monotonic()
            try:
                stats = await self.client.stats(timeout=2.0)
                workers = await self.client.workers(timeout=2.0)
            except ActorqError as exc:
                self._send("error", {"message": str(exc)})
            else:
                self.polls += 1
                self._send("stats", summary(stats))
                changed, gone = self._diff(workers)
                if changed or gone:
                    self._send("workers", {"changed": changed, "gone": gone})
            await asyncio.sleep(max(0.0, TICK_S - (time.monotonic() - started)))

    def _diff(self, workers: list[Any]) -> tuple[list[dict], list[str]]:
        now = {w.name: worker_row(w) for w in workers}
        changed = [row for name, row in now.items() if self.workers.get(name) != row]
        gone = [name for name in self.workers if name not in now]
        self.workers = now
        return changed, gone

    def _send(self, kind: str, data: Any) -> None:
        for queue in list(self.listeners):
            try:
                queue.put_nowait((kind, data))
            except asyncio.QueueFull:  # a listener that stopped reading: let it go
                self.listeners.discard(queue)
                _close(queue)

    async def close(self) -> None:
        for queue in list(self.listeners):
            _close(queue)
        if self._task is not None:
            self._task.cancel()


def _close(queue: asyncio.Queue) -> None:
    """Tell a listener's stream to end, making room for the word if need be."""
    while queue.full():
        queue.get_nowait()
    queue.put_nowait(("close", None))


def summary(stats: Any) -> dict[str, Any]:
    """What a dashboard shows live, from a Stats snapshot."""
    done = stats.finished_total
    return {
        "t": time.time(), "broker": stats.instance,
        "submitted": stats.submitted_total, "succeeded": done.get("succeeded", 0),
        "failed": done.get("dead", 0) + stats.retries_total,
        "dead": stats.dead, "cancelled": done.get("cancelled", 0),
        "queued": sum(stats.queue_depth.values()), "running": stats.running,
        "scheduled": stats.scheduled, "pending": stats.pending,
        "workers_alive": sum(stats.workers_alive.values()),
        "workers_busy": sum(stats.workers_busy.values()),
        "queue_depth": stats.queue_depth, "rates": stats.rates,
        "queue_by_priority": stats.queue_by_priority,
        "duration_p50_s": stats.duration_p50_s, "duration_p99_s": stats.duration_p99_s,
        "pools": msgspec.to_builtins(stats.pools), "supervisors": stats.supervisors,
        "worker_restarts": stats.worker_restarts,
    }


def worker_row(w: Any) -> dict[str, Any]:
    # last_seen_s moves every tick: rounded, so an idle worker is not "changed" each time
    row = msgspec.to_builtins(w)
    row["last_seen_s"] = round(w.last_seen_s)
    return row
