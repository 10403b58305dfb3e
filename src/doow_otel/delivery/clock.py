"""The window clock: one daemon thread that calls back at clock-aligned window boundaries.

Boundaries are multiples of the window in Unix time (every minute on the minute for 60 s
windows), so every process of a service seals the same minutes; each waits a random
moment (up to a twentieth of the window, at most 3 s) past the boundary so that they do
not all send at the same instant. The callback runs even when nothing was recorded: the
backlog of a process that records nothing new still drains, and dead processes'
journals are still found.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

__all__ = ["WindowClock", "next_boundary"]

MAX_SPREAD = 3.0


def next_boundary(now: float, window: float) -> float:
    """The first multiple of `window` after `now` (Unix seconds)."""
    return (now // window + 1) * window


class WindowClock:
    def __init__(self, tick: Callable[[], object], window: float) -> None:
        self.tick = tick
        self.window = window
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="doow-window", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        spread = min(MAX_SPREAD, self.window / 20)
        while not self._stop.is_set():
            now = time.time()
            due = next_boundary(now, self.window) + random.uniform(0, spread)
            if self._stop.wait(due - now):
                return
            self.tick()
