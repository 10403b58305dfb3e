"""The SDK adapter: the OpenTelemetry SDK's metrics, spans and log records as the neutral
view, read as their OTLP encoding would read (what the OTLP encoder leaves out is left out
here too, so the ids are the OTLP path's), without encoding them: the exporters need no
protobuf. tests/otel/test_conversion_sdk.py holds this adapter and the OTLP one alike.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from doow_otel.model.fields import MAX_INT_QUANTITY
from doow_otel.otel.conversion.rules import (
    MAX_PARTS,
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

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricsData

__all__ = ["convert_log_records", "convert_metrics", "convert_spans", "sdk_value"]


_INT64_MIN = -(2**63)


def _sdk_attributes(attributes: Mapping[Any, Any] | None) -> Attributes:
    """The attributes as OTLP would carry them: what opentelemetry's OTLP encoder leaves
    out (it logs it) is left out here too, so that the ids are the OTLP path's."""
    if not attributes:
        return NO_ATTRIBUTES
    for key, value in attributes.items():  # the common case: ASCII keys and scalars, as given
        kind = type(value)
        if type(key) is not str or not key.isascii():
            break
        if kind is str:
            if not value.isascii():
                break
        elif kind is int:
            if not _INT64_MIN <= value <= MAX_INT_QUANTITY:
                break
        elif kind is not bool and kind is not float:
            break
    else:
        return attributes
    plain: list[tuple[str, Value]] = []
    for key, value in attributes.items():
        try:
            plain.append((_sdk_text(key), sdk_value(value)))
        except (TypeError, ValueError):  # UnicodeEncodeError and out of range included
            continue
    return mapping(plain)


def _sdk_text(text: object) -> str:
    if not isinstance(text, str):
        raise TypeError("not a string")
    text.encode()  # a lone surrogate is not UTF-8: the encoder refuses it
    # the string itself, as protobuf stores it: str() of a str-Enum member is "Cls.NAME"
    return str.__str__(text)


def sdk_value(value: object) -> Value:
    """The value the OTLP encoder's `_encode_value` makes, in the same order of checks."""
    if value is None:
        return None
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return _sdk_text(value)
    if isinstance(value, int):
        if not _INT64_MIN <= value <= MAX_INT_QUANTITY:
            raise ValueError("past int64")
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, Sequence):
        return [sdk_value(v) for v in value]
    if isinstance(value, Mapping):
        return mapping([(_sdk_text(str(k)), sdk_value(v)) for k, v in value.items()])
    raise TypeError(f"{type(value).__name__} is not an OTLP value")


def _sdk_spans(spans: Iterable[Any]) -> Iterator[tuple[Attributes, Iterator[SpanView]]]:
    """ReadableSpans in the order their OTLP encoding has them: by resource, then scope."""
    grouped: dict[Any, dict[Any, list[Any]]] = {}
    for span in spans:
        grouped.setdefault(span.resource, {}).setdefault(span.instrumentation_scope, []).append(
            span
        )
    for resource, scopes in grouped.items():
        views = (
            SpanView(
                f"{span.get_span_context().trace_id:032x}",
                f"{span.get_span_context().span_id:016x}",
                _sdk_attributes(span.attributes),
                [(e.name, _sdk_attributes(e.attributes), e.timestamp) for e in span.events],
                span.end_time or 0,
            )
            for in_scope in scopes.values()
            for span in in_scope
        )
        yield _sdk_attributes(resource.attributes), views


def _sdk_logs(
    records: Iterable[Any],
) -> Iterator[tuple[Attributes, Iterator[tuple[str, Iterator[LogView]]]]]:
    """The SDK's log records (`ReadableLogRecord`, before 1.39 `LogData`) in the order their
    OTLP encoding has them: by resource, then scope."""
    grouped: dict[Any, dict[Any, list[Any]]] = {}
    for record in records:
        resource = getattr(record, "resource", None)  # on the record itself before 1.39
        resource = record.log_record.resource if resource is None else resource
        scope = record.instrumentation_scope or None
        grouped.setdefault(resource, {}).setdefault(scope, []).append(record.log_record)
    for resource, scopes in grouped.items():
        views = (
            (scope.name if scope else "", map(_sdk_log, in_scope))
            for scope, in_scope in scopes.items()
        )
        yield _sdk_attributes(resource.attributes), views


def _sdk_log(log: Any) -> LogView:
    try:
        body = sdk_value(log.body)
    except (TypeError, ValueError):
        body = None  # a body OTLP cannot carry: no body
    return LogView(
        getattr(log, "event_name", None) or "",  # opentelemetry-sdk 1.35 and later
        _sdk_attributes(log.attributes),
        log.timestamp or 0,
        log.observed_timestamp or 0,
        f"{log.trace_id:032x}" if log.trace_id else "",
        f"{log.span_id:016x}" if log.span_id else "",
        body,
    )


def _sdk_metrics(data: MetricsData) -> Iterator[ResourceView]:
    for resource_metrics in data.resource_metrics:
        scopes = (
            ScopeView(
                scope_metrics.scope.name,
                scope_metrics.scope.version or "",
                map(_sdk_metric, scope_metrics.metrics),
            )
            for scope_metrics in resource_metrics.scope_metrics
        )
        yield ResourceView(_sdk_attributes(resource_metrics.resource.attributes), scopes)


def _sdk_metric(metric: Any) -> MetricView:
    from opentelemetry.sdk.metrics.export import ExponentialHistogram, Histogram, Sum

    data = metric.data
    unit = metric.unit or ""
    if isinstance(data, Sum):
        points = _sdk_sum_points(data.data_points)
        return MetricView(metric.name, unit, "sum", data.is_monotonic, is_delta(data), points)
    if isinstance(data, (Histogram, ExponentialHistogram)):
        points = (
            (
                _sdk_attributes(p.attributes),
                p.start_time_unix_nano,
                p.time_unix_nano,
                _sdk_double(p.sum),  # OTLP's sum is a double
                p.count,
            )
            for p in data.data_points
        )
        return MetricView(metric.name, unit, "histogram", True, is_delta(data), points)
    return MetricView(metric.name, unit, None, False, False, ())


def _sdk_double(value: Any) -> float | None:
    """A number as OTLP's double; None (a missing quantity, counted) for what is none."""
    if type(value) is float or isinstance(value, numbers.Real):
        return float(value)
    return None


def _sdk_sum_points(
    points: Iterable[Any],
) -> Iterator[tuple[Attributes, int, int, int | float | None, int]]:
    """The SDK sums Python integers: an interval sum past int64 (what OTLP and Doow carry)
    becomes the remainder and parts of 2**63-1, each part with `doow.part` (1, 2, ...) in
    its attributes so that its id differs (docs/conversion.md, Metrics)."""
    for point in points:
        attributes = _sdk_attributes(point.attributes)
        start, end, value = point.start_time_unix_nano, point.time_unix_nano, point.value
        if not isinstance(value, int):
            yield attributes, start, end, _sdk_double(value), 0
        elif value <= MAX_INT_QUANTITY or value > MAX_PARTS * MAX_INT_QUANTITY:
            yield attributes, start, end, int(value), 0  # past the parts: invalid_quantity
        else:
            parts = -(-value // MAX_INT_QUANTITY)
            yield attributes, start, end, value - (parts - 1) * MAX_INT_QUANTITY, 0
            for part in range(1, parts):
                split = _sdk_attributes({**attributes, "doow.part": part})
                yield split, start, end, MAX_INT_QUANTITY, 0


def convert_metrics(data: MetricsData, options: ConversionOptions | None = None) -> Conversion:
    """The SDK's metrics, read as they are: the same events as `convert_metrics_request`
    of their OTLP encoding, without encoding them."""
    converter = Converter(options or ConversionOptions())
    converter.metrics(_sdk_metrics(data))
    return converter.result


def convert_spans(spans: Iterable[Any], options: ConversionOptions | None = None) -> Conversion:
    """The SDK's spans (ReadableSpan), read as they are: the same events as
    `convert_traces_request` of their OTLP encoding, without encoding them."""
    converter = Converter(options or ConversionOptions())
    converter.traces(_sdk_spans(spans))
    return converter.result


def convert_log_records(
    records: Iterable[Any], options: ConversionOptions | None = None
) -> Conversion:
    """The SDK's log records, read as they are: the same events as `convert_logs_request`
    of their OTLP encoding, without encoding them."""
    converter = Converter(options or ConversionOptions())
    converter.logs(_sdk_logs(records))
    return converter.result
