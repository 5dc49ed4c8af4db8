"""Malformed HTTP requests reach the log as one WARNING line, not one traceback each.

aiohttp logs every request it cannot parse at ERROR with a full traceback: a client
sending garbage writes about 600 bytes of log per request. A malformed request is the
client's fault and needs no traceback, and a flood of them is one fact for the operator,
so each kind of error from each peer is logged at most once per window, with the count
of the ones the window swallowed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError

WINDOW_S = 60.0
# A bound on remembered (kind, peer) pairs, so that many peers cannot grow the filter.
MAX_KEYS = 1024


class MalformedRequestLog(logging.Filter):
    """A filter for the "aiohttp.server" logger; other records pass unchanged."""

    def __init__(self, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True  # a fault of ours keeps its traceback
        args = record.args if isinstance(record.args, tuple) else ()
        peer = str(args[0]) if args else "unknown peer"
        key = (type(exc).__name__, peer)
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self._window_s:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        self._forget_expired(now)
        self._seen[key] = (now, 0)
        swallowed = last[1] if last is not None else 0
        reason = (str(exc.message).strip().splitlines() or [type(exc).__name__])[0]
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "malformed HTTP request from %s: %s %s%s"
        record.args = (peer, exc.code, reason,
                       f" ({swallowed} more like it in the last {self._window_s:g} s)"
                       if swallowed else "")
        record.exc_info, record.exc_text = None, None
        return True

    def _forget_expired(self, now: float) -> None:
        if len(self._seen) < MAX_KEYS:
            return
        for key, (first, _) in list(self._seen.items()):
            if now - first >= self._window_s:
                del self._seen[key]
        while len(self._seen) >= MAX_KEYS:  # all recent: forget the oldest
            del self._seen[next(iter(self._seen))]


def install() -> None:
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestLog())
