"""`with_vercel`: Vercel Python functions (a handler class, a WSGI or an ASGI app)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any

from doow_otel.serverless._core import (
    DEFAULT_FLUSH_TIMEOUT,
    DEFAULT_SAFETY_MARGIN,
    Flushable,
    budget,
    flush,
    flush_async,
    target,
)

__all__ = ["with_vercel"]


def with_vercel(
    handler_or_app: Any = None,
    *,
    tracker: Flushable | None = None,
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
    settings = _Settings(target(tracker), flush_timeout, safety_margin)
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
    holder: Flushable
    flush_timeout: float
    safety_margin: float

    def budget(self) -> float:
        return budget(_vercel_remaining(), self.flush_timeout, self.safety_margin)


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
            settings.holder.begin_invocation()
            try:
                return method(self)
            finally:
                settings.holder.end_invocation()
                with _suppress_broken_pipe():
                    self.wfile.flush()  # the response leaves before the flush starts
                flush(settings.budget(), tracker=settings.holder)

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
        self.settings.holder.begin_invocation()
        try:
            body = self.app(environ, start_response)
        except BaseException:
            self._after()
            raise
        sized = hasattr(body, "__len__")
        return (_SizedClosingBody if sized else _ClosingBody)(body, self._after)

    def _after(self) -> None:
        self.settings.holder.end_invocation()
        flush(self.settings.budget(), tracker=self.settings.holder)


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
        self.settings.holder.begin_invocation()
        try:
            await self.app(scope, receive, send)
        finally:
            self.settings.holder.end_invocation()
            wait_until = _vercel_wait_until()
            if wait_until is not None:
                wait_until(self._flush())  # the invocation stays alive for it, the response not
            else:
                await self._flush()

    async def _flush(self) -> None:
        await flush_async(self.settings.budget(), tracker=self.settings.holder)
