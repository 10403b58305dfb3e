"""Flush before a serverless invocation ends, within the time it has left.

Runtimes freeze or end the process once the handler returns; usage still in memory
then is lost. Every wrapper here flushes once, after the handler returns or raises:
all of the invocation's usage goes out in one request. The budget is the smaller of
`flush_timeout` and the time the invocation has left minus `safety_margin`; what
misses it stays in the spool and goes out first with a later invocation's flush.

The handler's return value and exception pass through unchanged; an SDK failure is
reported (logger, `on_error`), never raised into the handler.

Without a tracker, the wrappers flush the global MeterProvider, TracerProvider and
LoggerProvider (apps that use plain OpenTelemetry with the Doow exporters).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, TypeVar

from doow_otel.exporters import set_flush_deadline

if TYPE_CHECKING:
    from doow_otel.tracker import DoowTracker

__all__ = [
    "DEFAULT_FLUSH_TIMEOUT",
    "DEFAULT_SAFETY_MARGIN",
    "flush",
    "invocation",
    "with_azure_function",
    "with_lambda",
    "with_vercel",
]

logger = logging.getLogger("doow_otel")

DEFAULT_FLUSH_TIMEOUT = 2.0
"""Seconds a flush may take at most, whatever time the invocation has left."""
DEFAULT_SAFETY_MARGIN = 0.1
"""Seconds kept free before the invocation's deadline, for the runtime to post the response."""

F = TypeVar("F", bound=Callable[..., Any])


def flush(budget: float = DEFAULT_FLUSH_TIMEOUT, *, tracker: DoowTracker | None = None) -> bool:
    """Flush within `budget` seconds; True when everything went out. Never raises."""
    if tracker is not None and not tracker.has_pending and tracker.tracer_provider is None:
        return True  # nothing tracked this invocation: a check, no I/O
    budget = max(0.0, budget)
    set_flush_deadline(time.monotonic() + budget)
    try:
        if tracker is not None:
            return tracker.flush(timeout=budget)
        return _flush_global_providers(budget)
    except Exception:
        logger.exception("doow: flush failed")
        return False
    finally:
        set_flush_deadline(None)


def _flush_global_providers(budget: float) -> bool:
    from opentelemetry import metrics, trace
    from opentelemetry._logs import get_logger_provider

    ok = True
    millis = int(budget * 1000)
    for provider in (
        metrics.get_meter_provider(),
        trace.get_tracer_provider(),
        get_logger_provider(),
    ):
        force_flush = getattr(provider, "force_flush", None)
        if force_flush is not None:
            ok = bool(force_flush(millis)) and ok
    return ok


def _budget(remaining: float | None, flush_timeout: float, safety_margin: float) -> float:
    if remaining is None:
        return flush_timeout
    return max(0.0, min(flush_timeout, remaining - safety_margin))


class invocation:  # noqa: N801 - used like a function: `with invocation():` / `@invocation()`
    """Context manager and decorator for any other platform (Cloud Run, queue workers...).

    `deadline` is when the invocation must be over, as a `time.monotonic()` value;
    with none, the flush takes at most `flush_timeout`.
    """

    def __init__(
        self,
        deadline: float | None = None,
        *,
        tracker: DoowTracker | None = None,
        flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
        safety_margin: float = DEFAULT_SAFETY_MARGIN,
    ) -> None:
        self.deadline = deadline
        self.tracker = tracker
        self.flush_timeout = flush_timeout
        self.safety_margin = safety_margin

    def budget(self) -> float:
        remaining = None if self.deadline is None else self.deadline - time.monotonic()
        return _budget(remaining, self.flush_timeout, self.safety_margin)

    def __enter__(self) -> invocation:
        return self

    def __exit__(self, *exc: object) -> None:
        flush(self.budget(), tracker=self.tracker)

    async def __aenter__(self) -> invocation:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(flush, self.budget(), tracker=self.tracker)

    def __call__(self, function: F) -> F:
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


# --- AWS Lambda ---


def with_lambda(
    handler: F | None = None,
    *,
    tracker: DoowTracker | None = None,
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
    safety_margin: float = DEFAULT_SAFETY_MARGIN,
) -> Any:
    """Wrap a Lambda handler `(event, context)`; `async def` handlers run to completion inside.

    Budget: `context.get_remaining_time_in_millis()` minus `safety_margin`, at most
    `flush_timeout`.
    """
    if handler is None:
        return functools.partial(
            with_lambda, tracker=tracker, flush_timeout=flush_timeout, safety_margin=safety_margin
        )
    is_async = inspect.iscoroutinefunction(handler)

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> Any:
        try:
            result = handler(event, context)
            if is_async or inspect.isawaitable(result):
                result = _run(result)
            return result
        finally:
            flush(
                _budget(_lambda_remaining(context), flush_timeout, safety_margin), tracker=tracker
            )

    return wrapper


def _lambda_remaining(context: Any) -> float | None:
    try:
        return float(context.get_remaining_time_in_millis()) / 1000
    except Exception:  # a test context without the method
        return None


def _run(awaitable: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await awaitable

    return asyncio.run(main())


# --- Vercel ---


def with_vercel(
    handler_or_app: Any = None,
    *,
    tracker: DoowTracker | None = None,
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
    safety_margin: float = DEFAULT_SAFETY_MARGIN,
) -> Any:
    """Wrap a Vercel Python function: a `BaseHTTPRequestHandler` class, a WSGI or an ASGI app.

    - handler class: flush after each `do_*` method;
    - WSGI (Flask...): flush when the server closes the response iterable;
    - ASGI (FastAPI...): flush after the last body message; where the runtime offers
      `vercel.functions.wait_until`, the flush is handed to it and the response is
      not delayed at all.
    Budget: `vercel.functions.get_deadline()` where the runtime provides it.
    """
    if handler_or_app is None:
        return functools.partial(
            with_vercel, tracker=tracker, flush_timeout=flush_timeout, safety_margin=safety_margin
        )
    settings = (tracker, flush_timeout, safety_margin)
    if inspect.isclass(handler_or_app) and issubclass(handler_or_app, BaseHTTPRequestHandler):
        return _wrap_handler_class(handler_or_app, settings)
    if _is_asgi(handler_or_app):
        return _ASGIFlush(handler_or_app, settings)
    if callable(handler_or_app):
        return _WSGIFlush(handler_or_app, settings)
    raise TypeError(
        "with_vercel() takes a BaseHTTPRequestHandler subclass, a WSGI app or an ASGI app"
    )


_Settings = tuple["DoowTracker | None", float, float]


def _vercel_flush(settings: _Settings) -> bool:
    tracker, flush_timeout, safety_margin = settings
    return flush(_budget(_vercel_remaining(), flush_timeout, safety_margin), tracker=tracker)


def _vercel_remaining() -> float | None:
    try:
        from vercel.functions import get_deadline
    except ImportError:
        return None
    try:
        deadline: datetime | None = get_deadline()
    except Exception:
        return None
    if deadline is None:
        return None
    return (deadline - datetime.now(timezone.utc)).total_seconds()


def _vercel_wait_until() -> Callable[[Awaitable[object]], None] | None:
    try:
        from vercel.cache.context import get_context
        from vercel.functions import wait_until
    except ImportError:
        return None
    try:
        if get_context().wait_until is None:
            return None  # not inside a Vercel invocation: wait_until would drop the work
    except Exception:
        return None
    return wait_until


def _wrap_handler_class(cls: type[BaseHTTPRequestHandler], settings: _Settings) -> type:
    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def do(self: BaseHTTPRequestHandler) -> Any:
            try:
                return method(self)
            finally:
                with _suppress_broken_pipe():
                    self.wfile.flush()
                _vercel_flush(settings)

        return do

    methods = {
        name: wrap(getattr(cls, name))
        for name in dir(cls)
        if name.startswith("do_") and callable(getattr(cls, name))
    }
    return type(cls.__name__, (cls,), {**methods, "__module__": cls.__module__})


class _suppress_broken_pipe:  # noqa: N801
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> bool:
        return kind is not None and issubclass(kind, (BrokenPipeError, ConnectionResetError))


class _WSGIFlush:
    def __init__(self, app: Callable[..., Iterable[bytes]], settings: _Settings) -> None:
        self.app = app
        self.settings = settings

    def __getattr__(self, name: str) -> Any:  # the app's attributes stay reachable
        return getattr(self.app, name)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        try:
            body = self.app(environ, start_response)
        except BaseException:
            _vercel_flush(self.settings)
            raise
        return _ClosingBody(body, lambda: _vercel_flush(self.settings))


class _ClosingBody:
    """The app's response iterable; the server's `close()` (after the body is sent) flushes."""

    def __init__(self, body: Iterable[bytes], after: Callable[[], object]) -> None:
        self.body = body
        self.after = after

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.after()


def _is_asgi(app: Any) -> bool:
    call = app if inspect.isfunction(app) else getattr(app, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(app)


class _ASGIFlush:
    def __init__(self, app: Callable[..., Awaitable[None]], settings: _Settings) -> None:
        self.app = app
        self.settings = settings

    def __getattr__(self, name: str) -> Any:  # FastAPI's attributes (routes...) stay reachable
        return getattr(self.app, name)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        flushed = False

        async def flush_after_response() -> None:
            nonlocal flushed
            flushed = True
            work = asyncio.to_thread(_vercel_flush, self.settings)
            wait_until = _vercel_wait_until()
            if wait_until is not None:
                wait_until(work)  # the response is not delayed by the flush
            else:
                await work

        async def send_then_flush(message: dict[str, Any]) -> None:
            await send(message)
            if message.get("type") == "http.response.body" and not message.get("more_body"):
                await flush_after_response()

        try:
            await self.app(scope, receive, send_then_flush)
        finally:
            if not flushed:  # the app raised, or never finished its response
                await flush_after_response()


# --- Azure Functions ---


def with_azure_function(
    function: F | None = None,
    *,
    tracker: DoowTracker | None = None,
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
) -> Any:
    """Wrap an Azure Functions function (v1 `main(req, context)` or a v2 `FunctionApp` one).

    The wrapper keeps the signature (the host binds parameters by name) and the
    coroutine-ness. Apply it below the `FunctionApp` decorators. Budget: `flush_timeout`.
    """
    if function is None:
        return functools.partial(with_azure_function, tracker=tracker, flush_timeout=flush_timeout)
    return invocation(tracker=tracker, flush_timeout=flush_timeout, safety_margin=0.0)(function)
