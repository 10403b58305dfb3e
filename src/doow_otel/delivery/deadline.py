"""The flush deadline, from the caller (a serverless wrapper, `flush()`) to the socket.

In the public API a bound is given as seconds (`timeout=`) or as a `deadline=`, a
`time.monotonic()` value; one that clearly is not (a wall-clock timestamp, or seconds
meant as a timeout) is refused instead of silently meaning no bound, or no time at all.

On its way down, the deadline travels with the flushing call in a `ContextVar`
(`within`): the OpenTelemetry SDK's `force_flush` exports on the calling thread, and its
exporters' `export()` takes no deadline of its own, so every Doow export made inside the
block takes the smaller of its own timeout and the caller's deadline (`for_export`).
Nothing else carries a deadline: one owner, one channel.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from contextvars import ContextVar

from doow_otel.errors import ConfigurationError

__all__ = ["check_deadline", "for_export", "resolve_deadline", "within"]

AHEAD_LIMIT = 365 * 86400.0
"""A deadline further ahead than this is a wall-clock timestamp (time.time() is ~55 years
ahead of time.monotonic()); an SDK export timeout, however long, never comes near it."""
BEHIND_LIMIT = 86400.0
"""A deadline this far in the past is a number of seconds, not a time.monotonic() value."""


def check_deadline(deadline: float, argument: str = "deadline") -> float:
    """`deadline` when it can be a `time.monotonic()` value (math.inf: no bound); else a
    ConfigurationError naming `argument` and the fix."""
    if deadline == math.inf:
        return deadline
    now = time.monotonic()
    fix = f"pass timeout= (seconds), or {argument}=time.monotonic() + seconds"
    if math.isnan(deadline):
        raise ConfigurationError(f"{argument}: is NaN; {fix}")
    if deadline - now > AHEAD_LIMIT:
        raise ConfigurationError(
            f"{argument}: {deadline!r} is {deadline - now:.3g} s ahead of time.monotonic(), "
            f"so it is not a time.monotonic() value (a time.time() timestamp?); {fix}"
        )
    if now - deadline > BEHIND_LIMIT:
        raise ConfigurationError(
            f"{argument}: {deadline!r} is {now - deadline:.3g} s behind time.monotonic(), "
            f"so it is not a time.monotonic() value (a number of seconds?); {fix}"
        )
    return deadline


def resolve_deadline(deadline: float | None, timeout: float | None, default: float) -> float:
    """The `time.monotonic()` deadline of a call given `deadline=` or `timeout=` (seconds from
    now; `default` with neither)."""
    if deadline is not None:
        return check_deadline(deadline)
    return time.monotonic() + (timeout if timeout is not None else default)


_bound: ContextVar[float | None] = ContextVar("doow_flush_deadline", default=None)


@contextlib.contextmanager
def within(deadline: float | None) -> Iterator[None]:
    """Bound every Doow export made by this thread (or task) inside the block by
    `deadline` (a `time.monotonic()` value; None: no bound)."""
    token = _bound.set(deadline)
    try:
        yield
    finally:
        _bound.reset(token)


def for_export(timeout: float) -> float:
    """The deadline of an export whose own timeout is `timeout` seconds: the smaller of
    that and the bound of an enclosing `within` block.

    A bound already past means the flush's caller stopped waiting (the export queued
    behind another one on the SDK's export lock): this export runs on its own timeout.
    """
    now = time.monotonic()
    own = now + timeout
    bound = _bound.get()
    return own if bound is None or bound <= now else min(own, bound)
