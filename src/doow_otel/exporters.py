"""OpenTelemetry SDK exporters that deliver usage to Doow.

Each one encodes SDK data with the standard OTLP encoders, converts it with
`doow_otel.conversion` (the same rules as the Go collector exporter), and delivers
the events with a `DoowClient`. They sit beside the user's other exporters: an OTLP
exporter to a collector or a vendor keeps receiving everything.

With `OTEL_METRICS_EXPORTER=doow` (likewise traces, logs) `opentelemetry-instrument`
builds them with no arguments; they then configure themselves from the environment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from doow_otel.client import DoowClient, SendResult
from doow_otel.config import Settings
from doow_otel.conversion import (
    USAGE_EVENT_NAME,
    Conversion,
    ConversionOptions,
    convert_logs_request,
    convert_metrics_request,
    convert_traces_request,
)

__all__ = [
    "DELTA_TEMPORALITY",
    "DoowLogExporter",
    "DoowMetricExporter",
    "DoowSpanExporter",
    "metric_reader",
    "set_flush_deadline",
]

# Usage counters must be delta: Doow sums what it receives.
DELTA_TEMPORALITY: dict[type, AggregationTemporality] = {
    Counter: AggregationTemporality.DELTA,
    ObservableCounter: AggregationTemporality.DELTA,
    Histogram: AggregationTemporality.DELTA,
    UpDownCounter: AggregationTemporality.CUMULATIVE,
    ObservableUpDownCounter: AggregationTemporality.CUMULATIVE,
    ObservableGauge: AggregationTemporality.CUMULATIVE,
}

_flush_deadline: float | None = None
_deadline_lock = threading.Lock()


def set_flush_deadline(deadline: float | None) -> None:
    """Bound every Doow export until cleared (a `time.monotonic()` value).

    Span and log processors call `export()` without a timeout; the serverless
    wrappers set this so that those exports, too, end within the invocation's budget.
    """
    global _flush_deadline
    with _deadline_lock:
        _flush_deadline = deadline


def _deadline(timeout_seconds: float) -> float:
    now = time.monotonic()
    own = now + timeout_seconds
    bound = _flush_deadline
    # A bound already past belongs to an invocation whose caller stopped waiting: an
    # export that only starts now (it queued behind another) runs on its own timeout.
    return own if bound is None or bound <= now else min(own, bound)


class _DoowExporterBase:
    def __init__(
        self,
        client: DoowClient | None = None,
        *,
        options: ConversionOptions | None = None,
        **client_kwargs: Any,
    ) -> None:
        self.client = client if client is not None else DoowClient(**client_kwargs)
        if options is None:
            options = ConversionOptions(default_license_id=Settings.resolve().default_license_id)
        self.options = options
        self.last_result: SendResult | None = None

    def _deliver(self, conversion: Conversion, timeout_seconds: float) -> bool:
        for code, count in sorted(conversion.dropped.items()):
            self.client.report("dropped", conversion.describe(code, count), count=count)
        if not conversion.events and not (self.client.spool and len(self.client.spool)):
            return not conversion.dropped
        result = self.client.send(conversion.events, deadline=_deadline(timeout_seconds))
        self.last_result = result
        # Spooled events are ours to deliver later: the export itself succeeded.
        return not (result.dropped or conversion.dropped)

    def _flush_spool(self, timeout_millis: float) -> bool:
        if self.client.spool is None or not len(self.client.spool):
            return True
        result = self.client.flush_spool(deadline=_deadline(timeout_millis / 1000))
        return result.spooled == 0

    def _shutdown(self) -> None:
        self.client.close()


class DoowMetricExporter(_DoowExporterBase, MetricExporter):
    """Delta-temporality metric exporter: each usage data point becomes one Doow event."""

    def __init__(
        self,
        client: DoowClient | None = None,
        *,
        options: ConversionOptions | None = None,
        preferred_aggregation: dict[type, Any] | None = None,
        **client_kwargs: Any,
    ) -> None:
        _DoowExporterBase.__init__(self, client, options=options, **client_kwargs)
        MetricExporter.__init__(
            self,
            preferred_temporality=DELTA_TEMPORALITY,
            preferred_aggregation=preferred_aggregation,
        )

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

        conversion = convert_metrics_request(encode_metrics(metrics_data), self.options)
        ok = self._deliver(conversion, timeout_millis / 1000)
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._flush_spool(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._shutdown()


def _span_has_usage(span: ReadableSpan) -> bool:
    attributes = span.attributes or {}
    if "gen_ai.usage.input_tokens" in attributes or "gen_ai.usage.output_tokens" in attributes:
        return True
    return any(event.name == USAGE_EVENT_NAME for event in span.events)


class DoowSpanExporter(_DoowExporterBase, SpanExporter):
    """Bills `doow.usage` span events and GenAI token counts; other spans cost one check."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        usage = [span for span in spans if _span_has_usage(span)]
        if not usage:
            return SpanExportResult.SUCCESS
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        conversion = convert_traces_request(encode_spans(usage), self.options)
        ok = self._deliver(conversion, self.client.timeout)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._flush_spool(timeout_millis)

    def shutdown(self) -> None:
        self._shutdown()


def _record_is_usage(record: ReadableLogRecord) -> bool:
    log = record.log_record
    if getattr(log, "event_name", None) == USAGE_EVENT_NAME:
        return True
    attributes = log.attributes or {}
    return attributes.get("event.name") == USAGE_EVENT_NAME


class DoowLogExporter(_DoowExporterBase, LogRecordExporter):
    """Bills log records whose event name is `doow.usage`."""

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        usage = [record for record in batch if _record_is_usage(record)]
        if not usage:
            return LogRecordExportResult.SUCCESS
        from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

        conversion = convert_logs_request(encode_logs(usage), self.options)
        ok = self._deliver(conversion, self.client.timeout)
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._flush_spool(timeout_millis)

    def shutdown(self) -> None:
        self._shutdown()


DEFAULT_CARDINALITY_LIMIT = 100_000
"""Attribute sets (licenses x attribution) per usage instrument per export. The SDK's
default, 2000, would fold the 2001st license of an interval into an overflow point
without a license: usage that cannot be billed."""


def metric_reader(
    exporter: MetricExporter | None = None,
    *,
    interval: float | None = None,
    timeout: float = 10.0,
    cardinality_limit: int = DEFAULT_CARDINALITY_LIMIT,
    **exporter_kwargs: Any,
) -> PeriodicExportingMetricReader:
    """A reader to add to your own MeterProvider: `MeterProvider(metric_readers=[..., this])`."""
    from opentelemetry.sdk.metrics import Counter, Histogram, ObservableCounter

    return PeriodicExportingMetricReader(
        exporter or DoowMetricExporter(**exporter_kwargs),
        export_interval_millis=(interval or Settings.resolve().flush_interval) * 1000,
        export_timeout_millis=timeout * 1000,
        cardinality_limits={
            Counter: cardinality_limit,
            Histogram: cardinality_limit,
            ObservableCounter: cardinality_limit,
        },
    )
