"""Malformed HTTP requests reach the log as one WARNING line, not one traceback each.

aiohttp logs every request it cannot parse at ERROR with a full traceback: a client
sending garbage writes about 600 bytes of log per request. A malformed request is the
client's fault and needs no traceback, and a flood of them is one fact for the operator,
so each kind of error from each peer is logged at most once per window (node/ratelog.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError

from actorq.node.ratelog import WINDOW_S, Throttle, swallowed_note


class MalformedRequestLog(logging.Filter):
    """A filter for the "aiohttp.server" logger; other records pass unchanged."""

    def __init__(self, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.throttle = Throttle(window_s)
        self._clock = clock

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True  # a fault of ours keeps its traceback
        args = record.args if isinstance(record.args, tuple) else ()
        peer = str(args[0]) if args else "unknown peer"
        swallowed = self.throttle.admit((type(exc).__name__, peer), self._clock())
        if swallowed is None:
            return False
        reason = (str(exc.message).strip().splitlines() or [type(exc).__name__])[0]
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "malformed HTTP request from %s: %s %s%s"
        record.args = (peer, exc.code, reason, swallowed_note(swallowed, self.throttle))
        record.exc_info, record.exc_text = None, None
        return True


def install() -> None:
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestLog())
