"""Task ids, made by the client that submits them.

An id is milliseconds since the epoch first (so ids sort by creation time, which
keeps the SQLite store's inserts local), then a per-client counter (so a client's
ids of one millisecond keep their order, which a recovered broker's FIFO relies on),
then 48 random bits, so that nobody can guess another client's next id and submit
it first (the broker also refuses an id that another client holds). 31 characters,
not more: CPython stores a string of up to 31 ASCII characters in an 80-byte block
and one of 32 to 47 in a 96-byte one, and the broker keeps one id per task (16 MB
of a million-task backlog).
"""

from __future__ import annotations

import itertools
import os
import time

RANDOM_DIGITS = 12  # hex digits of randomness in an id (48 bits)
SEQ_MASK = 0xFFFFFFF  # the counter: 7 hex digits
RANDOM_BYTES_PER_DRAW = 3072  # one os.urandom call makes the random digits of 512 ids


class TaskIds:
    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._tails: list[str] = []  # one()'s random parts, made a few hundred at a time
        self._base = ""  # one()'s millisecond prefix, and until when it holds
        self._base_until = 0.0

    @staticmethod
    def _stamp() -> str:
        return f"{int(time.time() * 1000):011x}"

    def one(self) -> str:
        # The millisecond part is formatted once a millisecond, not once an id: a
        # tight loop of submit() spent a fifth of its time building it. Random digits
        # come from one os.urandom call per few hundred ids, for the same reason.
        now = time.monotonic()
        if now >= self._base_until:
            self._base = self._stamp()
            self._base_until = now + 0.001
        tails = self._tails
        if not tails:
            digits = os.urandom(RANDOM_BYTES_PER_DRAW).hex()
            tails += [digits[i:i + RANDOM_DIGITS] for i in range(0, len(digits), RANDOM_DIGITS)]
        return f"{self._base}{next(self._counter) & SEQ_MASK:07x}-{tails.pop()}"

    def many(self, n: int) -> list[str]:
        base = self._stamp()
        counter = self._counter
        digits = os.urandom(RANDOM_DIGITS * n // 2).hex()
        return [f"{base}{next(counter) & SEQ_MASK:07x}-"
                f"{digits[i * RANDOM_DIGITS:(i + 1) * RANDOM_DIGITS]}" for i in range(n)]
