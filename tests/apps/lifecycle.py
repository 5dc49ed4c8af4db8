"""Task module for the lifecycle end-to-end tests: a user's own module, as a new user
would write it, with @task defaults and a rate limit."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import actorq
from actorq import task


def _runs(path: str) -> int:
    p = Path(path)
    n = int(p.read_text()) + 1 if p.exists() else 1
    p.write_text(str(n))
    return n


@task
def flaky(path: str, failures: int) -> int:
    """Raises ValueError on its first `failures` runs; returns the run number."""
    n = _runs(path)
    if n <= failures:
        raise ValueError(f"run {n} fails on purpose")
    return n


@task
def raise_key_error(*_: object) -> None:
    raise KeyError("missing")


@task(retries=2, backoff=0.05, queue="default", priority=7)
def defaulted(path: str) -> int:
    return flaky(path, 1)


@task
def log_line(path: str, tag: str) -> str:
    with Path(path).open("a") as f:
        f.write(f"{tag} {time.time():.3f}\n")
    return tag


@task(rate_limit="5/s")
def limited(path: str, tag: str) -> str:
    return log_line(path, tag)


@task
def double(x: int) -> int:
    return 2 * x


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def steps(n: int, pause: float) -> str:
    for i in range(n):
        actorq.progress((i + 1) / n, {"step": i + 1})
        time.sleep(pause)
    return "done"


@task
async def async_wait(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "finished"


@task
def runs_its_own_loop(x: int) -> int:
    """A plain function that runs async code of its own, as users' sync tasks do."""
    async def doubled() -> int:
        await asyncio.sleep(0.01)
        return 2 * x
    return asyncio.run(doubled())
