"""The OpenAPI 3.1 document of the REST API (GET /api/openapi.json).

Written by hand next to api.py and checked against it: tests/http runs every route
and validates each response against the schema here, and docs/api.md is generated
from this document (`python -m actorq.http.openapi --markdown`).
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec

from actorq.wire import values

_ERRORS = {
    "400": "bad input; `field` names what is wrong",
    "401": "no token, or an unknown one (when tokens are configured)",
    "403": "a read token on a route that changes something",
    "404": "no such task, pool, queue or cron entry",
    "409": "the task's state does not allow it; the message says which it is in",
    "413": "the body or the task's payload is over the limit",
    "503": "the broker did not answer, is full (queue_full) or is shutting down (draining)",
}


def _schema(struct: type) -> dict[str, Any]:
    """A msgspec Struct's JSON schema, as JSON shows it."""
    (schema,), components = msgspec.json.schema_components([struct],
                                                           ref_template="#/components/schemas/{name}")
    return components[struct.__name__]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


def _op(summary: str, ok: dict[str, Any], *, status: str = "200", body: dict | None = None,
        params: list[dict] | None = None, errors: tuple[str, ...] = ("400", "503"),
        admin: bool = False) -> dict[str, Any]:
    codes = ("401", "403", *errors) if admin else ("401", *errors)
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {status: {"description": "ok", "content": {"application/json": {
            "schema": ok}}}} | {c: {"description": _ERRORS[c], "content": {
                "application/json": {"schema": _ref("Error")}}} for c in codes},
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _query(name: str, schema: dict[str, Any], about: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": about}


def _path(name: str, about: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "minLength": 1}, "description": about}


STATE = {"type": "string", "enum": sorted(s.value for s in values.TaskState)}
ANY = {}  # a JSON value: arguments and results; {"$base64": ...} where JSON cannot carry it


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "actorq", "version": "1",
                 "description": "Operate an actorq broker: tasks, dead letters, workers, "
                                "pools, queues, crons and statistics."},
        "paths": _task_paths() | _operator_paths(),
        "components": {"schemas": _schemas(), "securitySchemes": {
            "token": {"type": "http", "scheme": "bearer"}}},
        "security": [{"token": []}, {}],
    }


def _task_paths() -> dict[str, Any]:
    task_id = _path("id", "a task id")
    summary = _ref("TaskSummary")
    submit = _object(["task"], task={"type": "string", "description": "module:function"},
                     args={"type": "array"}, kwargs={"type": "object"},
                     queue={"type": "string"}, priority={"type": "integer"},
                     delay={"type": "number"}, eta={"type": "string", "format": "date-time"},
                     expires={}, timeout={"type": "number"}, retries={"type": "integer"},
                     backoff={"type": "number"}, max_backoff={"type": "number"},
                     retry_on={"type": "array", "items": {"type": "string"}},
                     depends_on={"type": "array", "items": {"type": "string"}},
                     key={"type": "string"}, ignore_result={"type": "boolean"})
    return {
        "/api/tasks": {
            "post": _op("Submit a task; any option Client.submit takes, by the same name",
                        _object(["id", "state"], id={"type": "string"}, state=STATE),
                        status="201", body=submit, errors=("400", "413", "503"), admin=True),
            "get": _op("List tasks, newest first", _ref("TaskList"), params=[
                _query("state", STATE, "only tasks in this state"),
                _query("status", STATE, "the same as state"),
                _query("queue", {"type": "string"}, "only tasks of this queue"),
                _query("name", {"type": "string"}, "only tasks of this name"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 500},
                       "tasks on the page (50)"),
                _query("cursor", {"type": "string"}, "next_cursor of the page before")]),
        },
        "/api/tasks/{id}": {
            "parameters": [task_id],
            "get": _op("A task in full: arguments, result, traceback, every attempt",
                       _ref("TaskDetail"), errors=("404", "503")),
            "delete": _op("Cancel a task", _object(["id", "state"], id={"type": "string"},
                                                   state=STATE),
                          errors=("404", "409", "503"), admin=True),
        },
        "/api/tasks/{id}/requeue": {
            "parameters": [task_id],
            "post": _op("Run a dead task again", _object(["id", "state"], id={"type": "string"},
                                                         state=STATE),
                        errors=("404", "409", "503"), admin=True),
        },
        "/api/dead": {"get": _op("Dead letters, oldest first", _object(["tasks"], tasks={
            "type": "array", "items": summary}), params=[
                _query("queue", {"type": "string"}, "only this queue"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "(100)")])},
        "/api/dead/requeue": {"post": _op(
            "Run again every dead letter matching (all when the body says nothing)",
            _object(["requeued"], requeued={"type": "integer"}),
            body=_object([], queue={"type": "string"}, name={"type": "string"}), admin=True)},
    }


def _operator_paths() -> dict[str, Any]:
    pool = _path("name", "a pool's name")
    queue = _path("name", "a queue's name")
    cron = _path("name", "a cron entry's name")
    return {
        "/api/workers": {"get": _op("Connected workers", _object(["workers"], workers={
            "type": "array", "items": _ref("WorkerInfo")}))},
        "/api/pools": {"get": _op("Pools", _object(["pools"], pools={
            "type": "array", "items": _ref("PoolInfo")}))},
        "/api/pools/{name}/scale": {"parameters": [pool], "post": _op(
            "Set a pool's bounds; equal bounds fix its size; one left out stays",
            _object(["pool"], pool={"type": "string"}, min_workers={"type": ["integer", "null"]},
                    max_workers={"type": ["integer", "null"]}),
            body=_object([], min_workers={"type": "integer", "minimum": 1, "maximum": 1024},
                         max_workers={"type": "integer", "minimum": 1, "maximum": 1024}),
            errors=("400", "404", "503"), admin=True)},
        "/api/queues": {"get": _op("Queues", _object(["queues"], queues={
            "type": "array", "items": _ref("QueueInfo")}))},
        "/api/queues/{name}/pause": {"parameters": [queue], "post": _op(
            "Stop dispatching from a queue", _ref("QueueChange"), admin=True)},
        "/api/queues/{name}/resume": {"parameters": [queue], "post": _op(
            "Dispatch from a paused queue again", _ref("QueueChange"), admin=True)},
        "/api/queues/{name}/tasks": {"parameters": [queue], "delete": _op(
            "Purge: cancel every task queued there (running ones go on)",
            _object(["queue", "purged"], queue={"type": "string"}, purged={"type": "integer"}),
            admin=True)},
        "/api/crons": {
            "get": _op("Cron entries", _object(["crons"], crons={"type": "array",
                                                                 "items": _ref("Cron")})),
            "post": _op("Add or replace a cron entry", _object(["name"], name={"type": "string"}),
                        status="201", body=_object(
                            ["name", "schedule", "task"], name={"type": "string"},
                            schedule={"type": "string"}, task={"type": "string"},
                            args={"type": "array"}, kwargs={"type": "object"},
                            queue={"type": "string"}, priority={"type": "integer"}),
                        admin=True),
        },
        "/api/crons/{name}": {"parameters": [cron], "delete": _op(
            "Remove a cron entry", _object(["name", "removed"], name={"type": "string"},
                                           removed={"type": "boolean"}),
            errors=("404", "503"), admin=True)},
        "/api/crons/{name}/run": {"parameters": [cron], "post": _op(
            "Fire a cron entry now, once", _object(["name", "fired"], name={"type": "string"},
                                                   fired={"type": "boolean"}),
            errors=("404", "503"), admin=True)},
        "/api/stats": {"get": _op("Counters, rates, quantiles, depths", _ref("Stats"))},
        "/api/whoami": {"get": _op("What the caller's token may do", _object(
            ["role"], role={"type": "string", "enum": ["admin", "read", "open"]}),
            errors=("503",))},
        "/api/events": {"get": {
            "summary": "Live server-sent events: `stats` every 0.25 s, `workers` as they change "
                       "(token also as ?access_token=)",
            "parameters": [_query("access_token", {"type": "string"},
                                  "the bearer token, for EventSource, which sends no headers")],
            "responses": {"200": {"description": "an endless text/event-stream",
                                  "content": {"text/event-stream": {"schema": {
                                      "type": "string"}}}},
                          "401": {"description": _ERRORS["401"], "content": {
                              "application/json": {"schema": _ref("Error")}}}}}},
    }


def _schemas() -> dict[str, Any]:
    summary = _ref("TaskSummary")
    task_fields = _schema(values.TaskInfo)["properties"]
    for key in ("payload", "value", "traceback", "history"):
        task_fields.pop(key)
    return {
        "Error": _object(["error"], error=_object(
            ["code", "message", "field"], code={"type": "string"}, message={"type": "string"},
            field={"type": ["string", "null"]})),
        "TaskSummary": {"type": "object", "properties": task_fields,
                        "required": ["id", "name", "queue", "state"]},
        "TaskDetail": {"allOf": [summary, _object(
            ["args", "kwargs", "result", "history"], args=ANY, kwargs=ANY, result=ANY,
            traceback={"type": ["string", "null"]},
            history={"type": "array", "items": _schema(values.AttemptInfo)})]},
        "TaskList": _object(["tasks", "next_cursor"], tasks={"type": "array", "items": summary},
                            next_cursor={"type": ["string", "null"]}),
        "WorkerInfo": _schema(values.WorkerInfo),
        "PoolInfo": _schema(values.PoolInfo),
        "QueueInfo": {**_schema(values.QueueInfo), "properties": {
            **_schema(values.QueueInfo)["properties"],
            "by_priority": {"type": "object", "additionalProperties": {"type": "integer"}}}},
        "QueueChange": _object(["queue", "paused", "changed"], queue={"type": "string"},
                               paused={"type": "boolean"}, changed={"type": "boolean"}),
        "Cron": _object(["name", "schedule", "task", "args", "kwargs", "queue", "priority",
                         "last_fired", "next_run"],
                        name={"type": "string"}, schedule={"type": "string"},
                        task={"type": "string"}, args=ANY, kwargs=ANY,
                        queue={"type": "string"}, priority={"type": "integer"},
                        last_fired={"type": ["number", "null"]},
                        next_run={"type": ["number", "null"]}),
        "Stats": {"type": "object", "required": ["instance", "submitted_total"]},
    }


def markdown() -> str:
    """docs/api.md: every route, from the document (tests check the file matches)."""
    doc = document()
    lines = ["# HTTP API", "", "Generated from the OpenAPI document that `GET /api/openapi.json`",
             "serves (`python -m actorq.http.openapi --markdown > docs/api.md`).", "",
             "| method | path | what it does | answers |", "|---|---|---|---|"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            codes = ", ".join(sorted(op["responses"]))
            lines.append(f"| {method.upper()} | `{path}` | {op['summary']} | {codes} |")
    lines += ["", "Errors are `{\"error\": {\"code\", \"message\", \"field\"}}`:", ""]
    lines += [f"- {code}: {about}" for code, about in _ERRORS.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        sys.stdout.write(markdown())
    else:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(document()).decode()) + "\n")
