"""Pacing: send at the pace of Doow's event budget, instead of meeting 429 after 429.

Doow takes a bounded number of events per organization in any rolling minute (1,000,
its SDK documentation says), and answers 429 past it. Events are the scarce resource, so
sends are paced by events, not requests, and counted as Doow counts them: the events
sent in the last minute (a log of them, per second), and a batch goes when it fits
beside them. A token bucket holding a minute of budget would not do: it lets a full
minute's events go at the end of one minute and again at the start of the next, twice
the budget in one rolling minute (the bench's 4-worker service met 429s at every window
boundary that way). The minute is counted a little longer than Doow's (`WINDOW_SECONDS`)
because Doow counts a batch when it arrives, a moment after it was counted here.

The budget is given (`events_per_minute`), or learned: it starts at Doow's documented
1,000, takes the `limit` of a 429's `X-Doow-Rate-Limits` `event_rate` category, and, as
several senders share one organization's budget without seeing each other, an overload
halves this sender's share of it and quiet time gives it back, a quarter of the budget a
minute (additive increase, multiplicative decrease, as TCP shares a link). One overload
halves once: the 429s of batches in flight together, answered before the first one's wait
has passed, are one signal (as TCP reduces once per round trip). A 429's wait
(`Retry-After`, every category's `retry_after`) holds every send until it has passed.

Processes that share a spool directory and a key (the workers of one service) share one
log: its state is a small file beside the spool, one per endpoint and key (the spool's
owner: a budget is an organization's, and a local test server's 429s must not slow a
production key that shares the user cache), read and written under an exclusive lock, so
four workers pace as one sender. Without a file the log is this process's.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from doow_otel.delivery.status import RateLimit

__all__ = ["DEFAULT_EVENTS_PER_MINUTE", "Pacer"]

DEFAULT_EVENTS_PER_MINUTE = 1000
"""Doow's documented event budget of an organization."""
WINDOW_SECONDS = 62
"""Doow's minute, and 2 s for a batch's way there: a batch counted here at second t is
counted by Doow when it arrives, so it leaves this log later than it was sent."""
MIN_SHARE = 1 / 64
"""The smallest share of the budget a sender keeps after 429s (it still probes)."""
RECOVERY_PER_MINUTE = 0.25
"""The share of the budget given back to a sender per minute of quiet (from 1/16 to the
whole budget in under four minutes; at a tenth, the over-budget fault row used a quarter
of the budget for minutes after the load stopped)."""
QUIET_SECONDS = 30.0
"""How long after a 429's wait has passed before the share starts to grow again."""

try:
    import fcntl
except ImportError:  # Windows: no shared log, each process paces alone
    fcntl = None  # type: ignore[assignment]


@dataclass
class _State:
    limit: float  # the organization's events per minute, as known
    share: float  # this sender's share of it (0..1]
    at: float  # wall clock the share was last brought up to date
    sent: list[list[int]] = field(default_factory=list)  # [second, events], oldest first
    blocked_until: float = 0.0  # wall clock: no send before (a 429's wait)
    last_throttle: float = 0.0  # wall clock of the last 429

    @property
    def per_minute(self) -> float:
        return self.limit * self.share

    def in_window(self) -> int:
        return sum(events for _, events in self.sent)


class Pacer:
    """The events sent in the last minute, against the budget; thread-safe, shared with
    the processes that use `state_file`."""

    def __init__(
        self, events_per_minute: int | None = None, *, state_file: Path | None = None
    ) -> None:
        self.fixed = events_per_minute is not None
        self._initial = float(events_per_minute or DEFAULT_EVENTS_PER_MINUTE)
        self._path = state_file
        self._memory = _State(self._initial, 1.0, time.time())
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Pacer({self.events_per_minute:.0f} events/minute)"

    @property
    def events_per_minute(self) -> float:
        """The rate this sender paces to now."""
        return self._read_only().per_minute

    def wait(self, events: int) -> float:
        """Seconds until `events` may go (0: now). A batch larger than the budget waits
        until nothing else was sent for a minute, and goes."""
        return self._wait(self._read_only(), events, time.time())

    def acquire(self, events: int) -> float:
        """Count `events` as sent if they may go now (returns 0); else count nothing and
        return the seconds until they may."""
        with self._state() as state:
            now = time.time()
            wait = self._wait(state, events, now)
            if wait <= 0:
                self._add(state, events, now)
            return wait

    @staticmethod
    def _wait(state: _State, events: int, now: float) -> float:
        blocked = max(0.0, state.blocked_until - now)
        room = state.per_minute - min(float(events), state.per_minute)
        used = state.in_window()
        for second, count in state.sent:  # the sends that must age out first, oldest first
            if used <= room:
                break
            used -= count
            blocked = max(blocked, second + WINDOW_SECONDS - now)
        return blocked

    def in_window(self) -> int:
        """Events sent in the last minute, as Doow counts them."""
        return self._read_only().in_window()

    def available(self) -> float:
        """Events that may go now."""
        state = self._read_only()
        if state.blocked_until > time.time():
            return 0.0
        return max(0.0, state.per_minute - state.in_window())

    def take(self, events: int) -> None:
        """`events` go now (the budget may be overspent: later sends wait for it); a
        negative number gives back events counted but not taken by Doow."""
        with self._state() as state:
            self._add(state, events, time.time())

    @staticmethod
    def _add(state: _State, events: int, now: float) -> None:
        if events >= 0:
            second = math.ceil(now)  # rounded up: the log never lets a send age out early
            if state.sent and state.sent[-1][0] == second:
                state.sent[-1][1] += events
            else:
                state.sent.append([second, events])
            return
        back = -events  # from the newest sends: the batch just counted
        while back and state.sent:
            given = min(back, state.sent[-1][1])
            state.sent[-1][1] -= given
            back -= given
            if not state.sent[-1][1]:
                state.sent.pop()

    def throttled(self, retry_after: float | None, budget: RateLimit | None) -> None:
        """Doow answered 429: hold every send for its wait, learn the budget it names, and
        halve this sender's share (unless the budget was given)."""
        with self._state() as state:
            now = time.time()
            new_overload = now >= state.blocked_until  # else a 429 of the same one
            if retry_after:
                state.blocked_until = max(state.blocked_until, now + retry_after)
            if budget is not None and budget.limit and not self.fixed:
                state.limit = budget.limit
            if not self.fixed and new_overload:
                state.share = max(MIN_SHARE, state.share / 2)
            state.last_throttle = now

    # --- the state: this process's, or the directory's file under a lock ---

    def _update(self, state: _State, now: float) -> None:
        """Age out the sends older than the window; give the share back in quiet time."""
        while state.sent and state.sent[0][0] + WINDOW_SECONDS <= now:
            state.sent.pop(0)
        quiet_from = max(state.last_throttle, state.blocked_until) + QUIET_SECONDS
        if not self.fixed and state.share < 1.0 and now > quiet_from:
            minutes = (now - max(quiet_from, state.at)) / 60.0
            state.share = min(1.0, state.share + RECOVERY_PER_MINUTE * minutes)
        state.at = max(state.at, now)

    def _read_only(self) -> _State:
        with self._state() as state:
            return _State(**asdict(state))

    @contextlib.contextmanager
    def _state(self) -> Iterator[_State]:
        with self._lock:
            if self._path is None or fcntl is None:
                self._update(self._memory, time.time())
                yield self._memory
                return
            try:
                fd = self._open(self._path)
            except OSError:  # an unusable directory: pace alone (the spool reports it)
                self._update(self._memory, time.time())
                yield self._memory
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                state = self._load(fd)
                self._update(state, time.time())
                yield state
                self._memory = state
                data = json.dumps(asdict(state)).encode()
                with contextlib.suppress(OSError):  # a full disk: this process's view holds
                    os.lseek(fd, 0, os.SEEK_SET)
                    os.write(fd, data)
                    os.ftruncate(fd, len(data))
            finally:
                os.close(fd)  # releases the lock

    @staticmethod
    def _open(path: Path) -> int:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def _load(self, fd: int) -> _State:
        try:
            raw = json.loads(os.read(fd, 65536) or b"null")
            state = _State(**raw)
        except (ValueError, TypeError):  # new, or not ours: start afresh
            return _State(self._memory.limit, 1.0, time.time(), list(self._memory.sent))
        if self.fixed:
            state.limit, state.share = self._initial, 1.0
        return state
