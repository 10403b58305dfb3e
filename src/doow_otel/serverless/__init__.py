"""Flush before a serverless invocation ends, within the time it has left.

Runtimes freeze or end the process once the handler returns. The tracker's usage is on
disk from the call (its journal: a Lambda timeout or crash loses nothing, the next
invocation's process recovers it), but it must still leave the environment. Every
wrapper here flushes once, after the handler returns or raises: the invocation's usage
becomes one event per stream (every metric of a license in one event) in one request,
as Doow's event budget allows (over budget the window stays open and the next
invocation's usage joins it). The time it may take is the smaller of `flush_timeout`
and the time the invocation has left minus `safety_margin`; what misses it is kept on
disk and goes out first with a later invocation's flush. An invocation with nothing
tracked costs a check.

The wrapper returns by the budget whatever the exporters are doing: flushes run on
one background thread and the caller waits for at most the budget, so an export
still in flight (a periodic export to a slow server, say) cannot hold the handler
past its deadline. Usage is journaled to the spool before any request, so a flush
cut short loses nothing.

The handler's return value and exception pass through unchanged; an SDK failure is
logged, never raised into the handler.

Without a tracker, the wrappers flush the global MeterProvider, TracerProvider and
LoggerProvider (apps that use plain OpenTelemetry with the Doow exporters).

Layout: `_core` (the `Flushable` protocol the wrappers depend on, the global-provider
adapter and the flush itself), then one module per platform: `_lambda`, `_vercel`,
`_azure`, and `_invocation` for any other; `_lifespan`, an ASGI lifespan that flushes as a
long-running app (FastAPI, Starlette) shuts down.
"""

from doow_otel.serverless._azure import with_azure_function
from doow_otel.serverless._core import (
    DEFAULT_FLUSH_TIMEOUT,
    DEFAULT_SAFETY_MARGIN,
    Flushable,
    flush,
    flush_async,
)
from doow_otel.serverless._invocation import invocation
from doow_otel.serverless._lambda import with_lambda
from doow_otel.serverless._lifespan import lifespan
from doow_otel.serverless._vercel import with_vercel

__all__ = [
    "DEFAULT_FLUSH_TIMEOUT",
    "DEFAULT_SAFETY_MARGIN",
    "Flushable",
    "flush",
    "flush_async",
    "invocation",
    "lifespan",
    "with_azure_function",
    "with_lambda",
    "with_vercel",
]
