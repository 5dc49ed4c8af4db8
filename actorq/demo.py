"""Demo tasks so `bin/actorq run configs/local.toml` does something out of the box."""

from __future__ import annotations

import asyncio
import time

from .tasks import task


@task
def add(x: float, y: float) -> float:
    return x + y


@task
def noop() -> None:
    return None


@task
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task
async def async_sleep(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@task
def fail(message: str = "demo failure") -> None:
    raise RuntimeError(message)


@task
def fib(n: int) -> int:
    """CPU-bound on purpose: naive recursion."""
    return n if n < 2 else fib(n - 1) + fib(n - 2)


@task
def spin(ms: float) -> int:
    """Burn the CPU for about `ms` milliseconds; returns loop iterations."""
    end = time.perf_counter() + ms / 1000.0
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


@task
async def async_noop() -> None:
    return None
