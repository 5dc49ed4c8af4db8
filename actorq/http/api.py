"""The REST API under /api: a thin layer over AsyncClient, one handler per route.

Every error is JSON, `{"error": {"code", "message", "field"}}`, with its status: 400
for bad input (naming the field), 401/403 for a missing or insufficient token, 404
for an unknown id or name, 409 for a task whose state does not allow the change,
413 for a body or payload over the limit, 503 when the broker does not answer, or
is full (queue_full) or shutting down (draining), with Retry-After.
Arguments and results that JSON cannot carry (bytes, msgpack extensions) are shown
as `{"$base64": "..."}` of their msgpack, never dropped. The routes and their
shapes are in openapi.py, which a test checks against this module's behaviour.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from actorq.client.aio import AsyncClient
from actorq.errors import (
    ActorqError,
    BrokerUnavailable,
    RequestRejected,
    ResultTimeout,
    TaskNotFound,
)
from actorq.http.auth import Tokens
from actorq.node.config import MAX_POOL_WORKERS
from actorq.tasks.options import SUBMIT_OPTIONS
from actorq.wire.payload import decode_args, decode_result

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_LIMIT = 500
# What a JSON submission may say beyond task, args and kwargs: every option submit()
# takes, under the same name (times as ISO 8601 for eta/expires, exceptions by name).
BODY_KEYS = frozenset({"task", "args", "kwargs"}) | SUBMIT_OPTIONS


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def error_response(status: int, code: str, message: str, field: str | None = None):
    return web.json_response({"error": {"code": code, "message": message, "field": field}},
                             status=status)


def jsonable(value: Any) -> Any:
    """A decoded argument or result as JSON can carry it; what it cannot, as
    {"$base64": msgpack}, so nothing is dropped."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: jsonable(v) for k, v in value.items()}
    return {"$base64": base64.b64encode(msgspec.msgpack.encode(value)).decode()}


def task_json(info: Any, full: bool = False) -> dict[str, Any]:
    out = msgspec.to_builtins(info)
    for key in ("payload", "value", "traceback", "history"):
        out.pop(key, None)
    if full:
        args, kwargs = decode_args(info.payload) if info.payload else (None, None)
        out.update(args=jsonable(args), kwargs=jsonable(kwargs),
                   result=jsonable(decode_result(info.value)) if info.value else None,
                   traceback=info.traceback, history=msgspec.to_builtins(info.history))
    return out


async def read_json(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError(413, "too_large", f"the body is over the limit: {exc.text}") from None
    if not body:
        if required:
            raise ApiError(400, "bad_request", "a JSON object body is required", "body")
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_request", f"the body is not JSON: {exc}", "body") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object", "body")
    return data


def _str(data: dict, key: str, *, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ApiError(400, "bad_request", f"{key} must be a non-empty string", key)
    return value


def _int(data: Any, key: str, default: int | None = None, *, low: int = 0,
         high: int | None = None) -> int | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, str):  # a query parameter
        try:
            value = int(value)
        except ValueError:
            raise ApiError(400, "bad_request", f"{key} must be an integer", key) from None
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
            high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ApiError(400, "bad_request", f"{key} must be an integer in {bound}", key)
    return value


def _field_of(message: str) -> str | None:
    first = message.split(" ", 1)[0].rstrip(":")
    return first if first in BODY_KEYS or first in ("min_workers", "max_workers", "state",
                                                    "limit", "cursor", "queue") else None


class Api:
    def __init__(self, client: AsyncClient, tokens: Tokens) -> None:
        self.client = client
        self.tokens = tokens

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/api/tasks", self.submit)
        r.add_get("/api/tasks", self.list_tasks)
        r.add_get("/api/tasks/{id}", self.get_task)
        r.add_delete("/api/tasks/{id}", self.cancel_task)
        r.add_post("/api/tasks/{id}/requeue", self.requeue_task)
        r.add_get("/api/dead", self.dead)
        r.add_post("/api/dead/requeue", self.requeue_dead)
        r.add_get("/api/workers", self.workers)
        r.add_get("/api/pools", self.pools)
        r.add_post("/api/pools/{name}/scale", self.scale)
        r.add_get("/api/queues", self.queues)
        r.add_post("/api/queues/{name}/pause", self.pause)
        r.add_post("/api/queues/{name}/resume", self.resume)
        r.add_delete("/api/queues/{name}/tasks", self.purge)
        r.add_get("/api/crons", self.crons)
        r.add_post("/api/crons", self.add_cron)
        r.add_delete("/api/crons/{name}", self.remove_cron)
        r.add_post("/api/crons/{name}/run", self.run_cron)
        r.add_get("/api/stats", self.stats)
        r.add_get("/api/whoami", self.whoami)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Tokens first, then every error as JSON with its status (never a 500 for input)."""
        try:
            denied = self.tokens.check(request)
            if denied is not None:
                return error_response(*denied)
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message, exc.field)
        except TaskNotFound as exc:
            return error_response(404, "not_found", f"no task {exc.args[0]!r}", "id")
        except RequestRejected as exc:  # SubmitRejected too: the broker's answers to requests
            if exc.code in ("queue_full", "draining"):  # the broker's state, not the input
                response = error_response(503, exc.code, exc.message)
                response.headers["Retry-After"] = "1"
                return response
            status = (413 if exc.code == "too_large" else
                      404 if exc.message.startswith("no pool") else 400)
            return error_response(status, exc.code, exc.message, _field_of(exc.message))
        except (BrokerUnavailable, ResultTimeout) as exc:
            return error_response(503, "broker_unavailable", str(exc))
        except ActorqError as exc:
            return error_response(400, "bad_request", str(exc))
        except web.HTTPException as exc:  # aiohttp's own: 404 route, 405 method, 413 body
            response = error_response(exc.status, "http", exc.reason)
            if "Allow" in exc.headers:  # a 405 says what is allowed (RFC 9110)
                response.headers["Allow"] = exc.headers["Allow"]
            return response

    # ---- tasks ---------------------------------------------------------------------

    async def submit(self, request: web.Request) -> web.Response:
        data = await read_json(request)
        for key in data:
            if key not in BODY_KEYS:
                raise ApiError(400, "bad_request", f"{key} is not a submit option", key)
        name = _str(data, "task", required=True)
        args, kwargs = data.get("args", []), data.get("kwargs", {})
        if not isinstance(args, list):
            raise ApiError(400, "bad_request", "args must be a JSON array", "args")
        if not isinstance(kwargs, dict):
            raise ApiError(400, "bad_request", "kwargs must be a JSON object", "kwargs")
        options = {k: v for k, v in data.items() if k not in ("task", "args", "kwargs")}
        for key in ("eta", "expires"):
            if isinstance(options.get(key), str):
                options[key] = _when(key, options[key])
        if "depends_on" in options and not isinstance(options["depends_on"], list):
            raise ApiError(400, "bad_request", "depends_on must be a list of task ids",
                           "depends_on")
        handle = await self.client.submit(name, args, kwargs, **options)
        await self.client.flush(timeout=10)
        if handle._error is not None:
            raise handle._error
        info = await self.client.status(handle.id)
        return web.json_response({"id": info.id, "state": info.state}, status=201)

    async def list_tasks(self, request: web.Request) -> web.Response:
        q = request.query
        state = q.get("state") or q.get("status")
        page = await self.client.list_tasks(
            state, queue=q.get("queue") or None, name=q.get("name") or None,
            limit=_int(q, "limit", 50, low=1, high=MAX_LIMIT), cursor=q.get("cursor") or None)
        return web.json_response({"tasks": [task_json(t) for t in page.tasks],
                                  "next_cursor": page.next_cursor})

    async def get_task(self, request: web.Request) -> web.Response:
        return web.json_response(task_json(await self.client.task(request.match_info["id"]),
                                           full=True))

    async def cancel_task(self, request: web.Request) -> web.Response:
        tid = request.match_info["id"]
        if await self.client.cancel(tid):
            return web.json_response({"id": tid, "state": "cancelled"})
        info = await self.client.status(tid)  # TaskNotFound: 404
        raise ApiError(409, "conflict", f"task {tid} already ended: {info.state}", "id")

    async def requeue_task(self, request: web.Request) -> web.Response:
        tid = request.match_info["id"]
        if await self.client.requeue(tid):
            return web.json_response({"id": tid, "state": "queued"})
        info = await self.client.status(tid)
        raise ApiError(409, "conflict", f"task {tid} is {info.state}, not dead", "id")

    async def dead(self, request: web.Request) -> web.Response:
        q = request.query
        items = await self.client.dead_letters(q.get("queue") or None,
                                               _int(q, "limit", 100, low=1, high=MAX_LIMIT))
        return web.json_response({"tasks": [task_json(t) for t in items]})

    async def requeue_dead(self, request: web.Request) -> web.Response:
        data = await read_json(request, required=False)
        n = await self.client.requeue_dead(queue=_str(data, "queue"), name=_str(data, "name"))
        return web.json_response({"requeued": n})

    # ---- workers, pools, queues, crons, stats ---------------------------------------

    async def workers(self, request: web.Request) -> web.Response:
        return web.json_response({"workers": msgspec.to_builtins(await self.client.workers())})

    async def pools(self, request: web.Request) -> web.Response:
        return web.json_response({"pools": msgspec.to_builtins(await self.client.pools())})

    async def scale(self, request: web.Request) -> web.Response:
        data = await read_json(request)
        low = _int(data, "min_workers", low=1, high=MAX_POOL_WORKERS)
        high = _int(data, "max_workers", low=1, high=MAX_POOL_WORKERS)
        await self.client.scale(request.match_info["name"], min_workers=low, max_workers=high)
        return web.json_response({"pool": request.match_info["name"], "min_workers": low,
                                  "max_workers": high})

    async def queues(self, request: web.Request) -> web.Response:
        return web.json_response({"queues": msgspec.to_builtins(await self.client.queues())})

    async def pause(self, request: web.Request) -> web.Response:
        changed = await self.client.pause(request.match_info["name"])
        return web.json_response({"queue": request.match_info["name"], "paused": True,
                                  "changed": changed})

    async def resume(self, request: web.Request) -> web.Response:
        changed = await self.client.resume(request.match_info["name"])
        return web.json_response({"queue": request.match_info["name"], "paused": False,
                                  "changed": changed})

    async def purge(self, request: web.Request) -> web.Response:
        n = await self.client.purge(request.match_info["name"])
        return web.json_response({"queue": request.match_info["name"], "purged": n})

    async def crons(self, request: web.Request) -> web.Response:
        return web.json_response({"crons": [cron_json(e) for e in await self.client.crons()]})

    async def add_cron(self, request: web.Request) -> web.Response:
        data = await read_json(request)
        for key in data:
            if key not in ("name", "schedule", "task", "args", "kwargs", "queue", "priority"):
                raise ApiError(400, "bad_request", f"{key} is not a cron field", key)
        args, kwargs = data.get("args", []), data.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ApiError(400, "bad_request", "args must be an array and kwargs an object",
                           "args" if not isinstance(args, list) else "kwargs")
        name = _str(data, "name", required=True)
        await self.client.add_cron(name, _str(data, "schedule", required=True),
                                   _str(data, "task", required=True), args, kwargs,
                                   queue=_str(data, "queue") or "default",
                                   priority=_int(data, "priority", 0, high=255))
        return web.json_response({"name": name}, status=201)

    async def remove_cron(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not await self.client.remove_cron(name):
            raise ApiError(404, "not_found", f"no cron entry {name!r}", "name")
        return web.json_response({"name": name, "removed": True})

    async def run_cron(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not await self.client.run_cron(name):
            raise ApiError(404, "not_found", f"no cron entry {name!r}", "name")
        return web.json_response({"name": name, "fired": True})

    async def whoami(self, request: web.Request) -> web.Response:
        """What the caller's token lets it do: "admin", "read", or "open" (no tokens)."""
        return web.json_response({"role": self.tokens.role_of(request)})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(msgspec.to_builtins(await self.client.stats()))


def cron_json(entry: Any) -> dict[str, Any]:
    args, kwargs = decode_args(entry.payload)
    return {"name": entry.name, "schedule": entry.schedule, "task": entry.task,
            "args": jsonable(args), "kwargs": jsonable(kwargs), "queue": entry.queue,
            "priority": entry.priority,
            "last_fired": entry.last_fired or None, "next_run": next_run(entry)}


def next_run(entry: Any) -> float | None:
    from actorq.tasks import cron

    try:
        return cron.next_after(entry.schedule, max(entry.last_fired, dt.datetime.now(
            dt.timezone.utc).timestamp()))
    except Exception:  # noqa: BLE001 (a schedule the broker accepted; shown as unknown)
        return None


def _when(key: str, text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, "bad_request", f"{key} must be an ISO 8601 time", key) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
