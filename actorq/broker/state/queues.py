"""A named queue: highest priority first, FIFO within a priority. Pure.

One deque per priority level and a sorted list of the levels in use: push and pop
are O(1) plus a bisect over at most 256 levels, cheaper than a heap of every task
when (as usual) a handful of priorities are in use.

Entries are removed lazily: a task cancelled while queued stays in its deque and
is skipped when it reaches the head, because `is_live` says so. Deleting from the
middle of a deque would be O(n).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class _Prioritised(Protocol):
    priority: int


T = TypeVar("T", bound=_Prioritised)


class TaskQueue(Generic[T]):
    __slots__ = ("_levels", "_order", "_is_live")

    def __init__(self, is_live: Callable[[T], bool]) -> None:
        self._levels: dict[int, deque[T]] = {}
        self._order: list[int] = []  # negated priorities in use, ascending = highest first
        self._is_live = is_live

    def _level(self, priority: int) -> deque[T]:
        level = self._levels.get(priority)
        if level is None:
            level = self._levels[priority] = deque()
            bisect.insort(self._order, -priority)
        return level

    def lane(self, priority: int) -> deque[T]:
        """The deque that push() appends items of `priority` to: a batch of the same
        priority goes there without a call per item."""
        return self._level(priority)

    def push(self, item: T) -> None:
        """Add behind everything of the same priority."""
        self._level(item.priority).append(item)

    def push_front(self, item: T) -> None:
        """Add ahead of everything of the same priority (a requeued task keeps its place)."""
        self._level(item.priority).appendleft(item)

    def _prune(self) -> deque[T] | None:
        """Drop dead entries at the head; return the highest non-empty level."""
        while self._order:
            prio = -self._order[0]
            level = self._levels[prio]
            while level and not self._is_live(level[0]):
                level.popleft()
            if level:
                return level
            del self._levels[prio]
            self._order.pop(0)  # at most 256 levels: cheap
        return None

    def peek_priority(self) -> int | None:
        """Priority of the item pop() would return, or None when empty."""
        level = self._prune()
        return None if level is None else level[0].priority

    def pop(self) -> T | None:
        level = self._prune()
        return None if level is None else level.popleft()

    def pop_many(self, n: int) -> list[T]:
        """Up to `n` live items in pop() order: what one worker's credit takes in a
        dispatch, without a call per item to find the level again."""
        out: list[T] = []
        is_live = self._is_live
        while len(out) < n:
            level = self._prune()
            if level is None:
                break
            want = n - len(out)
            while level and want:
                item = level.popleft()
                if is_live(item):
                    out.append(item)
                    want -= 1
        return out

    def entries(self) -> int:
        """Entries held, dead ones included (the live count is the broker's to keep)."""
        return sum(len(level) for level in self._levels.values())

    def by_priority(self) -> dict[int, int]:
        """Entries per priority level, highest first (dead ones not yet skipped included)."""
        return {-neg: len(self._levels[-neg]) for neg in self._order if self._levels[-neg]}

    def heads(self) -> list[T]:
        """The first live item of each level: the oldest queued is among them (FIFO)."""
        out = []
        for level in self._levels.values():
            for item in level:
                if self._is_live(item):
                    out.append(item)
                    break
        return out

    def drain(self) -> list[T]:
        """Take every entry out (dead ones included), highest priority first."""
        out = [item for neg in self._order for item in self._levels[-neg]]
        self._levels.clear()
        self._order.clear()
        return out

