"""`@task`, the registry of runnable names, and the argument/result codec.

A worker runs only functions registered here by the modules its pool lists: the
name a client sends is looked up, never imported, so a client cannot make a
worker import or call anything else.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

import msgspec

F = TypeVar("F", bound=Callable[..., Any])

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


class TaskDef(msgspec.Struct, frozen=True):
    """A registered task: its function and the defaults its submissions start from."""

    name: str
    module: str
    fn: Callable[..., Any]
    is_async: bool
    queue: str | None = None
    priority: int | None = None
    retries: int | None = None
    timeout: float | None = None


_registry: dict[str, TaskDef] = {}


@overload
def task(fn: F) -> F: ...
@overload
def task(
    *,
    name: str | None = None,
    queue: str | None = None,
    priority: int | None = None,
    retries: int | None = None,
    timeout: float | None = None,
) -> Callable[[F], F]: ...


def task(fn: Any = None, **options: Any) -> Any:
    """Register a function (plain or `async def`) as a task named "module:function".

    Use bare (`@task`) or with defaults (`@task(queue="reports", priority=5)`) that
    a client may override per submission. The function stays callable as before;
    registration only makes it runnable by workers whose pool lists its module.
    Runs at import time in both clients and workers.
    """
    unknown = set(options) - {"name", "queue", "priority", "retries", "timeout"}
    if unknown:
        raise TypeError(f"@task got unknown option(s): {', '.join(sorted(unknown))}")

    def register(f: F) -> F:
        name = options.get("name") or f"{f.__module__}:{f.__qualname__}"
        _registry[name] = TaskDef(
            name=name,
            module=f.__module__,
            fn=f,
            is_async=inspect.iscoroutinefunction(f),
            queue=options.get("queue"),
            priority=options.get("priority"),
            retries=options.get("retries"),
            timeout=options.get("timeout"),
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


def encode_args(args: tuple | list, kwargs: dict | None) -> bytes:
    """Encode call arguments; raises TypeError for anything msgpack cannot carry."""
    try:
        return _encoder.encode((args, kwargs or {}))
    except TypeError as exc:
        raise TypeError(f"task arguments cannot be encoded: {exc}") from None


def decode_args(payload: bytes) -> tuple[list, dict]:
    args, kwargs = _decoder.decode(payload)
    return args, kwargs


def encode_result(value: Any) -> bytes:
    return _encoder.encode(value)


def decode_result(data: bytes | None) -> Any:
    return None if data is None else _decoder.decode(data)
