"""Usage from OpenTelemetry metrics: the Doow metric exporter and readers.

Usage counters must be delta: Doow sums what it receives. `metric_reader()` is the
reader to add to an existing MeterProvider; `DoowMetricReader` is what
`opentelemetry-instrument` builds for `OTEL_METRICS_EXPORTER=doow`; both raise the SDK's
cardinality limit (past which licenses would fold into an overflow point that cannot
be billed).
"""

from __future__ import annotations

import contextlib
import math
import random
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
from doow_otel.delivery.clock import WindowClock
from doow_otel.delivery.config import Settings
from doow_otel.delivery.lifecycle import at_fork, at_snapshot
from doow_otel.model.packing import pack
from doow_otel.otel.compat import reader_limits
from doow_otel.otel.conversion import ConversionOptions, convert_metrics
from doow_otel.otel.exporting import DoowExporterBase
from doow_otel.otel.sigterm import built_by_doow, flush_on_sigterm

__all__ = [
    "DELTA_TEMPORALITY",
    "DoowMetricExporter",
    "DoowMetricReader",
    "WindowedMetricReader",
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
    """Delta-temporality metric exporter: the usage data points of one export become one
    event per stream (every metric of a license and attribution in one event)."""

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
        # every metric of a stream in one event (rule P): the points of one export only
        conversion.events = pack([(event, True) for event in conversion.events])
        self._debug(f"{_points(metrics_data)} data points", conversion)
        ok = self._deliver(conversion, timeout_millis / 1000)
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._flush_spool(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._shutdown()


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


class WindowedMetricReader(PeriodicExportingMetricReader):
    """A periodic reader whose periods are clock-aligned windows (`flush_interval`, 60 s by
    default): every process of a service collects the same minutes, each usage stream
    costs one event per window, and nothing but the window (never a count of calls)
    triggers an export. The SDK's own thread is not started (an infinite interval); the
    window clock collects, and shutdown collects a last time."""

    def __init__(
        self,
        exporter: MetricExporter,
        *,
        window: float,
        timeout: float = 10.0,
        cardinality_limit: int = DEFAULT_CARDINALITY_LIMIT,
    ) -> None:
        super().__init__(
            exporter,
            export_interval_millis=math.inf,
            export_timeout_millis=timeout * 1000,
            **reader_limits(usage_cardinality_limits(cardinality_limit)),
        )
        self.window = window
        self._exported = False
        self._clock = WindowClock(self._collect_window, window)
        self._clock.start()
        at_fork(self, after_in_child=WindowedMetricReader._restart_clock)
        at_snapshot(
            self,
            before=WindowedMetricReader._before_snapshot,
            after_restore=WindowedMetricReader._after_restore,
        )

    def _before_snapshot(self) -> None:
        """Lambda SnapStart: export what init recorded before the snapshot (delta: the
        SDK's sums start again from zero), or every restored copy would export it again
        under its own ids."""
        self._collect_window()

    def _after_restore(self) -> None:
        """Each restored environment draws its own randomness (backoff jitter) and opens
        its own connections."""
        random.seed()
        client = getattr(self._exporter, "client", None)
        if isinstance(client, DoowClient):
            client.after_restore()

    def _collect_window(self) -> None:
        self._exported = False
        with contextlib.suppress(Exception):  # the clock must go on (the SDK logs export errors)
            self.collect(timeout_millis=self._export_timeout_millis)
            if not self._exported:
                # Nothing new this window: the SDK exports nothing, yet what an earlier
                # window left waiting (in the spool, over budget or after an outage) must
                # still go, or an idle service never sends its backlog.
                self._exporter.force_flush(timeout_millis=self._export_timeout_millis)

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        self._exported = True  # the export replays what waits, before the new usage
        super()._receive_metrics(metrics_data, timeout_millis=timeout_millis, **kwargs)

    def _restart_clock(self) -> None:
        self._clock = WindowClock(self._collect_window, self.window)
        self._clock.start()

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._clock.stop()
        with contextlib.suppress(Exception):
            self.collect(timeout_millis=min(timeout_millis, self._export_timeout_millis))
        super().shutdown(timeout_millis=timeout_millis, **kwargs)


def metric_reader(
    exporter: MetricExporter | None = None,
    *,
    interval: float | None = None,
    timeout: float = 10.0,
    cardinality_limit: int = DEFAULT_CARDINALITY_LIMIT,
    **exporter_kwargs: Any,
) -> WindowedMetricReader:
    """A reader to add to your own MeterProvider: `MeterProvider(metric_readers=[..., this])`.
    `interval`: the window in seconds (default `DOOW_TRACK_FLUSH_INTERVAL`, else 60).
    Flushed on SIGTERM (doow_otel.otel.sigterm), wherever its provider is."""
    reader = WindowedMetricReader(
        exporter or DoowMetricExporter(**exporter_kwargs),
        window=interval or Settings.resolve().flush_interval,
        timeout=timeout,
        cardinality_limit=cardinality_limit,
    )
    if not built_by_doow():  # DoowTracker flushes its own reader
        flush_on_sigterm(reader)
    return reader


class DoowMetricReader(WindowedMetricReader):
    """The reader `opentelemetry-instrument` builds for `OTEL_METRICS_EXPORTER=doow`: the
    same window (`DOOW_TRACK_FLUSH_INTERVAL`) and cardinality limits as `metric_reader()`,
    where the SDK's default reader would fold the 2001st license into an overflow point."""

    def __init__(self, exporter: MetricExporter | None = None, **kwargs: Any) -> None:
        super().__init__(
            exporter or DoowMetricExporter(),
            window=Settings.resolve().flush_interval,
            timeout=float(kwargs.pop("timeout", 10.0)),
        )
        # What is recorded before a fork is collected and held for the parent, so the
        # child (another pid in the resource, other ids) never bills it too.
        at_fork(self, before=DoowMetricReader._hold, after_in_parent=DoowMetricReader._release)

    def _hold(self) -> None:
        exporter = self._exporter
        if isinstance(exporter, DoowExporterBase):
            exporter.holding = True
            self.collect(timeout_millis=self._export_timeout_millis)

    def _release(self) -> None:
        exporter = self._exporter
        if isinstance(exporter, DoowExporterBase):
            exporter.holding = False


def usage_cardinality_limits(limit: int = DEFAULT_CARDINALITY_LIMIT) -> dict[type, int]:
    return {Counter: limit, Histogram: limit, ObservableCounter: limit}
