"""`with_azure_function`: Azure Functions (v1 `main(req, context)` or a v2 `FunctionApp` one)."""

from __future__ import annotations

import functools
from typing import Any

from doow_otel.serverless._core import DEFAULT_FLUSH_TIMEOUT, Flushable
from doow_otel.serverless._invocation import F, invocation

__all__ = ["with_azure_function"]


def with_azure_function(
    function: F | None = None,
    *,
    tracker: Flushable | None = None,
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
