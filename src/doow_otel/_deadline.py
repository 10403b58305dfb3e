"""Deadlines in the public API: seconds (`timeout=`) first; a `deadline=` is a `time.monotonic()`
value, and one that clearly is not (a wall-clock timestamp, or seconds meant as a timeout) is
refused instead of silently meaning no bound, or no time at all."""

from __future__ import annotations

import math
import time

from doow_otel.errors import ConfigurationError

__all__ = ["check_deadline", "resolve_deadline"]

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
