"""Task options: what `@task(...)` and `submit(...)` accept, checked and turned into
the wire's `Options`.

Both places take the same keyword names; a submission's options start from its
task's @task defaults and the call's own override them. Every check happens here,
in the client, before anything is sent, and each error names the option. The
broker checks again (a client may be out of date or hostile) with `broker_check`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from actorq.errors import SubmitRejected
from actorq.wire import protocol as p

MAX_PRIORITY = 255
MAX_KEY_LENGTH = 200
MAX_NAME_LENGTH = 200  # a task or queue name (the broker checks it too)
# Options a submission may carry, beyond name/args/kwargs.
SUBMIT_OPTIONS = frozenset({
    "queue", "priority", "retries", "backoff", "max_backoff", "retry_on", "timeout",
    "expires", "delay", "eta", "depends_on", "key", "ignore_result",
})
# Only @task may say these: they describe the task, not one submission.
TASK_ONLY_OPTIONS = frozenset({"name", "rate_limit"})

_RATE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*")
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
        "h": 3600.0, "hour": 3600.0}


def bad(message: str) -> SubmitRejected:
    return SubmitRejected("bad_option", message)


def parse_rate(text: Any) -> float:
    """"100/s", "10/m", "5/h" -> dispatches per second."""
    m = _RATE_RE.fullmatch(text) if isinstance(text, str) else None
    if not m or float(m.group(1)) <= 0:
        raise bad(f"rate_limit must look like '100/s', '10/m' or '5/h', got {text!r}")
    return float(m.group(1)) / _PER[m.group(2)]


def _number(name: str, value: Any, *, minimum: float, inclusive: bool) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)
            or (value < minimum if inclusive else value <= minimum)):
        op = ">=" if inclusive else ">"
        raise bad(f"{name} must be a number {op} {minimum:g}, got {value!r}")
    return float(value)


def _when(name: str, value: Any) -> float:
    if not isinstance(value, dt.datetime):
        raise bad(f"{name} must be a datetime, got {value!r}")
    return value.timestamp()  # a naive datetime is local time, as datetime.timestamp() says


def _exception_name(value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, type) and issubclass(value, BaseException):
        return value.__name__ if value.__module__ == "builtins" else \
            f"{value.__module__}.{value.__qualname__}"
    raise bad(f"retry_on must hold exception classes (or their names), got {value!r}")


def check(options: dict[str, Any]) -> None:
    """Validate option values without building anything (used by @task at import)."""
    for name in options:
        if name not in SUBMIT_OPTIONS and name not in TASK_ONLY_OPTIONS:
            raise TypeError(f"unknown task option {name!r}")
    build(options, now=0.0)
    if options.get("rate_limit") is not None:
        parse_rate(options["rate_limit"])


def build(o: dict[str, Any], now: float) -> tuple[str, int, p.Options | None]:
    """(queue, priority, Options or None) from merged options; `now` is unix time."""
    queue = o.get("queue")
    if queue is None:
        queue = "default"
    elif not isinstance(queue, str) or not 0 < len(queue) <= MAX_NAME_LENGTH:
        raise bad(f"queue must be a string of 1..{MAX_NAME_LENGTH} characters, got "
                  f"{queue[:50] if isinstance(queue, str) else queue!r}")
    priority = o.get("priority")
    if priority is None:
        priority = 0
    elif (not isinstance(priority, int) or isinstance(priority, bool)
          or not 0 <= priority <= MAX_PRIORITY):
        raise bad(f"priority must be an int in 0..{MAX_PRIORITY}, got {priority!r}")

    fields: dict[str, Any] = {}
    retries = o.get("retries")
    if retries is not None:
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise bad(f"retries must be an int >= 0, got {retries!r}")
        if retries:
            fields["retries"] = retries
    if o.get("backoff") is not None:
        fields["backoff"] = _number("backoff", o["backoff"], minimum=0, inclusive=False)
    if o.get("max_backoff") is not None:
        fields["max_backoff"] = _number("max_backoff", o["max_backoff"], minimum=0,
                                        inclusive=False)
    if fields.get("max_backoff", 3600.0) < fields.get("backoff", 1.0):
        raise bad("max_backoff must be >= backoff")
    retry_on = o.get("retry_on")
    if retry_on is not None:
        items = retry_on if isinstance(retry_on, (tuple, list)) else (retry_on,)
        if not items:
            raise bad("retry_on must name at least one exception (or be left out)")
        fields["retry_on"] = [_exception_name(x) for x in items]
    if o.get("timeout") is not None:
        fields["timeout"] = _number("timeout", o["timeout"], minimum=0, inclusive=False)

    expires = o.get("expires")
    if expires is not None:
        if isinstance(expires, dt.datetime):
            fields["expires_at"] = _when("expires", expires)
        else:
            fields["expires_at"] = now + _number("expires", expires, minimum=0, inclusive=False)
    delay, eta = o.get("delay"), o.get("eta")
    if delay is not None and eta is not None:
        raise bad("delay and eta are both given; use one of them")
    if delay is not None:
        seconds = _number("delay", delay, minimum=0, inclusive=True)
        if seconds > 0:
            fields["not_before"] = now + seconds
    elif eta is not None:
        fields["not_before"] = _when("eta", eta)

    deps = o.get("depends_on")
    if deps is not None:
        items = deps if isinstance(deps, (tuple, list)) else (deps,)
        ids = [getattr(d, "id", d) for d in items]  # handles or ids
        if not all(isinstance(i, str) and i for i in ids):
            raise bad(f"depends_on must hold task ids or handles, got {deps!r}")
        if ids:
            fields["depends_on"] = ids
    key = o.get("key")
    if key is not None:
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
            raise bad(f"key must be a string of 1..{MAX_KEY_LENGTH} characters, got {key!r}")
        fields["key"] = key
    ignore = o.get("ignore_result")
    if ignore is not None:
        if not isinstance(ignore, bool):
            raise bad(f"ignore_result must be True or False, got {ignore!r}")
        if ignore:
            fields["ignore_result"] = True
    if o.get("pipe"):
        fields["pipe"] = True
    return queue, priority, (p.Options(**fields) if fields else None)


def broker_check(opts: p.Options, max_deps: int = 10_000) -> str | None:
    """The broker's own check of options off the wire: a message, or None when fine."""
    if opts.retries < 0:
        return f"retries must be >= 0, got {opts.retries}"
    if not opts.backoff > 0 or not opts.max_backoff > 0:
        return "backoff and max_backoff must be > 0"
    if opts.timeout < 0:
        return f"timeout must be >= 0, got {opts.timeout}"
    if opts.depends_on is not None and len(opts.depends_on) > max_deps:
        return f"depends_on lists {len(opts.depends_on)} tasks, over the limit of {max_deps}"
    if opts.pipe and not opts.depends_on:
        return "pipe needs a task in depends_on"
    if opts.key is not None and not 0 < len(opts.key) <= MAX_KEY_LENGTH:
        return f"key must be 1..{MAX_KEY_LENGTH} characters"
    return None
