"""`with_lambda`: AWS Lambda handlers `(event, context)`, sync or `async def`."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable
from typing import Any

from doow_otel.serverless import lambda_extension
from doow_otel.serverless._core import (
    DEFAULT_FLUSH_TIMEOUT,
    DEFAULT_SAFETY_MARGIN,
    Flushable,
    budget,
    flush,
    target,
)
from doow_otel.serverless._invocation import F

__all__ = ["with_lambda"]


def with_lambda(
    handler: F | None = None,
    *,
    tracker: Flushable | None = None,
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
    safety_margin: float = DEFAULT_SAFETY_MARGIN,
) -> Any:
    """Wrap a Lambda handler `(event, context)`; `async def` handlers run to completion inside.

    Budget: `context.get_remaining_time_in_millis()` minus `safety_margin`, at most
    `flush_timeout`. Async handlers share one event loop across warm invocations, so
    clients bound to it (created by an earlier invocation) stay usable.

    With the otelcol-doow extension layer and `route="collector"`, the flush is a push
    to the extension on localhost, which delivers after the response
    (doow_otel.serverless.lambda_extension).
    """
    if handler is None:
        return functools.partial(
            with_lambda, tracker=tracker, flush_timeout=flush_timeout, safety_margin=safety_margin
        )
    holder = target(tracker)
    lambda_extension.hint_route(holder.route)
    to_extension = holder.route == "collector"

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> Any:
        holder.begin_invocation()
        try:
            result = handler(event, context)
            if inspect.isawaitable(result):
                result = _run(result)
            return result
        finally:
            holder.end_invocation()
            if to_extension:  # a cold start's first push must not race the extension's start
                lambda_extension.await_collector(holder.collector_endpoint)
            remaining = _lambda_remaining(context)
            flush(budget(remaining, flush_timeout, safety_margin), tracker=holder)

    return wrapper


def _lambda_remaining(context: Any) -> float | None:
    try:
        return float(context.get_remaining_time_in_millis()) / 1000
    except Exception:  # a hand-made context without the method
        return None


_loop: asyncio.AbstractEventLoop | None = None


def _run(awaitable: Awaitable[Any]) -> Any:
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop.run_until_complete(awaitable)
