"""Doow's event budget, as the local server enforces it (the contract's "The event budget").

Per key (an organization): at most `events_per_minute` events in any rolling minute
(Doow's documented 1,000 by default; 0 turns the limit off) and, optionally, at most
`daily_cap` events per UTC day.

What counts: every event of a request the server takes (answered 202 or 207), duplicates
and events rejected in the 207 included. Doow does not publish what its budget counts; a
client that plans for the strictest reading (every event it offers in an accepted
request) never runs out of budget by surprise, and a resend of the same events after an
ambiguous failure does cost budget on a server that checks the budget before it looks
the ids up. A request that would take the key past a limit is refused whole (429) and
counts nothing, so a client that waits as told and resends gets in.

A batch larger than the per-minute limit can never fit: it is refused with 413
`batch_too_large` (see `MAX_BATCH_EVENTS`), as the contract says of batches over 1,000.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

__all__ = ["EVENT_RATE", "DAILY_CAP", "Budget", "Refusal"]

EVENTS_PER_MINUTE = 1000
WINDOW = 60.0
EVENT_RATE = "event_rate"  # the category names Doow's own SDK tests use
DAILY_CAP = "daily_cap"


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused: each category it would pass, as X-Doow-Rate-Limits
    gives it (`{"limit", "current", "retry_after"}`), and the wait before a retry fits."""

    categories: dict[str, dict[str, int]]

    @property
    def retry_after(self) -> int:
        return max(c["retry_after"] for c in self.categories.values())


class _Key:
    __slots__ = ("day", "day_count", "minute", "minute_count")

    def __init__(self) -> None:
        self.minute: deque[tuple[float, int]] = deque()  # (when, events) in the last minute
        self.minute_count = 0
        self.day = ""
        self.day_count = 0


class Budget:
    """Thread-safe; `take` checks a request and, when it fits, counts it at once."""

    def __init__(
        self,
        events_per_minute: int = EVENTS_PER_MINUTE,
        daily_cap: int | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if events_per_minute < 0:
            raise ValueError("events_per_minute: give a number of events (0 turns the limit off)")
        if daily_cap is not None and daily_cap < 1:
            raise ValueError("daily_cap: give a number of events per day, or None for no cap")
        self.events_per_minute = events_per_minute
        self.daily_cap = daily_cap
        self._clock = clock
        self._keys: dict[str, _Key] = {}
        self._lock = threading.Lock()

    def take(self, key: str, events: int) -> Refusal | None:
        """Count `events` for `key` and return None, or refuse the whole request."""
        now = self._clock()
        with self._lock:
            state = self._keys.setdefault(key, _Key())
            self._expire(state, now)
            categories: dict[str, dict[str, int]] = {}
            limit = self.events_per_minute
            if limit and state.minute_count + events > limit:
                categories[EVENT_RATE] = {
                    "limit": limit,
                    "current": state.minute_count,
                    "retry_after": self._minute_wait(state, events, now),
                }
            cap = self.daily_cap
            if cap is not None and state.day_count + events > cap:
                categories[DAILY_CAP] = {
                    "limit": cap,
                    "current": state.day_count,
                    "retry_after": _seconds_to_midnight(now),
                }
            if categories:
                return Refusal(categories)
            if limit:
                state.minute.append((now, events))
                state.minute_count += events
            state.day_count += events
            return None

    def current(self, key: str) -> int:
        """Events counted for `key` in the last minute."""
        with self._lock:
            state = self._keys.get(key)
            if state is None:
                return 0
            self._expire(state, self._clock())
            return state.minute_count

    @staticmethod
    def _expire(state: _Key, now: float) -> None:
        while state.minute and state.minute[0][0] <= now - WINDOW:
            state.minute_count -= state.minute.popleft()[1]
        day = datetime.fromtimestamp(now, timezone.utc).date().isoformat()
        if state.day != day:
            state.day, state.day_count = day, 0

    def _minute_wait(self, state: _Key, events: int, now: float) -> int:
        """Whole seconds until enough of the last minute's events expire for `events`."""
        room = self.events_per_minute - events
        count = state.minute_count
        for when, n in state.minute:
            count -= n
            if count <= room:
                return max(1, math.ceil(when + WINDOW - now))
        return math.ceil(WINDOW)


def _seconds_to_midnight(now: float) -> int:
    moment = datetime.fromtimestamp(now, timezone.utc)
    midnight = datetime.combine(
        moment.date() + timedelta(days=1), datetime.min.time(), timezone.utc
    )
    return max(1, math.ceil((midnight - moment).total_seconds()))
