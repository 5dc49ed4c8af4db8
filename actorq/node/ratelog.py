"""Once per key per window: how a flood of the same complaint becomes one log line.

Bad input arrives in floods (a broken client retrying, a scanner, garbage on a port).
Each kind from each peer is worth one line a window, and the line after the window
says how many the window swallowed, so an operator hears about it without the log
growing with the flood.
"""

from __future__ import annotations

WINDOW_S = 60.0
MAX_KEYS = 1024  # remembered keys, so that many peers cannot grow the throttle


class Throttle:
    def __init__(self, window_s: float = WINDOW_S, max_keys: int = MAX_KEYS) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self._seen: dict[object, tuple[float, int]] = {}  # key -> (logged at, swallowed since)

    def admit(self, key: object, now: float) -> int | None:
        """None: stay quiet. Otherwise log now; the int is how many were swallowed since."""
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.window_s:
            self._seen[key] = (last[0], last[1] + 1)
            return None
        if last is None and len(self._seen) >= self.max_keys:
            self._forget(now)
        self._seen[key] = (now, 0)
        return last[1] if last is not None else 0

    def __len__(self) -> int:
        return len(self._seen)

    def _forget(self, now: float) -> None:
        for key, (logged, _) in list(self._seen.items()):
            if now - logged >= self.window_s:
                del self._seen[key]
        while len(self._seen) >= self.max_keys:  # all recent: forget the oldest
            del self._seen[next(iter(self._seen))]


def swallowed_note(swallowed: int, throttle: Throttle) -> str:
    """The tail of an admitted line: how many like it the last window held."""
    if not swallowed:
        return ""
    return f" ({swallowed} more like it in the last {throttle.window_s:g} s)"
