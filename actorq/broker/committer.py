"""Group commit off the broker's loop: SQLite writes one batch while the loop goes on.

Most of a commit is SQLite's own work (sqlite3_step releases the GIL), so on a
thread of its own it overlaps the loop's handling of the next messages instead of
stalling it. The promise stays the same as a commit inside the loop: nothing a
turn decided is sent before the transaction holding that turn's changes is on
disk. The broker holds each turn's outbox and releases it when the commit that
covers it is done; changes made meanwhile go into the next commit, so while the
disk is busy the batches grow instead of queueing up (one commit in flight).
"""

from __future__ import annotations

import os
import queue
import threading

from actorq.storage.journal import Batch
from actorq.storage.sqlite import DiskFull, Store, StorageError


class Committer:
    def __init__(self, store: Store) -> None:
        self.store = store
        # The writer says "done" by writing a byte here; the loop polls it beside its
        # sockets, so it wakes for a finished commit as for a message.
        self.fd, self._done_w = os.pipe()
        os.set_blocking(self.fd, False)
        self._batches: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self.busy = False
        # The batch of a commit that found the disk full: nothing after it may be
        # written before it is (rows are versions of tasks: order matters).
        self.stalled: Batch | None = None
        self._last: Batch | None = None
        self._thread = threading.Thread(target=self._write_loop, name="actorq-commit",
                                         daemon=True)
        self._thread.start()

    def start(self, batch: Batch) -> None:
        """Begin committing `batch`; the caller waits for `finished()` before the next."""
        assert not self.busy and self.stalled is None, "one commit in flight at a time"
        self.busy = True
        self._last = batch
        self._batches.put(batch)

    def retry(self) -> None:
        """Try the stalled batch again (the disk was full)."""
        batch, self.stalled = self.stalled, None
        self.start(batch)

    def finished(self) -> bool:
        """True once the commit in flight is done (call when `fd` is readable).
        Raises DiskFull if the disk was full (the batch is kept: `retry`), StorageError
        if it failed otherwise: nothing it covered may be sent."""
        try:
            if not os.read(self.fd, 64):
                return False
        except BlockingIOError:
            return False
        self.busy = False
        if self._error is not None:
            error, self._error = self._error, None
            if isinstance(error, DiskFull):
                self.stalled = self._last
                raise error
            if isinstance(error, StorageError):  # it names the store (Deposed among them)
                raise error
            raise StorageError(f"{self.store.path}: commit failed: {error}") from error
        self._last = None
        return True

    def wait(self) -> None:
        """Block until the commit in flight (if any) is done."""
        if self.busy:
            os.set_blocking(self.fd, True)
            try:
                self.finished()
            finally:
                os.set_blocking(self.fd, False)

    def close(self) -> None:
        """Finish the commit in flight and stop the writer thread."""
        self.wait()
        self._batches.put(None)
        self._thread.join(timeout=30)
        os.close(self.fd)
        os.close(self._done_w)

    def _write_loop(self) -> None:
        while (batch := self._batches.get()) is not None:
            try:
                self.store.write(batch)
            except BaseException as exc:  # reported to the loop, which stops the broker
                self._error = exc
            os.write(self._done_w, b"x")
