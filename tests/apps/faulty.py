"""Task module for end-to-end tests: tasks with deliberate failure modes."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from actorq import task


@task
def add(x, y):
    return x + y


@task
def echo(value):
    return value


@task
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task
async def async_sleep(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@task
def boom(message: str) -> None:
    raise ValueError(message)


@task
def crash() -> None:
    """Takes the whole worker process down, as a segfault or OOM kill would."""
    os._exit(13)


@task
def big_result(n_bytes: int) -> bytes:
    return b"x" * n_bytes


@task
def unencodable_result() -> object:
    return object()


@task
def record(path: str, tag: str) -> str:
    """Append a line per run, so a test can count how often a task really ran."""
    with Path(path).open("a") as f:
        f.write(f"{tag} {os.getpid()}\n")
    return tag


@task
def record_slowly(path: str, tag: str, seconds: float) -> str:
    """record(), then take `seconds`: a run that a test can catch in the middle."""
    record(path, tag)
    time.sleep(seconds)
    return tag


@task
def whoami() -> int:
    return os.getpid()


_overlap = {"now": 0, "max": 0}


@task
async def overlap(seconds: float) -> int:
    """Returns the most copies of itself this worker ran at once, so far."""
    _overlap["now"] += 1
    _overlap["max"] = max(_overlap["max"], _overlap["now"])
    try:
        await asyncio.sleep(seconds)
    finally:
        _overlap["now"] -= 1
    return _overlap["max"]


@task
def slow_record(path: str, tag: str, seconds: float) -> str:
    """Run for `seconds`, then append a line: a test counts how often each tag ran."""
    time.sleep(seconds)
    with Path(path).open("a") as f:
        f.write(f"{tag}\n")
    return tag
