"""One recognizer for every stream of a live run: a single worker thread takes the streams' windows in turn.

Fair, and never a backlog: each stream holds at most one window waiting. A newer window of the same stream replaces
the one waiting (the older is stale: the stream counts it as dropped), and a stream whose window is being recognised
drops its next ones until it is done, as one stream always has. The worker takes the waiting windows in the order
their streams began waiting, so with N streams a window waits for at most the N - 1 others' recognitions and no
stream starves, however slow another stream's windows are. With one stream this is exactly the single worker that
drops a window while it is busy.

The door to batching: ``take`` hands the worker a list of windows. Today it is one (``batch = 1``); an engine with a
batch axis (several windows in one GPU call) can take up to its batch from the waiting streams at once."""

from __future__ import annotations

import threading
from typing import Callable, Hashable

QUEUED, REPLACED, BUSY = "queued", "replaced", "busy"  # what became of a window offered to the scheduler


class Scheduler:
    def __init__(self, batch: int = 1):
        self.batch = batch
        self._cond = threading.Condition()
        self._waiting: dict[Hashable, Callable[[], None]] = {}  # insertion order = the order streams began waiting
        self._running: set[Hashable] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

    def busy(self, stream: Hashable) -> bool:
        """A window of ``stream`` is being recognised now."""
        with self._cond:
            return stream in self._running

    @property
    def working(self) -> bool:
        """A window of some stream is being recognised now."""
        with self._cond:
            return bool(self._running)

    def offer(self, stream: Hashable, work: Callable[[], None], wait: bool = False) -> str:
        """Hand over ``stream``'s newest window (``work`` recognises it and reports the result). BUSY: its previous
        window is being recognised, this one is dropped; REPLACED: it took the place (and turn) of the stream's
        waiting window, which is dropped; QUEUED. ``wait``: wait until the stream has nothing waiting or running
        instead (windows no later input can replace: a clip's, as fast as possible)."""
        with self._cond:
            if wait:
                while stream in self._running or stream in self._waiting:
                    self._cond.wait()
            elif stream in self._running:
                return BUSY
            outcome = REPLACED if stream in self._waiting else QUEUED
            self._waiting[stream] = work  # a replaced window keeps its stream's place in line
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True, name="r1omni-recognizer")
                self._thread.start()
            self._cond.notify_all()
            return outcome

    def withdraw(self, stream: Hashable) -> bool:
        """Take back ``stream``'s waiting window (a stream that stops); True when there was one."""
        with self._cond:
            found = self._waiting.pop(stream, None) is not None
            self._cond.notify_all()
            return found

    def idle(self, stream: Hashable, timeout: float | None = None) -> bool:
        """Wait until ``stream`` has no window waiting or running; False when ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: stream not in self._running and stream not in self._waiting, timeout)

    def take(self) -> list[tuple[Hashable, Callable[[], None]]]:
        """The next windows for the worker (up to ``batch``), longest waiting first; [] once closed and empty."""
        with self._cond:
            self._cond.wait_for(lambda: self._waiting or self._closed)
            taken = []
            while self._waiting and len(taken) < self.batch:
                stream = next(iter(self._waiting))
                taken.append((stream, self._waiting.pop(stream)))
                self._running.add(stream)
            return taken

    def _loop(self) -> None:
        while True:
            taken = self.take()
            if not taken:
                return
            for stream, work in taken:
                try:
                    work()  # reports its own failure as the stream's event
                finally:
                    with self._cond:
                        self._running.discard(stream)
                        self._cond.notify_all()

    def close(self) -> None:
        """No more windows: the worker ends after those waiting."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
