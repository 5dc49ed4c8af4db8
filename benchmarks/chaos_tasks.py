"""The tasks the chaos runner submits (benchmarks/chaos.py): each result says which
task it is, so a result given to the wrong task shows."""

from __future__ import annotations

import os
import time

from actorq import task


@task
def echo_after(value: int, seconds: float) -> int:
    time.sleep(seconds)
    return value


@task
def poison(n: int) -> None:
    """Takes its worker process down every time, as a segfault would."""
    os._exit(13)
