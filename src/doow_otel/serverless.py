"""Flush before a serverless invocation ends, within the time it has left.

Runtimes freeze or end the process once the handler returns; usage still in memory
then is lost. Every wrapper here flushes once, after the handler returns or raises:
all of the invocation's usage goes out in one request (up to 500 events; the
tracker's `flush_at` early flush waits for a full batch while a wrapped invocation
runs). The budget is the smaller of `flush_timeout` and the time the invocation has
left minus `safety_margin`; what misses it is kept in the spool and goes out first
with a later invocation's flush. An invocation with nothing tracked costs a check.

The wrapper returns by the budget whatever the exporters are doing: flushes run on
one background thread and the caller waits for at most the budget, so an export
still in flight (a periodic export to a slow server, say) cannot hold the handler
past its deadline. Usage is journaled to the spool before any request, so a flush
cut short loses nothing.

The handler's return value and exception pass through unchanged; an SDK failure is
logged, never raised into the handler.

Without a tracker, the wrappers flush the global MeterProvider, TracerProvider and
LoggerProvider (apps that use plain OpenTelemetry with the Doow exporters).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, TypeVar

from doow_otel import lambda_extension
from doow_otel.exporters import export_deadline

if TYPE_CHECKING:
    from doow_otel.tracker import DoowTracker

__all__ = [
    "DEFAULT_FLUSH_TIMEOUT",
    "DEFAULT_SAFETY_MARGIN",
    "flush",
    "flush_async",
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
LOCAL_WORK_SECONDS = 0.5
"""What collecting and journaling may take even when the budget is spent (no network then)."""
FINISH_SECONDS = 0.05
"""Of the budget, what is kept after the last request to spool what it did not deliver."""

F = TypeVar("F", bound=Callable[..., Any])


# --- flushing ---


def flush(budget: float = DEFAULT_FLUSH_TIMEOUT, *, tracker: DoowTracker | None = None) -> bool:
    """Flush within `budget` seconds; True when everything went out. Never raises."""
    job = _start(budget, tracker)
    if job is None:
        return True
    try:
        return job.future.result(timeout=job.left())
    except FutureTimeout:
        return _late(job)


async def flush_async(
    budget: float = DEFAULT_FLUSH_TIMEOUT, *, tracker: DoowTracker | None = None
) -> bool:
    """`flush()` for coroutines: the event loop runs on while the flush does."""
    job = _start(budget, tracker)
    if job is None:
        return True
    try:
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(job.future)), job.left())
    except asyncio.TimeoutError:
        return _late(job)


@dataclass(frozen=True)
class _Job:
    budget: float
    deadline: float  # time.monotonic()
    future: Future[bool]

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


def _start(budget: float, tracker: DoowTracker | None) -> _Job | None:
    if tracker is not None and not tracker.has_pending and tracker.tracer_provider is None:
        return None  # nothing tracked this invocation: a check, no I/O
    budget = max(0.0, budget)
    deadline = time.monotonic() + budget
    return _Job(budget, deadline, _flusher.submit(lambda: _flush_now(deadline, tracker)))


def _flush_now(deadline: float, tracker: DoowTracker | None) -> bool:
    # The Doow exporters send nothing past the network deadline, a little before the
    # caller stops waiting: time to keep what was not delivered on disk, and answer.
    # Collecting and journaling may take longer than the budget (then unwaited for),
    # so that what misses the deadline is at least on disk.
    left = max(0.0, deadline - time.monotonic())
    timeout = max(left, LOCAL_WORK_SECONDS)
    try:
        with export_deadline(deadline - min(FINISH_SECONDS, left / 4)):
            if tracker is not None:
                return tracker.flush(timeout=timeout)
            return _flush_global_providers(timeout)
    except Exception:
        logger.exception("doow: flush failed")
        return False


def _flush_global_providers(timeout: float) -> bool:
    from opentelemetry import metrics, trace
    from opentelemetry._logs import get_logger_provider

    ok = True
    millis = int(timeout * 1000)
    for provider in (
        metrics.get_meter_provider(),
        trace.get_tracer_provider(),
        get_logger_provider(),
    ):
        force_flush = getattr(provider, "force_flush", None)
        if force_flush is not None:
            ok = bool(force_flush(millis)) and ok
    return ok


def _late(job: _Job) -> bool:
    logger.warning(
        "doow: flush not done within its %.0f ms budget; it goes on in the background and "
        "what it cannot deliver stays in the spool for a later flush",
        job.budget * 1000,
    )
    return False


_Work = tuple[Callable[[], bool], "Future[bool]"]


class _Flusher:
    """One daemon thread runs the flushes, one at a time, in order."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, work: Callable[[], bool]) -> Future[bool]:
        future: Future[bool] = Future()
        self._jobs.put((work, future))
        if self._thread is None or not self._thread.is_alive():  # first use, or after a fork
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="doow-invocation-flush", daemon=True
                    )
                    self._thread.start()
        return future

    def _run(self) -> None:
        while True:
            work, future = self._jobs.get()
            future.set_running_or_notify_cancel()
            try:
                future.set_result(work())
            except BaseException as exc:  # work() reports its own errors; this is a backstop
                future.set_exception(exc)


_flusher = _Flusher()


def _budget(remaining: float | None, flush_timeout: float, safety_margin: float) -> float:
    if remaining is None:
        return flush_timeout
    return max(0.0, min(flush_timeout, remaining - safety_margin))


_invocations_lock = threading.Lock()


def _begin(tracker: DoowTracker | None) -> None:
    if tracker is not None:
        with _invocations_lock:
            tracker.invocations += 1


def _end(tracker: DoowTracker | None) -> None:
    if tracker is not None:
        with _invocations_lock:
            tracker.invocations -= 1


# --- any platform ---


class invocation:  # noqa: N801 - used like a function: `with invocation():` / `@invocation()`
    """Context manager and decorator for any other platform (Cloud Run, queue workers...).

    `deadline` is when the invocation must be over, as a `time.monotonic()` value (for
    the `with` form; a decorator is applied once, so give it `flush_timeout` only).
    With no deadline the flush takes at most `flush_timeout`.
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
        _begin(self.tracker)
        return self

    def __exit__(self, *exc: object) -> None:
        _end(self.tracker)
        flush(self.budget(), tracker=self.tracker)

    async def __aenter__(self) -> invocation:
        _begin(self.tracker)
        return self

    async def __aexit__(self, *exc: object) -> None:
        _end(self.tracker)
        await flush_async(self.budget(), tracker=self.tracker)

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
    `flush_timeout`. Async handlers share one event loop across warm invocations, so
    clients bound to it (created by an earlier invocation) stay usable.

    With the otelcol-doow extension layer and `route="collector"`, the flush is a push
    to the extension on localhost, which delivers after the response (doow_otel.lambda_extension).
    """
    if handler is None:
        return functools.partial(
            with_lambda, tracker=tracker, flush_timeout=flush_timeout, safety_margin=safety_margin
        )
    lambda_extension.hint_route(tracker)
    to_extension = tracker is not None and tracker.route == "collector"

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> Any:
        _begin(tracker)
        try:
            result = handler(event, context)
            if inspect.isawaitable(result):
                result = _run(result)
            return result
        finally:
            _end(tracker)
            if to_extension:  # a cold start's first push must not race the extension's start
                lambda_extension.await_collector(tracker.collector_endpoint)  # type: ignore[union-attr]
            remaining = _lambda_remaining(context)
            flush(_budget(remaining, flush_timeout, safety_margin), tracker=tracker)

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


# --- Vercel ---


def with_vercel(
    handler_or_app: Any = None,
    *,
    tracker: DoowTracker | None = None,
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
    safety_margin: float = DEFAULT_SAFETY_MARGIN,
) -> Any:
    """Wrap a Vercel Python function: a `BaseHTTPRequestHandler` class, a WSGI or an ASGI app.

    - handler class: flush after each `do_*` method, once the response is written;
    - WSGI (Flask...): flush when the server closes the response iterable, after the body;
    - ASGI (FastAPI...): flush when the app returns (after its last body message, and
      after any background task it runs); where the runtime offers
      `vercel.functions.wait_until`, the flush is handed to it: the invocation ends
      once the response is sent, without waiting for the flush.
    Budget: `vercel.functions.get_deadline()` where the runtime provides it.
    """
    if handler_or_app is None:
        return functools.partial(
            with_vercel, tracker=tracker, flush_timeout=flush_timeout, safety_margin=safety_margin
        )
    settings = _Settings(tracker, flush_timeout, safety_margin)
    if inspect.isclass(handler_or_app) and issubclass(handler_or_app, BaseHTTPRequestHandler):
        return _wrap_handler_class(handler_or_app, settings)
    if _is_asgi(handler_or_app):
        return _ASGIFlush(handler_or_app, settings)
    if callable(handler_or_app):
        return _WSGIFlush(handler_or_app, settings)
    raise TypeError(
        "with_vercel() takes a BaseHTTPRequestHandler subclass, a WSGI app or an ASGI app"
    )


@dataclass(frozen=True)
class _Settings:
    tracker: DoowTracker | None
    flush_timeout: float
    safety_margin: float

    def budget(self) -> float:
        return _budget(_vercel_remaining(), self.flush_timeout, self.safety_margin)


def _vercel_remaining() -> float | None:
    try:
        from vercel.functions import get_deadline

        deadline: datetime | None = get_deadline()
    except Exception:  # not installed, or no runtime to ask
        return None
    if deadline is None:
        return None
    return (deadline - datetime.now(timezone.utc)).total_seconds()


def _vercel_wait_until() -> Callable[[Awaitable[object]], None] | None:
    """`vercel.functions.wait_until` when the runtime has set a hook for this request."""
    try:
        from vercel.cache.context import get_context
        from vercel.functions import wait_until

        if get_context().wait_until is None:
            return None  # not inside a Vercel invocation: wait_until would drop the work
    except Exception:
        return None
    return wait_until


def _wrap_handler_class(cls: type[BaseHTTPRequestHandler], settings: _Settings) -> type:
    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def do(self: BaseHTTPRequestHandler) -> Any:
            _begin(settings.tracker)
            try:
                return method(self)
            finally:
                _end(settings.tracker)
                with _suppress_broken_pipe():
                    self.wfile.flush()  # the response leaves before the flush starts
                flush(settings.budget(), tracker=settings.tracker)

        return do

    methods = {
        name: wrap(getattr(cls, name))
        for name in dir(cls)
        if name.startswith("do_") and callable(getattr(cls, name))
    }
    namespace = {**methods, "__module__": cls.__module__, "__qualname__": cls.__qualname__}
    return type(cls.__name__, (cls,), namespace)


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
        _begin(self.settings.tracker)
        try:
            body = self.app(environ, start_response)
        except BaseException:
            self._after()
            raise
        sized = hasattr(body, "__len__")
        return (_SizedClosingBody if sized else _ClosingBody)(body, self._after)

    def _after(self) -> None:
        _end(self.settings.tracker)
        flush(self.settings.budget(), tracker=self.settings.tracker)


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


class _SizedClosingBody(_ClosingBody):
    """Servers set Content-Length from a one-block body's `len()`; without it, a client
    of an HTTP/1.0 server waits for the connection to close, which comes after the flush."""

    def __len__(self) -> int:
        return len(self.body)  # type: ignore[arg-type]


def _is_asgi(app: Any) -> bool:
    """The test Vercel's runtime applies: a coroutine function, or an async `__call__`."""
    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(
        getattr(app, "__call__", None)  # noqa: B004 - the method, not callability
    )


class _ASGIFlush:
    def __init__(self, app: Callable[..., Awaitable[None]], settings: _Settings) -> None:
        self.app = app
        self.settings = settings

    def __getattr__(self, name: str) -> Any:  # FastAPI's attributes (routes...) stay reachable
        if name == "asgi":  # Vercel's runtime would serve the inner app's `asgi`, skipping us
            raise AttributeError(name)
        return getattr(self.app, name)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        _begin(self.settings.tracker)
        try:
            await self.app(scope, receive, send)
        finally:
            _end(self.settings.tracker)
            wait_until = _vercel_wait_until()
            if wait_until is not None:
                wait_until(self._flush())  # the invocation stays alive for it, the response not
            else:
                await self._flush()

    async def _flush(self) -> None:
        await flush_async(self.settings.budget(), tracker=self.settings.tracker)


# --- Azure Functions ---


def with_azure_function(
    function: F | None = None,
    *,
    tracker: DoowTracker | None = None,
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
) -> Any:
    """Wrap an Azure Functions function (v1 `main(req, context)` or a v2 `FunctionApp` one).

    The wrapper keeps the signature (the host binds parameters by name) and the
    coroutine-ness. Apply it below the `FunctionApp` decorators, next to the `def`.
    Budget: `flush_timeout` (Azure tells a function nothing of its remaining time).
    """
    if function is None:
        return functools.partial(with_azure_function, tracker=tracker, flush_timeout=flush_timeout)
    if type(function).__module__.startswith("azure.functions"):
        # Above @app.route(...) it would get the app's FunctionBuilder: the app keeps
        # calling the unwrapped function and nothing would flush.
        raise TypeError(
            "with_azure_function() must be applied below the FunctionApp decorators, "
            "directly on the function (the decorator closest to `def`)"
        )
    return invocation(tracker=tracker, flush_timeout=flush_timeout, safety_margin=0.0)(function)
