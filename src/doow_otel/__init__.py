"""doow-otel: usage metering for Doow on OpenTelemetry.

Names are imported lazily so that `import doow_otel` costs next to nothing: the event
rules, the HTTP client and the OpenTelemetry SDK load only when first used.

`__all__` is the public API: the tracker and `configure`, the serverless wrappers, the
exporters, readers and span/log processors for an existing OpenTelemetry setup, the
client with its results, and the errors. The modules behind them (and any name with a
leading underscore) are internal and may change.
"""

from __future__ import annotations

from importlib import import_module

from doow_otel._version import __version__

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (about 6 ms)
if TYPE_CHECKING:
    from typing import Any

    from doow_otel.delivery.client import DoowClient, Rejection, SendResult
    from doow_otel.delivery.spool import Spool
    from doow_otel.errors import ConfigurationError, DoowError, ErrorReport, InvalidEvent
    from doow_otel.model.event import UsageEvent
    from doow_otel.otel.baggage import (
        baggage_license,
        bill_to,
        set_license,
        trust_baggage,
    )
    from doow_otel.otel.logs import DoowLogExporter, LicenseFromContextLogs
    from doow_otel.otel.metrics import DoowMetricExporter, DoowMetricReader, metric_reader
    from doow_otel.otel.self_metrics import publish_self_metrics
    from doow_otel.otel.sigterm import flush_on_sigterm
    from doow_otel.otel.traces import (
        DoowSpanExporter,
        LicenseFromContext,
        UsageRecordingSampler,
        UsageSpanProcessor,
    )
    from doow_otel.serverless import (
        invocation,
        lifespan,
        with_azure_function,
        with_lambda,
        with_vercel,
    )
    from doow_otel.tracker import DoowTracker, configure

_LAZY = {
    "DoowClient": "doow_otel.delivery.client",
    "SendResult": "doow_otel.delivery.client",
    "Rejection": "doow_otel.delivery.client",
    "LicenseFromContext": "doow_otel.otel.traces",
    "LicenseFromContextLogs": "doow_otel.otel.logs",
    "baggage_license": "doow_otel.otel.baggage",
    "bill_to": "doow_otel.otel.baggage",
    "set_license": "doow_otel.otel.baggage",
    "trust_baggage": "doow_otel.otel.baggage",
    "flush_on_sigterm": "doow_otel.otel.sigterm",
    "ConfigurationError": "doow_otel.errors",
    "DoowError": "doow_otel.errors",
    "ErrorReport": "doow_otel.errors",
    "InvalidEvent": "doow_otel.errors",
    "UsageEvent": "doow_otel.model.event",
    "Spool": "doow_otel.delivery.spool",
    "DoowMetricExporter": "doow_otel.otel.metrics",
    "DoowSpanExporter": "doow_otel.otel.traces",
    "DoowLogExporter": "doow_otel.otel.logs",
    "DoowMetricReader": "doow_otel.otel.metrics",
    "UsageRecordingSampler": "doow_otel.otel.traces",
    "UsageSpanProcessor": "doow_otel.otel.traces",
    "metric_reader": "doow_otel.otel.metrics",
    "publish_self_metrics": "doow_otel.otel.self_metrics",
    "DoowTracker": "doow_otel.tracker",
    "configure": "doow_otel.tracker",
    "invocation": "doow_otel.serverless",
    "lifespan": "doow_otel.serverless",
    "with_azure_function": "doow_otel.serverless",
    "with_lambda": "doow_otel.serverless",
    "with_vercel": "doow_otel.serverless",
}

__all__ = [
    "ConfigurationError",
    "DoowClient",
    "DoowError",
    "DoowLogExporter",
    "DoowMetricExporter",
    "DoowMetricReader",
    "DoowSpanExporter",
    "DoowTracker",
    "ErrorReport",
    "InvalidEvent",
    "LicenseFromContext",
    "LicenseFromContextLogs",
    "Rejection",
    "SendResult",
    "Spool",
    "UsageEvent",
    "UsageRecordingSampler",
    "UsageSpanProcessor",
    "__version__",
    "baggage_license",
    "bill_to",
    "configure",
    "flush_on_sigterm",
    "invocation",
    "lifespan",
    "metric_reader",
    "publish_self_metrics",
    "set_license",
    "trust_baggage",
    "with_azure_function",
    "with_lambda",
    "with_vercel",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'doow_otel' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
