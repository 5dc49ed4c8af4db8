"""What a running task can reach of its worker: `actorq.progress()`.

The worker sets a context variable around every attempt (each runner thread and
each asyncio task has its own context), so `progress()` knows which task it
belongs to without the task passing anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import msgspec

# (task id, lease token, the worker's report function)
current: ContextVar[tuple[str, int, Callable[[str, int, float, Any], None]] | None] = \
    ContextVar("actorq_current_task", default=None)

_check = msgspec.msgpack.Encoder().encode


def progress(fraction: float, info: Any = None) -> None:
    """Report how far the running task has got (0.0..1.0), with optional msgpack-able
    `info`; `client.status(id).progress` / `.progress_info` show the latest report.

    Reports are coalesced: only the latest one per task is sent each time the worker
    flushes. Raises RuntimeError outside a running task."""
    here = current.get()
    if here is None:
        raise RuntimeError("actorq.progress() called outside a running task")
    if (isinstance(fraction, bool) or not isinstance(fraction, (int, float))
            or math.isnan(fraction) or not 0.0 <= fraction <= 1.0):
        raise ValueError(f"progress fraction must be a number in 0..1, got {fraction!r}")
    if info is not None:
        try:
            _check(info)
        except TypeError as exc:
            raise TypeError(f"progress info cannot be encoded: {exc}") from None
    task_id, token, report = here
    report(task_id, token, float(fraction), info)
