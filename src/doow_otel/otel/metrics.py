"""Usage from OpenTelemetry metrics: the Doow metric exporter and readers.

Usage counters must be delta: Doow sums what it receives. `metric_reader()` is the
reader to add to an existing MeterProvider; `DoowMetricReader` is what
`opentelemetry-instrument` builds for `OTEL_METRICS_EXPORTER=doow`; both raise the SDK's
cardinality limit (past which licenses would fold into an overflow point that cannot
be billed). `RetainingMetricExporter` keeps what an OTLP push to a collector failed to
deliver for the next export.
"""

from __future__ import annotations

import time
from typing import Any

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

from doow_otel.delivery.client import DoowClient
from doow_otel.delivery.config import Settings
from doow_otel.delivery.lifecycle import at_fork
from doow_otel.delivery.reports import Reporter
from doow_otel.otel.compat import reader_limits
from doow_otel.otel.conversion import ConversionOptions, convert_metrics
from doow_otel.otel.exporting import MAX_RETAINED_EVENTS, DoowExporterBase, Retention
from doow_otel.otel.sigterm import built_by_doow, flush_on_sigterm

__all__ = [
    "DELTA_TEMPORALITY",
    "DoowMetricExporter",
    "DoowMetricReader",
    "RetainingMetricExporter",
    "metric_reader",
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

class DoowMetricExporter(DoowExporterBase, MetricExporter):
    """Delta-temporality metric exporter: each usage data point becomes one Doow event."""

    def __init__(
        self,
        client: DoowClient | None = None,
        *,
        options: ConversionOptions | None = None,
        preferred_aggregation: dict[type, Any] | None = None,
        problem: str | None = None,
        **client_kwargs: Any,
    ) -> None:
        DoowExporterBase.__init__(self, client, options=options, problem=problem, **client_kwargs)
        MetricExporter.__init__(
            self,
            preferred_temporality=DELTA_TEMPORALITY,
            preferred_aggregation=preferred_aggregation,
        )

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        conversion = convert_metrics(metrics_data, self.options)
        self._debug(f"{_points(metrics_data)} data points", conversion)
        ok = self._deliver(conversion, timeout_millis / 1000)
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._flush_spool(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._shutdown()


class RetainingMetricExporter(Retention[MetricsData], MetricExporter):
    """Wraps a metric exporter that drops what it fails to export (OTLP to a collector
    that is not listening): the failed data is reported and goes out again with the
    next export, bounded by `max_points` (past that the oldest is dropped, reported).

    Delta data points keep their start and end times, so the collector's doow exporter
    derives the same event ids on the retry: whatever did arrive is not billed twice.
    """

    def __init__(
        self, exporter: MetricExporter, report: Reporter, *, max_points: int = MAX_RETAINED_EVENTS
    ) -> None:
        super().__init__(
            preferred_temporality=exporter._preferred_temporality,
            preferred_aggregation=exporter._preferred_aggregation,
        )
        self.exporter = exporter
        self.report = report
        self.max_points = max_points
        self._reset_retention()  # retained: (data, its point count)

    def after_fork_in_child(self, client: DoowClient) -> None:
        self._reset_retention()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self.holding:
            with self._lock:
                self._retained.append((metrics_data, _points(metrics_data)))
            return MetricExportResult.SUCCESS
        with self._lock:
            waiting, self._retained = self._retained, []
        still: list[tuple[MetricsData, int]] = []
        end = time.monotonic() + timeout_millis / 1000
        for data, points in [*waiting, (metrics_data, _points(metrics_data))]:
            if not points:
                continue
            left = max(0.0, end - time.monotonic()) * 1000
            if still or not self._export_one(data, left):
                still.append((data, points))
        if not still:
            return MetricExportResult.SUCCESS
        kept = sum(points for _, points in still)
        while kept > self.max_points and still:
            _, points = still.pop(0)
            kept -= points
            self.report("dropped", f"{points} usage data points dropped: more than "
                        f"{self.max_points:,} waiting for the collector", count=points)  # fmt: skip
        self.report(
            "network",
            f"the collector did not take {kept} usage data points; they are kept in memory "
            "and sent again with the next export",
            count=kept,
        )
        with self._lock:
            self._retained = still + self._retained
            self._failed += 1
        return MetricExportResult.FAILURE

    def _export_one(self, data: MetricsData, timeout_millis: float) -> bool:
        try:
            return self.exporter.export(data, timeout_millis=timeout_millis) is (
                MetricExportResult.SUCCESS
            )
        except Exception:  # OTLP/HTTP 1.34-1.39 raises when refused
            return False

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        if self._retained:
            empty = MetricsData(resource_metrics=[])
            return self.export(empty, timeout_millis) is MetricExportResult.SUCCESS
        return bool(self.exporter.force_flush(timeout_millis))

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.exporter.shutdown(timeout_millis=timeout_millis)


def _points(metrics_data: MetricsData) -> int:
    return sum(
        len(getattr(metric.data, "data_points", ()))
        for rm in metrics_data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    )


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
    """A reader to add to your own MeterProvider: `MeterProvider(metric_readers=[..., this])`.

    Flushed on SIGTERM (doow_otel.otel.sigterm), wherever its provider is."""
    reader = PeriodicExportingMetricReader(
        exporter or DoowMetricExporter(**exporter_kwargs),
        export_interval_millis=(interval or Settings.resolve().flush_interval) * 1000,
        export_timeout_millis=timeout * 1000,
        **reader_limits(usage_cardinality_limits(cardinality_limit)),
    )
    if not built_by_doow():  # DoowTracker flushes its own reader
        flush_on_sigterm(reader)
    return reader


class DoowMetricReader(PeriodicExportingMetricReader):
    """The reader `opentelemetry-instrument` builds for `OTEL_METRICS_EXPORTER=doow`: the
    same interval (`DOOW_TRACK_FLUSH_INTERVAL`) and cardinality limits as DoowTracker's,
    where the SDK's default reader would fold the 2001st license into an overflow point."""

    def __init__(self, exporter: MetricExporter | None = None, **kwargs: Any) -> None:
        timeout = float(kwargs.pop("timeout", 10.0))
        super().__init__(
            exporter or DoowMetricExporter(),
            export_interval_millis=Settings.resolve().flush_interval * 1000,
            export_timeout_millis=timeout * 1000,
            **reader_limits(usage_cardinality_limits()),
        )
        # Like DoowTracker: what is recorded before a fork is collected and held for the
        # parent, so the child (another pid in the resource, other ids) never bills it too.
        at_fork(self, before=DoowMetricReader._hold, after_in_parent=DoowMetricReader._release)

    def _hold(self) -> None:
        exporter = self._exporter
        if isinstance(exporter, (DoowExporterBase, RetainingMetricExporter)):
            exporter.holding = True
            self.collect(timeout_millis=self._export_timeout_millis)

    def _release(self) -> None:
        exporter = self._exporter
        if isinstance(exporter, (DoowExporterBase, RetainingMetricExporter)):
            exporter.holding = False


def usage_cardinality_limits(limit: int = DEFAULT_CARDINALITY_LIMIT) -> dict[type, int]:
    return {Counter: limit, Histogram: limit, ObservableCounter: limit}


