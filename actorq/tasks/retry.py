"""The retry policy, in one place. Pure: the actors only carry out what it says.

A task's retry options (set with `@task(...)` or `submit(...)`, checked in options.py):

- `retries` (default 0): how many times a failed run is run again;
- `backoff` (default 1 s) and `max_backoff` (default 3600 s): the delay before retry n
  is backoff * 2**(n-1), capped at max_backoff, with equal jitter (see retry_delay);
- `retry_on` (default: every exception): only these exception classes, named bare
  or as module.QualName, matched against the exception's class and its bases, are
  retried; any other failure is final at once.

Who does what:

1. The worker runs the task. When it raises (or overruns its `timeout`, raising
   TaskTimeout), the worker asks `is_retryable` and reports the failure with that
   answer (protocol.Result.retry), because only the worker has the exception object.
2. The broker (broker/state/lifecycle.py) asks `next_retry` with the run count. A
   delay means the task is `scheduled` that far ahead; None means it is `dead` (a
   dead letter a client can requeue with a fresh budget).
3. The scheduler holds the timer and says Due when it is time; the broker queues
   the task again.

A worker that dies while running a task (a crash, a hard-timeout kill) is not an
exception the task raised: the task is requeued at once, and after `max_deliveries`
such losses ([broker] config) it is dead with `WorkerLost`, so a task that kills
its worker every time cannot crash-loop its pool.
"""

from __future__ import annotations

import random

from actorq.wire.protocol import Options


def is_retryable(exc: BaseException, retry_on: list[str] | None) -> bool:
    """Whether `exc` is one of the task's retry_on exceptions (by class or base class,
    named bare or as module.QualName); every exception is when retry_on is unset."""
    if retry_on is None:
        return True
    for cls in type(exc).__mro__:
        if cls.__name__ in retry_on or f"{cls.__module__}.{cls.__qualname__}" in retry_on:
            return True
    return False


def next_retry(opts: Options | None, runs: int, retryable: bool,
               rand: random.Random | None = None) -> float | None:
    """Seconds until the task runs again after its failed run number `runs` (1-based,
    counted since it was submitted or last requeued from the dead letters), or None
    when it has failed for good."""
    if opts is None or not retryable or runs > opts.retries:
        return None
    return retry_delay(opts.backoff, opts.max_backoff, runs, rand)


def retry_delay(backoff: float, max_backoff: float, run: int,
                rand: random.Random | None = None) -> float:
    """Seconds before the retry that follows failed run number `run` (1-based).

    Exponential (backoff, 2*backoff, 4*backoff, ...) capped at max_backoff, with
    "equal jitter": half the delay is fixed and half is random, so retries of many
    tasks that failed together spread out instead of hitting a dependency at once,
    while no retry comes sooner than half its nominal delay.
    """
    nominal = min(max_backoff, backoff * 2.0 ** min(run - 1, 64))
    return nominal / 2 + (rand or random).uniform(0, nominal / 2)
