"""The zero-code path: what `opentelemetry-instrument` builds for `OTEL_*_EXPORTER=doow`.

- metrics: `DoowMetricReader` (Doow's export interval and cardinality limits);
- traces: `UsageSpans`: Doow's span processing on the TracerProvider OpenTelemetry's
  setup has just made: the license in context on each span, and usage on every span
  billed, whether the sampler keeps the span or not (as `configure()` does;
  `DOOW_RECORD_UNSAMPLED_USAGE=false` leaves the sampler alone, with a warning);
- logs: `UsageLogs`: the log exporter, and the license in context on each record.

Every exporter made here is flushed on SIGTERM (`doow_otel.otel.sigterm`), as
`DoowTracker` is.

A signal left unset: opentelemetry-distro sets it to `otlp` over gRPC, and where that
exporter is not installed, OpenTelemetry's whole setup fails (a traceback, then no
telemetry at all: usage set up for Doow on the other signals is never billed). So the
package registers stand-ins under OpenTelemetry's OTLP names (`otlp_proto_grpc`,
`otlp_proto_http`) for each signal, resolved here by `__getattr__`: the real exporter
where one is installed, else, where a signal asks for Doow, an exporter that turns its
signal off with one line naming the variable to set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from doow_otel.otel.logs import (
    DoowLogExporter,
    LicenseFromContextLogs,
    LogRecordExporter,
    LogRecordExportResult,
)
from doow_otel.otel.metrics import DoowMetricReader
from doow_otel.otel.traces import DoowSpanExporter, UsageSpanProcessor, wire_span_processing

__all__ = ["DoowMetricReader", "UsageLogs", "UsageSpans"]

logger = logging.getLogger("doow_otel")

_SIGNALS = {
    "traces": ("OTEL_TRACES_EXPORTER", "opentelemetry_traces_exporter"),
    "metrics": ("OTEL_METRICS_EXPORTER", "opentelemetry_metrics_exporter"),
    "logs": ("OTEL_LOGS_EXPORTER", "opentelemetry_logs_exporter"),
}
_OTLP_NAMES = ("otlp_proto_grpc", "otlp_proto_http")
_STAND_INS = {f"{signal}_{name}": (signal, name) for signal in _SIGNALS for name in _OTLP_NAMES}
"""The entry points' attribute names (pyproject.toml): signal and OTLP component."""
_FALSE = {"0", "false", "no", "off"}


class UsageSpans(SpanExporter):
    """What `OTEL_TRACES_EXPORTER=doow` builds.

    OpenTelemetry's setup wraps it in a batch processor, which hands it sampled spans
    only. So it wires Doow's own span processing into the global TracerProvider (made,
    and set, just before this exporter): the license in context on each span, and every
    span with usage handed to a `DoowSpanExporter` whether it is sampled or not. The
    sampled spans the batch processor hands over have reached Doow that way already:
    they are not sent twice."""

    def __init__(self, **exporter_kwargs: Any) -> None:
        from opentelemetry import trace

        self.exporter = DoowSpanExporter(**exporter_kwargs)
        self.processor: UsageSpanProcessor | None = None
        provider = trace.get_tracer_provider()
        if isinstance(provider, TracerProvider):
            record = os.environ.get("DOOW_RECORD_UNSAMPLED_USAGE", "").strip().lower()
            self.processor = wire_span_processing(
                provider,
                self.exporter,
                record_unsampled_usage=record not in _FALSE,
                opt_out="DOOW_RECORD_UNSAMPLED_USAGE=false",
            )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.processor is None:  # no SDK provider to wire into: export what comes
            return self.exporter.export(spans)
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        if self.processor is None:
            return self.exporter.force_flush(timeout_millis)
        return self.processor.force_flush(timeout_millis)

    def shutdown(self) -> None:
        (self.processor or self.exporter).shutdown()


class UsageLogs(DoowLogExporter):
    """What `OTEL_LOGS_EXPORTER=doow` builds: the log exporter, and the license in context
    copied onto each record of the global LoggerProvider (made, and set, just before
    this exporter)."""

    def __init__(self, **exporter_kwargs: Any) -> None:
        from opentelemetry._logs import get_logger_provider

        super().__init__(**exporter_kwargs)
        provider: Any = get_logger_provider()
        if callable(getattr(provider, "add_log_record_processor", None)):
            provider.add_log_record_processor(LicenseFromContextLogs())


def _asks_for_doow() -> bool:
    return any(
        "doow" in [name.strip() for name in os.environ.get(var, "").split(",")]
        for var, _ in _SIGNALS.values()
    )


class _TracesOff(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _MetricsOff(MetricReader):
    """A reader nobody collects: metrics cost nothing on this signal."""

    def _receive_metrics(
        self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        pass

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


class _LogsOff(LogRecordExporter):
    def export(self, batch: Any) -> Any:
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        pass


def _stand_in(signal: str, component: str) -> Any:
    """The exporter OpenTelemetry asked for under an OTLP name: the installed one, else
    (where a signal asks for Doow) one that turns `signal` off, said in one line."""
    from importlib.metadata import entry_points

    var, group = _SIGNALS[signal]
    for entry_point in entry_points(group=group, name=component):
        if not entry_point.value.startswith(f"{__name__}:"):
            return entry_point.load()  # the real one is installed: it is the exporter
    if not _asks_for_doow():  # not Doow's setup: fail as OpenTelemetry would have
        raise RuntimeError(f"Requested component '{component}' not found in entry point '{group}'")
    logger.error(
        "doow: %s=%s (opentelemetry-distro's default when the variable is unset) needs the "
        "%s exporter, which is not installed: %s are turned off, and the rest of the "
        "setup, Doow's included, goes on. Set %s to doow, none, or an exporter you have "
        "installed.",
        var,
        os.environ.get(var, "otlp"),
        component,
        signal,
        var,
    )
    return {"traces": _TracesOff, "metrics": _MetricsOff, "logs": _LogsOff}[signal]


def __getattr__(name: str) -> Any:
    if name in _STAND_INS:
        return _stand_in(*_STAND_INS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
