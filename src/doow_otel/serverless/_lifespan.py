"""`lifespan`: an ASGI lifespan (Starlette, FastAPI) that flushes as the app shuts down.

    app = FastAPI(lifespan=doow_otel.lifespan(meter))

or inside the application's own lifespan:

    @asynccontextmanager
    async def app_lifespan(app):
        async with doow_otel.lifespan(meter):
            yield

The flush runs off the event loop (`flush_async`): requests still being answered during
a graceful shutdown are not held by it. The tracker is flushed, not shut down: a test
client may start the app again in the same process, and the process's exit (atexit,
SIGTERM) shuts it down. Without a tracker, the global providers are flushed.
"""

from __future__ import annotations

from typing import Any

from doow_otel.serverless._core import Flushable, flush_async

__all__ = ["lifespan"]

DEFAULT_LIFESPAN_TIMEOUT = 5.0
"""Seconds the flush at shutdown may take (as the tracker's flush at exit)."""


class lifespan:  # noqa: N801 - used like a function: `lifespan=doow_otel.lifespan(meter)`
    """An ASGI lifespan, and an async context manager to nest in the application's own."""

    def __init__(self, tracker: Flushable | None = None, *, timeout: float | None = None) -> None:
        if timeout is None:
            own = getattr(tracker, "timeout", None)
            timeout = min(own, DEFAULT_LIFESPAN_TIMEOUT) if own else DEFAULT_LIFESPAN_TIMEOUT
        self.tracker = tracker
        self.timeout = timeout
        self.flushed: bool | None = None  # what the last shutdown's flush answered

    def __repr__(self) -> str:
        return f"lifespan(tracker={self.tracker!r}, timeout={self.timeout})"

    def __call__(self, app: Any) -> lifespan:
        """Starlette and FastAPI call `lifespan(app)` for the context of one app run."""
        return self

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        self.flushed = await flush_async(self.timeout, tracker=self.tracker)
