"""OTLP to Doow events: the rules of docs/conversion.md, written once for Python.

Works on OTLP protobuf messages, so that SDK data (encoded with the OTLP encoders of
opentelemetry-exporter-otlp-proto-common), OTLP received over HTTP, and the shared
vectors all go through exactly the same code as the Go collector exporter's rules.
"""

from __future__ import annotations

import math
import struct
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

from doow_otel.events import AttributeValue, InvalidEvent, UsageEvent
from doow_otel.records import NS_LINE, BadRecord, parse_line, record_event

if TYPE_CHECKING:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = [
    "Conversion",
    "ConversionOptions",
    "convert_logs_request",
    "convert_metrics_request",
    "convert_traces_request",
]

DEFAULT_RESOURCE_ATTRIBUTES = (
    "service.name",
    "deployment.environment",
    "faas.name",
    "cloud.region",
)
TRACKER_SCOPE = "doow_otel"
USAGE_EVENT_NAME = "doow.usage"
LICENSE_KEYS = ("doow.license_id", "license_id")

NS_METRIC = uuid.UUID("6f1c2d7a-1b10-4c8e-9f0e-5b1d6f0e3c52")
NS_SPAN_EVENT = uuid.UUID("0e3c52f1-6f1c-4d7a-8b10-9f0e5b1d6f0e")
NS_GENAI = uuid.UUID("7a9b10c2-5b1d-4f0e-8c52-6f1c2d3c9f0e")
NS_LOG = uuid.UUID("2d7a9b10-3c52-4c8e-9f0e-1b106f1c5b1d")
MAX_BAD_RECORDS = 20
"""Bad usage records described by position per conversion (all are counted)."""

# OTLP enums (opentelemetry.proto.metrics.v1.AggregationTemporality)
_DELTA = 1
_CUMULATIVE = 2

_FIXES = {
    "cardinality_overflow": "more licenses (attribute sets) in one export than the SDK's "
    "cardinality limit; raise it: doow_otel.metric_reader(cardinality_limit=...) or a View "
    "with aggregation_cardinality_limit",
    "cumulative_temporality": "usage counters must use delta temporality: set "
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta, use DoowMetricExporter's "
    "preferred temporality, or add the collector's cumulativetodelta processor",
    "missing_license": "set doow.license_id on the record, the resource or in baggage, "
    "or configure default_license_id",
    "invalid_quantity": "usage quantities must be finite and not negative",
    "invalid_metric_name": "metric names may contain letters, digits and _ . : - (at most 128)",
    "invalid_license": "license ids are at most 128 characters",
    "missing_time": "the record has no timestamp",
    "missing_metric": "a doow.usage event needs a string doow.metric attribute",
    "missing_quantity": "a doow.usage event needs a numeric doow.quantity attribute",
    "not_json": "a doow.usage record's body must be a JSON object (docs/conversion.md)",
    "invalid_kind": "kind is USAGE or ADJUSTMENT",
    "invalid_time": "timestamp is RFC 3339 with a timezone, between 2000 and 2100",
    "invalid_field": "a usage record field has the wrong type or is unknown "
    "(docs/conversion.md, Usage records)",
    "histogram_without_sum": "the histogram point has no sum; record non-negative values "
    "or set histogram_quantity='count'",
}


@dataclass(frozen=True)
class ConversionOptions:
    default_license_id: str | None = None
    usage_metrics: frozenset[str] = frozenset()
    resource_attributes: tuple[str, ...] = DEFAULT_RESOURCE_ATTRIBUTES
    histogram_quantity: Literal["sum", "count"] = "sum"
    genai_without_license: bool = False

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ConversionOptions:
        return cls(
            default_license_id=data.get("default_license_id"),
            usage_metrics=frozenset(data.get("usage_metrics", ())),
            resource_attributes=tuple(data.get("resource_attributes", DEFAULT_RESOURCE_ATTRIBUTES)),
            histogram_quantity=data.get("histogram_quantity", "sum"),
            genai_without_license=bool(data.get("genai_without_license", False)),
        )


@dataclass
class Conversion:
    """The events, and the usage that could not be converted, counted by reason code."""

    events: list[UsageEvent] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    bad_records: list[str] = field(default_factory=list)
    """The first bad usage records (log bodies): position and reason."""

    @property
    def problems(self) -> list[str]:
        return [self.describe(code, count) for code, count in sorted(self.dropped.items())]

    @staticmethod
    def describe(code: str, count: int) -> str:
        return f"{count} usage records dropped ({code}): {_FIXES.get(code, code)}"


class _Drop(Exception):
    def __init__(self, code: str) -> None:
        self.code = code


# --- canonical encoding for event ids (docs/conversion.md, "Event ids") ---


def _enc_str(text: str) -> str:
    return f"s{len(text.encode())}:{text}"


def _enc_int(number: int) -> str:
    return f"i{number};"


def _enc_value(value: AnyValue) -> str:
    which = value.WhichOneof("value")
    if which == "string_value":
        return _enc_str(value.string_value)
    if which == "bool_value":
        return "b1" if value.bool_value else "b0"
    if which == "int_value":
        return _enc_int(value.int_value)
    if which == "double_value":
        return "d" + struct.pack(">d", value.double_value).hex()
    if which == "array_value":
        items = value.array_value.values
        return f"a{len(items)}[" + "".join(_enc_value(v) for v in items) + "]"
    if which == "kvlist_value":
        return _enc_attrs(value.kvlist_value.values)
    if which == "bytes_value":
        return f"y{len(value.bytes_value)}:{value.bytes_value.hex()}"
    return "n"


def _enc_attrs(attributes: Sequence[KeyValue]) -> str:
    ordered = sorted(attributes, key=lambda kv: kv.key.encode())
    body = "".join(_enc_str(kv.key) + _enc_value(kv.value) for kv in ordered)
    return f"m{len(ordered)}{{{body}}}"


def _event_id(namespace: uuid.UUID, *parts: str) -> str:
    return str(uuid.uuid5(namespace, "".join(parts)))


# --- attribute access ---


def _plain(value: AnyValue) -> AttributeValue | None:
    """An attribution value: scalars as they are, arrays of scalars joined with ','."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return value.bool_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value if math.isfinite(value.double_value) else None
    if which == "array_value":
        parts = [_plain(v) for v in value.array_value.values]
        if any(p is None for p in parts):
            return None
        return ",".join(_scalar_text(p) for p in parts if p is not None)
    return None


def _scalar_text(value: AttributeValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _index(attributes: Iterable[KeyValue]) -> dict[str, AnyValue]:
    return {kv.key: kv.value for kv in attributes}


def _string(attrs: Mapping[str, AnyValue], key: str) -> str | None:
    value = attrs.get(key)
    if value is not None and value.WhichOneof("value") == "string_value" and value.string_value:
        return value.string_value
    return None


def _license(*sources: Mapping[str, AnyValue]) -> str | None:
    for attrs in sources:
        for key in LICENSE_KEYS:
            found = _string(attrs, key)
            if found:
                return found
    return None


def _number(value: AnyValue | None) -> int | float | None:
    if value is None:
        return None
    which = value.WhichOneof("value")
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    return None


def _int(attrs: Mapping[str, AnyValue], key: str) -> int | None:
    value = attrs.get(key)
    if value is not None and value.WhichOneof("value") == "int_value":
        return int(value.int_value)
    return None


_RECORD_KEYS = {
    "doow.kind": "kind",
    "doow.timestamp": "timestamp",
    "doow.event_id": "event_id",
    "doow.idempotency_key": "idempotency_key",
    "doow.source_system": "source_system",
}
_RECORD_MAPS = (("doow.metadata.", "metadata"), ("doow.metric_tuple_hint.", "metric_tuple_hint"))
_RECORD_BASICS = (("doow.metric", "metric"), ("doow.quantity", "quantity"), ("doow.unit", "unit"))


def _record_fields(attrs: Mapping[str, AnyValue]) -> dict[str, Any] | None:
    """The usage record that `doow.*` attributes make when they name one of its fields
    beyond metric, quantity, unit and license; else None (the plain attribute form)."""
    data: dict[str, Any] = {}
    for key, value in attrs.items():
        if key in _RECORD_KEYS:
            data[_RECORD_KEYS[key]] = _raw(value)
            continue
        for prefix, name in _RECORD_MAPS:
            if key.startswith(prefix):
                data.setdefault(name, {})[key[len(prefix) :]] = _raw(value)
    if not data:
        return None
    for key, name in _RECORD_BASICS:
        if key in attrs:
            data[name] = _raw(attrs[key])
    return data


def _raw(value: AnyValue) -> Any:
    """A body map's value as JSON would hold it (bytes are not JSON: left as bytes)."""
    which = value.WhichOneof("value")
    if which == "kvlist_value":
        return {kv.key: _raw(kv.value) for kv in value.kvlist_value.values}
    if which == "array_value":
        return [_raw(v) for v in value.array_value.values]
    if which is None:
        return None
    return getattr(value, which)


def _time(nanos: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=nanos // 1_000_000)


class _Converter:
    def __init__(self, options: ConversionOptions) -> None:
        self.options = options
        self.result = Conversion()

    def resource_attribution(self, resource: Mapping[str, AnyValue]) -> dict[str, AttributeValue]:
        picked: dict[str, AttributeValue] = {}
        for key in self.options.resource_attributes:
            if key in resource:
                value = _plain(resource[key])
                if key == "service.name" and str(value).startswith("unknown_service"):
                    continue  # the SDKs' placeholder names nothing
                if value is not None:
                    picked[key] = value
        return picked

    def attribution(
        self,
        base: Mapping[str, AttributeValue],
        record: Mapping[str, AnyValue],
        skip: tuple[str, ...] = (),
    ) -> dict[str, AttributeValue]:
        merged = dict(base)
        for key, value in record.items():
            if not key or key.startswith("doow.") or key == "license_id" or key in skip:
                continue
            plain = _plain(value)
            if plain is not None:
                merged[key] = plain
        return {key: merged[key] for key in sorted(merged, key=str.encode)}

    def emit(
        self,
        *,
        metric: str,
        quantity: int | float | None,
        license_id: str | None,
        unit: str | None,
        nanos: int,
        attribution: dict[str, AttributeValue],
        event_id: str,
    ) -> None:
        """Add one event, or count why it was dropped; a zero quantity is skipped quietly."""
        try:
            if quantity is None:
                raise _Drop("missing_quantity")
            if not math.isfinite(quantity) or quantity < 0:
                raise _Drop("invalid_quantity")
            if quantity == 0:
                return
            if not nanos:
                raise _Drop("missing_time")
            if not license_id:
                raise _Drop("missing_license")
            self.result.events.append(
                UsageEvent(
                    metric=metric,
                    quantity=quantity,
                    license_id=license_id,
                    unit=unit if unit and len(unit) <= 64 else None,
                    occurred_at=_time(nanos),
                    attribution=attribution,
                    event_id=event_id,
                )
            )
        except _Drop as drop:
            self.result.dropped[drop.code] += 1
        except InvalidEvent as invalid:
            # a quantity past int64 (a histogram count) is the quantity's fault
            code = {"license_id": "invalid_license", "quantity": "invalid_quantity"}.get(
                invalid.field, "invalid_metric_name"
            )
            self.result.dropped[code] += 1

    # --- metrics ---

    def metrics(self, request: ExportMetricsServiceRequest) -> None:
        for resource_metrics in request.resource_metrics:
            resource = _index(resource_metrics.resource.attributes)
            enc_resource = _enc_attrs(resource_metrics.resource.attributes)
            base = self.resource_attribution(resource)
            for scope_metrics in resource_metrics.scope_metrics:
                scope = scope_metrics.scope
                scope_is_usage = scope.name == TRACKER_SCOPE
                prefix = enc_resource + _enc_str(scope.name) + _enc_str(scope.version)
                for metric in scope_metrics.metrics:
                    listed = scope_is_usage or metric.name in self.options.usage_metrics
                    self.metric(metric, resource, base, prefix, listed)

    def metric(
        self,
        metric: Any,
        resource: Mapping[str, AnyValue],
        base: Mapping[str, AttributeValue],
        prefix: str,
        listed: bool,
    ) -> None:
        kind = metric.WhichOneof("data")
        if kind == "sum":
            if not metric.sum.is_monotonic:
                return
            data, temporality = metric.sum.data_points, metric.sum.aggregation_temporality
        elif kind in ("histogram", "exponential_histogram"):
            histogram = getattr(metric, kind)
            data, temporality = histogram.data_points, histogram.aggregation_temporality
        else:
            return
        usage_metric = listed or any(_license(_index(p.attributes)) for p in data)
        for point in data:
            attrs = _index(point.attributes)
            own_license = _license(attrs)
            if _is_overflow(attrs):
                if usage_metric:  # the SDK's cardinality limit folded licenses away
                    self.result.dropped["cardinality_overflow"] += 1
                continue
            if not own_license and not listed:
                continue  # other telemetry
            if temporality != _DELTA:
                self.result.dropped["cumulative_temporality"] += 1
                continue
            quantity: int | float | None
            if kind == "sum":
                quantity = _number_point(point)
            elif self.options.histogram_quantity == "count":
                quantity = point.count
            elif point.HasField("sum"):
                quantity = point.sum
            else:
                self.result.dropped["histogram_without_sum"] += 1
                continue
            self.emit(
                metric=_string(attrs, "doow.metric") or metric.name,
                quantity=quantity,
                license_id=own_license or _license(resource) or self.options.default_license_id,
                unit=_string(attrs, "doow.unit") or metric.unit or None,
                nanos=point.time_unix_nano,
                attribution=self.attribution(base, attrs),
                event_id=_event_id(
                    NS_METRIC,
                    prefix,
                    _enc_str(metric.name),
                    _enc_attrs(point.attributes),
                    _enc_int(point.start_time_unix_nano),
                    _enc_int(point.time_unix_nano),
                ),
            )

    # --- traces ---

    def traces(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = _index(resource_spans.resource.attributes)
            base = self.resource_attribution(resource)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.span(span, resource, base)

    def span(
        self, span: Any, resource: Mapping[str, AnyValue], base: Mapping[str, AttributeValue]
    ) -> None:
        span_attrs = _index(span.attributes)
        trace_hex, span_hex = span.trace_id.hex(), span.span_id.hex()
        for position, event in enumerate(span.events):
            if event.name != USAGE_EVENT_NAME:
                continue
            attrs = _index(event.attributes)
            self.usage_record(
                attrs,
                license_id=_license(attrs, span_attrs, resource) or self.options.default_license_id,
                nanos=event.time_unix_nano,
                base=base,
                event_id=_event_id(
                    NS_SPAN_EVENT, _enc_str(trace_hex), _enc_str(span_hex), _enc_int(position)
                ),
            )
        self.genai(span, span_attrs, resource, base, trace_hex, span_hex)

    def genai(
        self,
        span: Any,
        attrs: Mapping[str, AnyValue],
        resource: Mapping[str, AnyValue],
        base: Mapping[str, AttributeValue],
        trace_hex: str,
        span_hex: str,
    ) -> None:
        counts = [
            (metric, _number(attrs.get(f"gen_ai.usage.{metric}")))
            for metric in ("input_tokens", "output_tokens")
        ]
        if all(quantity is None for _, quantity in counts):
            return
        license_id = _license(attrs, resource)
        if not license_id:
            if not self.options.genai_without_license:
                return
            license_id = self.options.default_license_id
        attribution = dict(base)
        for target, sources in (
            ("model", ("gen_ai.request.model",)),
            ("provider", ("gen_ai.provider.name", "gen_ai.system")),
            ("finish_reason", ("gen_ai.response.finish_reasons",)),
        ):
            for source in sources:
                value = _plain(attrs[source]) if source in attrs else None
                if value is not None:
                    attribution[target] = value
                    break
        attribution = {key: attribution[key] for key in sorted(attribution, key=str.encode)}
        for metric, quantity in counts:
            if quantity is None:
                continue
            self.emit(
                metric=metric,
                quantity=quantity,
                license_id=license_id,
                unit="tokens",
                nanos=span.end_time_unix_nano,
                attribution=attribution,
                event_id=_event_id(
                    NS_GENAI, _enc_str(trace_hex), _enc_str(span_hex), _enc_str(metric)
                ),
            )

    def usage_record(
        self,
        attrs: Mapping[str, AnyValue],
        *,
        license_id: str | None,
        nanos: int,
        base: Mapping[str, AttributeValue],
        event_id: str,
        skip: tuple[str, ...] = (),
    ) -> None:
        """A `doow.usage` span event or log record."""
        fields = _record_fields(attrs)
        if fields is not None:  # a usage record in attributes
            attribution = self.attribution(base, attrs, skip)
            self.record(fields, license_id, attribution, nanos, event_id, "record")
            return
        metric = _string(attrs, "doow.metric")
        if metric is None:
            self.result.dropped["missing_metric"] += 1
            return
        self.emit(
            metric=metric,
            quantity=_number(attrs.get("doow.quantity")),
            license_id=license_id,
            unit=_string(attrs, "doow.unit"),
            nanos=nanos,
            attribution=self.attribution(base, attrs, skip),
            event_id=event_id,
        )

    # --- logs ---

    def logs(self, request: ExportLogsServiceRequest) -> None:
        for resource_logs in request.resource_logs:
            resource = _index(resource_logs.resource.attributes)
            enc_resource = _enc_attrs(resource_logs.resource.attributes)
            base = self.resource_attribution(resource)
            for scope_logs in resource_logs.scope_logs:
                prefix = enc_resource + _enc_str(scope_logs.scope.name)
                for record in scope_logs.log_records:
                    attrs = _index(record.attributes)
                    # opentelemetry-proto before 1.35 has no event_name field
                    name = getattr(record, "event_name", "") or _string(attrs, "event.name")
                    if name != USAGE_EVENT_NAME:
                        continue
                    license_id = _license(attrs, resource) or self.options.default_license_id
                    nanos = record.time_unix_nano or record.observed_time_unix_nano
                    identity = (
                        prefix
                        + _enc_int(record.time_unix_nano)
                        + _enc_int(record.observed_time_unix_nano)
                        + _enc_str(record.trace_id.hex())
                        + _enc_str(record.span_id.hex())
                        + _enc_attrs(record.attributes)
                    )
                    if "doow.metric" not in attrs and record.body.WhichOneof("value"):
                        self.body_record(record.body, attrs, license_id, nanos, base, identity)
                        continue
                    self.usage_record(
                        attrs,
                        license_id=license_id,
                        nanos=nanos,
                        base=base,
                        skip=("event.name",),
                        event_id=_event_id(NS_LOG, identity),
                    )

    def body_record(
        self,
        body: AnyValue,
        attrs: Mapping[str, AnyValue],
        license_id: str | None,
        nanos: int,
        base: Mapping[str, AttributeValue],
        identity: str,
    ) -> None:
        """A `doow.usage` log record whose body is a usage record (a JSON line or a map)."""
        file = _string(attrs, "log.file.path") or _string(attrs, "log.file.name")
        position = _int(attrs, "log.file.record_offset")
        if position is None:
            position = _int(attrs, "log.file.record_number")
        where = f"{file}:{position}" if file and position is not None else "record"
        try:
            which = body.WhichOneof("value")
            if which == "string_value":
                data = parse_line(body.string_value)
            elif which == "kvlist_value":
                data = {kv.key: _raw(kv.value) for kv in body.kvlist_value.values}
            else:
                raise BadRecord("not_json", "body", "must be a JSON object or a map")
            stamped = data.get("timestamp") is not None or data.get("occurred_at") is not None
            if file is not None and position is not None and stamped:
                event_id = _event_id(NS_LINE, _enc_str(file), _enc_int(position), _enc_value(body))
            else:
                event_id = _event_id(NS_LINE, identity, _enc_value(body))
        except BadRecord as bad:
            self.bad_record(bad, where)
            return
        self.record(data, license_id, base, nanos, event_id, where)

    def record(
        self,
        data: Mapping[str, Any],
        license_id: str | None,
        attribution: Mapping[str, AttributeValue],
        nanos: int,
        event_id: str,
        where: str,
    ) -> None:
        """A usage record (docs/conversion.md, "Usage records"), or why it is not one."""
        try:
            event = record_event(
                data,
                license_id=license_id or None,
                attribution=attribution,
                occurred_at=_time(nanos) if nanos else None,
                event_id=event_id,
            )
        except BadRecord as bad:
            self.bad_record(bad, where)
            return
        self.result.events.append(event)

    def bad_record(self, bad: BadRecord, where: str) -> None:
        self.result.dropped[bad.code] += 1
        if len(self.result.bad_records) < MAX_BAD_RECORDS:
            self.result.bad_records.append(f"{where}: {bad}")


def _is_overflow(attrs: Mapping[str, AnyValue]) -> bool:
    value = attrs.get("otel.metric.overflow")
    return value is not None and value.WhichOneof("value") == "bool_value" and value.bool_value


def _number_point(point: Any) -> int | float | None:
    which = point.WhichOneof("value")
    if which == "as_int":
        return int(point.as_int)
    if which == "as_double":
        return float(point.as_double)
    return None


def convert_metrics_request(
    request: ExportMetricsServiceRequest, options: ConversionOptions | None = None
) -> Conversion:
    converter = _Converter(options or ConversionOptions())
    converter.metrics(request)
    return converter.result


def convert_traces_request(
    request: ExportTraceServiceRequest, options: ConversionOptions | None = None
) -> Conversion:
    converter = _Converter(options or ConversionOptions())
    converter.traces(request)
    return converter.result


def convert_logs_request(
    request: ExportLogsServiceRequest, options: ConversionOptions | None = None
) -> Conversion:
    converter = _Converter(options or ConversionOptions())
    converter.logs(request)
    return converter.result
