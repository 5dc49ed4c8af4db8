"""Cron schedules: checking entries and computing due times. Pure.

Parsing is croniter's (a well-kept library; cron syntax has enough corners —
ranges, steps, names, day-of-month/day-of-week rules — that hand-written parsing
would be a source of bugs). Schedules are five standard fields, or six with a
leading seconds field, evaluated in UTC.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_CATCH_UP = 10  # due times fired at once for one entry after the scheduler was away


@cache
def _croniter() -> Any:
    """croniter and dateutil, loaded when a schedule is first looked at: ~3 MB of
    resident memory that a broker without crons should not carry."""
    from croniter import croniter

    return croniter


def check_schedule(schedule: str) -> str | None:
    """A message saying what is wrong with `schedule`, or None."""
    if not isinstance(schedule, str):
        return f"schedule must be a string, got {schedule!r}"
    fields = schedule.split()
    if len(fields) not in (5, 6):
        return (f"schedule {schedule!r} has {len(fields)} fields; expected 5 "
                "(minute hour day month weekday) or 6 (seconds first)")
    if not _croniter().is_valid(schedule, second_at_beginning=True):
        return f"schedule {schedule!r} is not valid cron syntax"
    return None


def check_entry(name: str, schedule: str, task: str, queue: str, priority: int) -> str | None:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        return f"cron name {name!r} must be 1..64 of letters, digits, '_', '.', ':', '-'"
    if not isinstance(task, str) or ":" not in task:
        return f"cron task {task!r} is not of the form 'module:function'"
    if not isinstance(queue, str) or not queue:
        return "cron queue must be a non-empty string"
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 255:
        return f"cron priority must be an int in 0..255, got {priority!r}"
    return check_schedule(schedule)


def next_after(schedule: str, after: float) -> float:
    """The first due time (unix seconds, UTC) strictly after `after`."""
    return _croniter()(schedule, after, second_at_beginning=True, ret_type=float).get_next()


def due_between(schedule: str, after: float, until: float) -> tuple[list[float], float]:
    """Due times in (after, until] (the first MAX_CATCH_UP of them at most) and the next
    due time after `until`."""
    it = _croniter()(schedule, after, second_at_beginning=True, ret_type=float)
    due: list[float] = []
    t = it.get_next()
    while t <= until:
        due.append(t)
        if len(due) > MAX_CATCH_UP:
            # A long absence: skip to the present rather than replay every missed run.
            it = _croniter()(schedule, until - 1e-6, second_at_beginning=True, ret_type=float)
            due = due[-MAX_CATCH_UP:]
            t = it.get_next()
            while t <= until:
                t = it.get_next()
            break
        t = it.get_next()
    return due, t
