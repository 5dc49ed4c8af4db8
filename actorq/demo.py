"""Demo tasks so `bin/actorq run configs/local.toml` does something out of the box."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from actorq.tasks.registry import task
from actorq.worker.context import progress


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


@task
def double(x: float) -> float:
    return 2 * x


@task
def flaky(path: str, failures: int) -> int:
    """Raises ValueError on its first `failures` runs (counted in the file at `path`);
    returns the run number. For trying retries."""
    p = Path(path)
    n = int(p.read_text()) + 1 if p.exists() else 1
    p.write_text(str(n))
    if n <= failures:
        raise ValueError(f"run {n} fails on purpose")
    return n


@task
def steps(n: int, pause: float) -> str:
    """Reports progress after each of `n` steps of `pause` seconds."""
    for i in range(n):
        time.sleep(pause)
        progress((i + 1) / n, {"step": i + 1})
    return "done"
