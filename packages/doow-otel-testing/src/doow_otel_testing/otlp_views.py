"""The OTLP adapter: OTLP protobuf messages as the conversion rules' neutral view.

Only the local server, the shared vectors and the parity fuzz read OTLP messages in
Python (the runtime exporters read the SDK's objects), so this adapter lives here, in the
testing package, beside protobuf.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from doow_otel.otel.conversion.rules import (
    DEFAULT_RESOURCE_ATTRIBUTES,
    Conversion,
    ConversionOptions,
    Converter,
    is_delta,
)
from doow_otel.otel.conversion.views import (
    NO_ATTRIBUTES,
    Attributes,
    LogView,
    MetricView,
    ResourceView,
    ScopeView,
    SpanView,
    Value,
    mapping,
)

__all__ = [
    "conversion_options",
    "convert_logs_request",
    "convert_metrics_request",
    "convert_traces_request",
]


def _otlp_value(value: AnyValue) -> Value:
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "bool_value":
        return value.bool_value
    if which == "double_value":
        return value.double_value
    if which == "array_value":
        return [_otlp_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return _otlp_attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return value.bytes_value
    return None


def _otlp_attributes(attributes: Sequence[KeyValue]) -> Attributes:
    if not attributes:
        return NO_ATTRIBUTES
    return mapping([(kv.key, _otlp_value(kv.value)) for kv in attributes])


def _otlp_spans(
    request: ExportTraceServiceRequest,
) -> Iterator[tuple[Attributes, Iterator[SpanView]]]:
    for resource_spans in request.resource_spans:
        spans = (
            SpanView(
                span.trace_id.hex(),
                span.span_id.hex(),
                _otlp_attributes(span.attributes),
                [(e.name, _otlp_attributes(e.attributes), e.time_unix_nano) for e in span.events],
                span.end_time_unix_nano,
            )
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        )
        yield _otlp_attributes(resource_spans.resource.attributes), spans


def _otlp_logs(
    request: ExportLogsServiceRequest,
) -> Iterator[tuple[Attributes, Iterator[tuple[str, Iterator[LogView]]]]]:
    for resource_logs in request.resource_logs:
        scopes = (
            (scope_logs.scope.name, map(_otlp_log, scope_logs.log_records))
            for scope_logs in resource_logs.scope_logs
        )
        yield _otlp_attributes(resource_logs.resource.attributes), scopes


def _otlp_log(record: Any) -> LogView:
    return LogView(
        getattr(record, "event_name", ""),  # opentelemetry-proto before 1.35 has none
        _otlp_attributes(record.attributes),
        record.time_unix_nano,
        record.observed_time_unix_nano,
        record.trace_id.hex(),
        record.span_id.hex(),
        _otlp_value(record.body),
    )


def _otlp_metrics(request: ExportMetricsServiceRequest) -> Iterator[ResourceView]:
    for resource_metrics in request.resource_metrics:
        scopes = (
            ScopeView(
                scope_metrics.scope.name,
                scope_metrics.scope.version,
                map(_otlp_metric, scope_metrics.metrics),
            )
            for scope_metrics in resource_metrics.scope_metrics
        )
        yield ResourceView(_otlp_attributes(resource_metrics.resource.attributes), scopes)


def _otlp_metric(metric: Any) -> MetricView:
    which = metric.WhichOneof("data")
    if which == "sum":
        data = metric.sum
        points: Iterable[Any] = (
            (
                _otlp_attributes(p.attributes),
                p.start_time_unix_nano,
                p.time_unix_nano,
                _otlp_number(p),
                0,
            )
            for p in data.data_points
        )
        return MetricView(
            metric.name, metric.unit, "sum", data.is_monotonic, is_delta(data), points
        )
    if which in ("histogram", "exponential_histogram"):
        data = getattr(metric, which)
        points = (
            (
                _otlp_attributes(p.attributes),
                p.start_time_unix_nano,
                p.time_unix_nano,
                p.sum if p.HasField("sum") else None,
                p.count,
            )
            for p in data.data_points
        )
        return MetricView(metric.name, metric.unit, "histogram", True, is_delta(data), points)
    return MetricView(metric.name, metric.unit, None, False, False, ())


def _otlp_number(point: Any) -> int | float | None:
    which = point.WhichOneof("value")  # as_int or as_double
    return getattr(point, which) if which else None


def convert_metrics_request(
    request: ExportMetricsServiceRequest, options: ConversionOptions | None = None
) -> Conversion:
    """OTLP metrics (the collector route's, the vectors')."""
    converter = Converter(options or ConversionOptions())
    converter.metrics(_otlp_metrics(request))
    return converter.result


def convert_traces_request(
    request: ExportTraceServiceRequest, options: ConversionOptions | None = None
) -> Conversion:
    converter = Converter(options or ConversionOptions())
    converter.traces(_otlp_spans(request))
    return converter.result


def convert_logs_request(
    request: ExportLogsServiceRequest, options: ConversionOptions | None = None
) -> Conversion:
    converter = Converter(options or ConversionOptions())
    converter.logs(_otlp_logs(request))
    return converter.result


def conversion_options(data: Mapping[str, Any]) -> ConversionOptions:
    """The options of a shared vector (tests/vectors/*.json, their `options` object)."""
    return ConversionOptions(
        default_license_id=data.get("default_license_id"),
        usage_metrics=frozenset(data.get("usage_metrics", ())),
        resource_attributes=tuple(data.get("resource_attributes", DEFAULT_RESOURCE_ATTRIBUTES)),
        histogram_quantity=data.get("histogram_quantity", "sum"),
        genai_without_license=bool(data.get("genai_without_license", False)),
    )
