"""`@task` and the registry of runnable names.

A worker runs only functions registered here by the modules its pool lists: the
name a client sends is looked up, never imported, so a client cannot make a
worker import or call anything else.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

import msgspec

from actorq.tasks.options import TASK_ONLY_OPTIONS, parse_rate
from actorq.tasks.options import check as check_options

F = TypeVar("F", bound=Callable[..., Any])



class TaskDef(msgspec.Struct, frozen=True):
    """A registered task: its function and the defaults its submissions start from."""

    name: str
    module: str
    fn: Callable[..., Any]
    is_async: bool
    defaults: dict[str, Any] = {}  # submit options (queue, priority, retries, ...)
    rate_limit: float | None = None  # dispatches per second, across all workers


_registry: dict[str, TaskDef] = {}


@overload
def task(fn: F) -> F: ...
@overload
def task(*, name: str | None = None, rate_limit: str | None = None,
         **defaults: Any) -> Callable[[F], F]: ...


def task(fn: Any = None, **options: Any) -> Any:
    """Register a function (plain or `async def`) as a task named "module:function".

    Use bare (`@task`) or with defaults (`@task(queue="reports", retries=3)`): any
    option `Client.submit` takes, which a submission may override, plus `name` and
    `rate_limit` ("100/s", "10/m"), which only the task can say. Bad options raise
    SubmitRejected at import, naming the option. The function stays callable as
    before; registration only makes it runnable by workers whose pool lists its
    module. Runs at import time in both clients and workers.
    """
    check_options(options)

    def register(f: F) -> F:
        name = options.get("name") or f"{f.__module__}:{f.__qualname__}"
        rate = options.get("rate_limit")
        _registry[name] = TaskDef(
            name=name,
            module=f.__module__,
            fn=f,
            is_async=inspect.iscoroutinefunction(f),
            defaults={k: v for k, v in options.items()
                      if k not in TASK_ONLY_OPTIONS and v is not None},
            rate_limit=parse_rate(rate) if rate is not None else None,
        )
        f.actorq_name = name  # type: ignore[attr-defined]
        return f

    return register(fn) if fn is not None else register


def registered(modules: list[str] | None = None) -> dict[str, TaskDef]:
    """Registered tasks, limited to those defined in `modules` when given."""
    if modules is None:
        return dict(_registry)
    allowed = set(modules)
    return {n: d for n, d in _registry.items() if d.module in allowed}


def lookup(name: str) -> TaskDef | None:
    return _registry.get(name)
