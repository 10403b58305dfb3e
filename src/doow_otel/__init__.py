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

    from doow_otel.baggage import LicenseFromBaggage
    from doow_otel.client import DoowClient, Rejection, SendResult
    from doow_otel.errors import ConfigurationError, DoowError, ErrorReport
    from doow_otel.events import InvalidEvent, UsageEvent
    from doow_otel.exporters import (
        DoowMetricExporter,
        DoowMetricReader,
        DoowSpanExporter,
        UsageRecordingSampler,
        UsageSpanProcessor,
        metric_reader,
    )
    from doow_otel.logs import DoowLogExporter, LicenseFromBaggageLogs
    from doow_otel.serverless import invocation, with_azure_function, with_lambda, with_vercel
    from doow_otel.spool import Spool
    from doow_otel.tracker import DoowTracker, configure

_LAZY = {
    "DoowClient": "doow_otel.client",
    "SendResult": "doow_otel.client",
    "Rejection": "doow_otel.client",
    "LicenseFromBaggage": "doow_otel.baggage",
    "LicenseFromBaggageLogs": "doow_otel.logs",
    "ConfigurationError": "doow_otel.errors",
    "DoowError": "doow_otel.errors",
    "ErrorReport": "doow_otel.errors",
    "InvalidEvent": "doow_otel.events",
    "UsageEvent": "doow_otel.events",
    "Spool": "doow_otel.spool",
    "DoowMetricExporter": "doow_otel.exporters",
    "DoowSpanExporter": "doow_otel.exporters",
    "DoowLogExporter": "doow_otel.logs",
    "DoowMetricReader": "doow_otel.exporters",
    "UsageRecordingSampler": "doow_otel.exporters",
    "UsageSpanProcessor": "doow_otel.exporters",
    "metric_reader": "doow_otel.exporters",
    "DoowTracker": "doow_otel.tracker",
    "configure": "doow_otel.tracker",
    "invocation": "doow_otel.serverless",
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
    "LicenseFromBaggage",
    "LicenseFromBaggageLogs",
    "Rejection",
    "SendResult",
    "Spool",
    "UsageEvent",
    "UsageRecordingSampler",
    "UsageSpanProcessor",
    "__version__",
    "configure",
    "invocation",
    "metric_reader",
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
