"""`invocation`: flush at the end of an invocation on any other platform (Cloud Run, workers...)."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from typing import Any, TypeVar

from doow_otel.delivery.deadline import check_deadline
from doow_otel.serverless._core import (
    DEFAULT_FLUSH_TIMEOUT,
    DEFAULT_SAFETY_MARGIN,
    Flushable,
    budget,
    flush,
    flush_async,
    target,
)

__all__ = ["invocation"]

F = TypeVar("F", bound=Callable[..., Any])


class invocation:  # noqa: N801 - used like a function: `with invocation():` / `@invocation()`
    """Context manager and decorator for any other platform (Cloud Run, queue workers...).

    `timeout` is the seconds the invocation has left (for the `with` form; a decorator is
    applied once, so give it `flush_timeout` only); `deadline` the same as a
    `time.monotonic()` value. With neither, the flush takes at most `flush_timeout`.
    """

    def __init__(
        self,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
        tracker: Flushable | None = None,
        flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
        safety_margin: float = DEFAULT_SAFETY_MARGIN,
    ) -> None:
        if deadline is not None:
            check_deadline(deadline)
        elif timeout is not None:
            deadline = time.monotonic() + timeout
        self.deadline = deadline
        self.tracker = tracker
        self._holder = target(tracker)
        self.flush_timeout = flush_timeout
        self.safety_margin = safety_margin

    def budget(self) -> float:
        remaining = None if self.deadline is None else self.deadline - time.monotonic()
        return budget(remaining, self.flush_timeout, self.safety_margin)

    def __enter__(self) -> invocation:
        self._holder.begin_invocation()
        return self

    def __exit__(self, *exc: object) -> None:
        self._holder.end_invocation()
        flush(self.budget(), tracker=self._holder)

    async def __aenter__(self) -> invocation:
        self._holder.begin_invocation()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._holder.end_invocation()
        await flush_async(self.budget(), tracker=self._holder)

    def __call__(self, function: F) -> F:
        """Wrap `function`, keeping its signature and, for `async def`, its coroutine-ness."""
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self:
                    return await function(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]
