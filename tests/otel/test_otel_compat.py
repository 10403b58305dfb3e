"""What differs between the OpenTelemetry SDK releases doow_otel supports (1.34 and later);
`./dev matrix` runs these on the oldest and the newest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)

from doow_otel import DoowClient
from doow_otel.otel.logs import LicenseFromContextLogs
from doow_otel.otel.metrics import DELTA_TEMPORALITY, DoowMetricExporter, metric_reader
from doow_otel.otel.traces import LicenseFromContext
from doow_otel_testing import LocalDoow


class RefusedExporter(MetricExporter):
    """OTLP/HTTP 1.34-1.39 to a collector that is not listening: export raises."""

    def __init__(self) -> None:
        super().__init__(preferred_temporality=DELTA_TEMPORALITY)
        self.raising = True
        self.exported: list[MetricsData] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self.raising:
            raise ConnectionError("connection refused")
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def _some_points() -> MetricsData:
    reader = InMemoryMetricReader(preferred_temporality=DELTA_TEMPORALITY)
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("t").create_counter("api_calls").add(3, {"doow.license_id": "lic_a"})
    data = reader.get_metrics_data()
    assert data is not None
    provider.shutdown()
    return data


def test_processors_flush_true_and_take_both_emit_names() -> None:
    # Before 1.42 the SDK's SpanProcessor.force_flush returns None: a failed flush.
    assert LicenseFromContext().force_flush() is True
    # 1.34 calls LogRecordProcessor.emit, later releases on_emit.
    logs = LicenseFromContextLogs()
    assert logs.emit == logs.on_emit
    assert logs.force_flush() is True


def test_metric_reader_builds_on_this_sdk() -> None:
    exporter = RefusedExporter()
    exporter.raising = False
    provider = MeterProvider(metric_readers=[metric_reader(exporter, interval=3600)])
    provider.get_meter("t").create_counter("api_calls").add(2, {"doow.license_id": "lic_a"})
    assert provider.force_flush(10_000)
    provider.shutdown()
    points = [
        point.value
        for data in exporter.exported
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    ]
    assert points == [2]


def test_a_window_with_nothing_new_still_sends_what_waits(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """The SDK exports nothing when nothing was recorded since the last collection; the
    usage an earlier window left in the spool (an outage, the event budget) must still go,
    or an idle service never sends its backlog (issue 19, point 7)."""
    client = DoowClient(
        local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "spool", max_retries=0
    )
    reader = metric_reader(DoowMetricExporter(client), interval=3600)
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("t").create_counter("api_calls").add(3, {"doow.license_id": "lic_a"})
    local_doow.faults.fail_next(1000, 503)
    reader._collect_window()  # what the window clock calls at each boundary
    assert client.stats()["pending_in_spool"] == 1 and local_doow.total("api_calls") == 0
    local_doow.faults.clear()
    reader._collect_window()  # the next window: nothing new recorded
    assert local_doow.total("api_calls", "lic_a") == 3
    assert client.stats()["pending_in_spool"] == 0
    provider.shutdown()
    client.close()
