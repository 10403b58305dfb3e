"""OTLP and SDK data to Doow events: the rules of docs/conversion.md, written once for Python.

The rules read a neutral view of the data: attributes as plain Python values (`Value`),
metrics as `ResourceView` / `ScopeView` / `MetricView` with their points, spans as
`SpanView`, log records as `LogView`. Two adapters make that view: one from OTLP protobuf
messages (OTLP received over HTTP, the shared vectors) and one from the OpenTelemetry
SDK's objects, read as their OTLP encoding would read, so that the exporters never encode
protobuf. Both give the same events with the same ids (tests/test_conversion_sdk.py holds
the adapters alike; tests/vectors/ and scripts/parity_fuzz.py hold Python and the Go
collector exporter alike).
"""

from __future__ import annotations

import functools
import hashlib
import math
import numbers
import struct
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeAlias, Union

from doow_otel.events import MAX_INT_QUANTITY, AttributeValue, InvalidEvent, UsageEvent
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
    from opentelemetry.sdk.metrics.export import MetricsData

__all__ = [
    "Conversion",
    "ConversionOptions",
    "convert_log_records",
    "convert_logs_request",
    "convert_metrics",
    "convert_metrics_request",
    "convert_spans",
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
MAX_PARTS = 1000
"""An SDK sum past int64 is billed in at most this many parts (docs/conversion.md, Metrics)."""
MAX_BAD_RECORDS = 20
"""Bad usage records described by position per conversion (all are counted)."""

_DELTA = 1
"""AggregationTemporality.DELTA, in OTLP and in the SDK."""

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


# --- the neutral view: attributes as plain values ---

Value: TypeAlias = Union[  # noqa: UP007 - a recursive alias needs the string forward references
    None, bool, int, float, str, bytes, list["Value"], Mapping[str, "Value"]
]
"""An attribute value as OTLP's AnyValue holds it: None (an empty value), bool, int (int64),
float, str, bytes, list (an array) or a mapping (a key-value list)."""
Attributes: TypeAlias = Mapping[str, Value]
_NO_ATTRIBUTES: Attributes = {}


class _Repeated(dict[str, Value]):
    """A key-value list that repeats a key (OTLP's bytes allow it): read like a dict (the
    last one wins), encoded for ids with every pair, as the Go exporter does."""

    def __init__(self, pairs: list[tuple[str, Value]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


def _mapping(pairs: list[tuple[str, Value]]) -> Attributes:
    plain = dict(pairs)
    return plain if len(plain) == len(pairs) else _Repeated(pairs)


# --- canonical encoding for event ids (docs/conversion.md, "Event ids") ---


def _enc_str(text: str) -> str:
    # UTF-8 keeps code point order and ASCII's length: encode only what is not ASCII
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return f"s{size}:{text}"


def _enc_int(number: int) -> str:
    return f"i{number};"


def _enc_value(value: Value) -> str:
    if isinstance(value, str):
        return _enc_str(value)
    if isinstance(value, bool):
        return "b1" if value else "b0"
    if isinstance(value, int):
        return f"i{value};"
    if isinstance(value, float):
        return "d" + struct.pack(">d", value).hex()
    if isinstance(value, list):
        return f"a{len(value)}[" + "".join(map(_enc_value, value)) + "]"
    if isinstance(value, Mapping):
        return _enc_attrs(value)
    if isinstance(value, bytes):
        return f"y{len(value)}:{value.hex()}"
    return "n"


_first = itemgetter(0)


def _enc_attrs(attributes: Attributes) -> str:
    if len(attributes) == 1 and type(attributes) is not _Repeated:  # most points: the license
        ((key, value),) = attributes.items()
        if type(value) is str and key.isascii() and value.isascii():  # _enc_str's, inline
            return f"m1{{s{len(key)}:{key}s{len(value)}:{value}}}"
        return f"m1{{{_enc_str(key)}{_enc_value(value)}}}"
    # str order is code point order, which is UTF-8's byte order
    pairs = attributes.pairs if type(attributes) is _Repeated else attributes.items()
    ordered = sorted(pairs, key=_first)
    body = "".join([_enc_str(key) + _enc_value(value) for key, value in ordered])
    return f"m{len(ordered)}{{{body}}}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def _event_id(namespace: uuid.UUID, *parts: str) -> str:
    """`str(uuid.uuid5(namespace, "".join(parts)))`, at a third of its cost."""
    return _event_id_after(_id_start(namespace), "".join(parts))


def _id_start(namespace: uuid.UUID, *parts: str) -> hashlib._Hash:
    """The hash of the namespace and the first parts of identities, for ids that share
    them (the points of one metric) to hash them once."""
    return hashlib.sha1(namespace.bytes + "".join(parts).encode("utf-8", "surrogatepass"))


def _event_id_after(start: hashlib._Hash, rest: str) -> str:
    """The id of the identity that `start` began and `rest` completes."""
    sha1 = start.copy()
    sha1.update(rest.encode("utf-8", "surrogatepass"))
    h = sha1.hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


# --- the OTLP adapter: protobuf messages to the neutral view ---


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
        return _NO_ATTRIBUTES
    return _mapping([(kv.key, _otlp_value(kv.value)) for kv in attributes])


# --- the SDK adapter: what the OTLP encoder would make of SDK attributes, without it ---

_INT64_MIN = -(2**63)


def _sdk_attributes(attributes: Mapping[Any, Any] | None) -> Attributes:
    """The attributes as OTLP would carry them: what opentelemetry's OTLP encoder leaves
    out (it logs it) is left out here too, so that the ids are the OTLP path's."""
    if not attributes:
        return _NO_ATTRIBUTES
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
            plain.append((_sdk_text(key), _sdk_value(value)))
        except (TypeError, ValueError):  # UnicodeEncodeError and out of range included
            continue
    return _mapping(plain)


def _sdk_text(text: object) -> str:
    if not isinstance(text, str):
        raise TypeError("not a string")
    text.encode()  # a lone surrogate is not UTF-8: the encoder refuses it
    # the string itself, as protobuf stores it: str() of a str-Enum member is "Cls.NAME"
    return str.__str__(text)


def _sdk_value(value: object) -> Value:
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
        return [_sdk_value(v) for v in value]
    if isinstance(value, Mapping):
        return _mapping([(_sdk_text(str(k)), _sdk_value(v)) for k, v in value.items()])
    raise TypeError(f"{type(value).__name__} is not an OTLP value")


# --- attribute access ---


def _plain(value: Value) -> AttributeValue | None:
    """An attribution value: scalars as they are, arrays of scalars joined with ','."""
    if isinstance(value, (str, int)):  # bool included
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        parts = [_plain(v) for v in value]
        if any(p is None for p in parts):
            return None
        return ",".join(_scalar_text(p) for p in parts if p is not None)
    return None


def _scalar_text(value: AttributeValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _string(attrs: Attributes, key: str) -> str | None:
    value = attrs.get(key)
    return value if type(value) is str and value else None


def _license(*sources: Attributes) -> str | None:
    for attrs in sources:
        for key in LICENSE_KEYS:
            found = attrs.get(key)
            if type(found) is str and found:
                return found
    return None


def _number(value: Value) -> int | float | None:
    return value if type(value) is int or type(value) is float else None


def _int(attrs: Attributes, key: str) -> int | None:
    value = attrs.get(key)
    return value if type(value) is int else None


_RECORD_KEYS = {
    "doow.kind": "kind",
    "doow.timestamp": "timestamp",
    "doow.event_id": "event_id",
    "doow.idempotency_key": "idempotency_key",
    "doow.source_system": "source_system",
}
_RECORD_MAPS = (("doow.metadata.", "metadata"), ("doow.metric_tuple_hint.", "metric_tuple_hint"))
_RECORD_BASICS = (("doow.metric", "metric"), ("doow.quantity", "quantity"), ("doow.unit", "unit"))


def _record_fields(attrs: Attributes) -> dict[str, Any] | None:
    """The usage record that `doow.*` attributes make when they name one of its fields
    beyond metric, quantity, unit and license; else None (the plain attribute form)."""
    data: dict[str, Any] = {}
    for key, value in attrs.items():
        if key in _RECORD_KEYS:
            data[_RECORD_KEYS[key]] = value
            continue
        for prefix, name in _RECORD_MAPS:
            if key.startswith(prefix):
                data.setdefault(name, {})[key[len(prefix) :]] = value
    if not data:
        return None
    for key, name in _RECORD_BASICS:
        if key in attrs:
            data[name] = attrs[key]
    return data


@functools.lru_cache(maxsize=256)
def _time(nanos: int) -> datetime:
    """The points of one collection share their time: made once."""
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=nanos // 1_000_000)


# --- spans, as the rules read them ---


class SpanView(NamedTuple):
    trace_hex: str
    span_hex: str
    attributes: Attributes
    events: Sequence[tuple[str, Attributes, int]]
    """Each event: name, attributes, time (unix nanos)."""
    end: int


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


# --- log records, as the rules read them ---


class LogView(NamedTuple):
    event_name: str
    attributes: Attributes
    time: int
    observed_time: int
    trace_hex: str
    span_hex: str
    body: Value
    """None: no body."""


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
        body = _sdk_value(log.body)
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


# --- metrics, as the rules read them ---


class MetricView(NamedTuple):
    name: str
    unit: str
    kind: Literal["sum", "histogram"] | None
    """A histogram is a histogram or an exponential histogram; None: neither a sum (gauge,
    summary), not usage."""
    monotonic: bool
    delta: bool
    points: Iterable[tuple[Attributes, int, int, int | float | None, int]]
    """Each point: attributes, start and time (unix nanos), value (a sum's value, a
    histogram's sum; None when it has none), a histogram's count (0 for a sum)."""


class ScopeView(NamedTuple):
    name: str
    version: str
    metrics: Iterable[MetricView]


class ResourceView(NamedTuple):
    attributes: Attributes
    scopes: Iterable[ScopeView]


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
            metric.name, metric.unit, "sum", data.is_monotonic, _is_delta(data), points
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
        return MetricView(metric.name, metric.unit, "histogram", True, _is_delta(data), points)
    return MetricView(metric.name, metric.unit, None, False, False, ())


def _otlp_number(point: Any) -> int | float | None:
    which = point.WhichOneof("value")  # as_int or as_double
    return getattr(point, which) if which else None


def _is_delta(data: Any) -> bool:
    return bool(data.aggregation_temporality == _DELTA)


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
        return MetricView(metric.name, unit, "sum", data.is_monotonic, _is_delta(data), points)
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
        return MetricView(metric.name, unit, "histogram", True, _is_delta(data), points)
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


class _Converter:
    def __init__(self, options: ConversionOptions) -> None:
        self.options = options
        self.result = Conversion()

    def resource_attribution(self, resource: Attributes) -> dict[str, AttributeValue]:
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
        record: Attributes,
        skip: tuple[str, ...] = (),
    ) -> dict[str, AttributeValue]:
        merged = dict(base)
        for key, value in record.items():
            if not key or key.startswith("doow.") or key == "license_id" or key in skip:
                continue
            plain = _plain(value)
            if plain is not None:
                merged[key] = plain
        if len(merged) < 2:
            return merged
        return {key: merged[key] for key in sorted(merged)}  # code point order: UTF-8's

    def emit(
        self,
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
            if quantity < 0 or (isinstance(quantity, float) and not math.isfinite(quantity)):
                raise _Drop("invalid_quantity")
            if quantity == 0:
                return
            if not nanos:
                raise _Drop("missing_time")
            if not license_id:
                raise _Drop("missing_license")
            self.result.events.append(
                UsageEvent.converted(
                    metric,
                    quantity,
                    license_id,
                    unit if unit and len(unit) <= 64 else None,
                    _time(nanos),
                    attribution,
                    event_id,
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

    def metrics(self, resources: Iterable[ResourceView]) -> None:
        for resource in resources:
            enc_resource = _enc_attrs(resource.attributes)
            base = self.resource_attribution(resource.attributes)
            for scope in resource.scopes:
                scope_is_usage = scope.name == TRACKER_SCOPE
                prefix = enc_resource + _enc_str(scope.name) + _enc_str(scope.version)
                for metric in scope.metrics:
                    listed = scope_is_usage or metric.name in self.options.usage_metrics
                    self.metric(metric, resource.attributes, base, prefix, listed)

    def metric(
        self,
        metric: MetricView,
        resource: Attributes,
        base: Mapping[str, AttributeValue],
        prefix: str,
        listed: bool,
    ) -> None:
        if metric.kind is None or not metric.monotonic:
            return
        name, unit, delta, is_sum = metric.name, metric.unit, metric.delta, metric.kind == "sum"
        identity = _id_start(NS_METRIC, prefix, _enc_str(name))
        other_license = _license(resource) or self.options.default_license_id
        by_count = self.options.histogram_quantity == "count"
        dropped = self.result.dropped
        emit, attribution = self.emit, self.attribution
        last_start: int | None = None
        last_nanos: int | None = None
        enc_times = ""
        licensed = listed  # a usage metric: listed, or a point of it has a license
        overflow = 0
        for attrs, start, nanos, value, count in metric.points:
            own_license = _license(attrs)
            if own_license:
                licensed = True
            if attrs.get("otel.metric.overflow") is True:
                overflow += 1
                continue
            if not own_license and not listed:
                continue  # other telemetry
            if not delta:
                dropped["cumulative_temporality"] += 1
                continue
            quantity: int | float | None
            if is_sum:
                quantity = value
            elif by_count:
                quantity = count
            elif value is not None:
                quantity = value
            else:
                dropped["histogram_without_sum"] += 1
                continue
            if start != last_start or nanos != last_nanos:  # one collection's points share them
                last_start, last_nanos = start, nanos
                enc_times = f"i{start};i{nanos};"  # _enc_int(start) + _enc_int(nanos)
            own_name = attrs.get("doow.metric")  # _string(attrs, ...), inline
            own_unit = attrs.get("doow.unit")
            emit(  # positional: once per point
                own_name if type(own_name) is str and own_name else name,
                quantity,
                own_license or other_license,
                own_unit if type(own_unit) is str and own_unit else unit or None,
                nanos,
                attribution(base, attrs),
                _event_id_after(identity, _enc_attrs(attrs) + enc_times),
            )
        if overflow and licensed:  # the SDK's cardinality limit folded licenses away
            dropped["cardinality_overflow"] += overflow

    # --- traces ---

    def traces(self, resources: Iterable[tuple[Attributes, Iterable[SpanView]]]) -> None:
        for resource, spans in resources:
            base = self.resource_attribution(resource)
            for span in spans:
                self.span(span, resource, base)

    def span(
        self, span: SpanView, resource: Attributes, base: Mapping[str, AttributeValue]
    ) -> None:
        for position, (name, attrs, nanos) in enumerate(span.events):
            if name != USAGE_EVENT_NAME:
                continue
            self.usage_record(
                attrs,
                license_id=_license(attrs, span.attributes, resource)
                or self.options.default_license_id,
                nanos=nanos,
                base=base,
                event_id=_event_id(
                    NS_SPAN_EVENT,
                    _enc_str(span.trace_hex),
                    _enc_str(span.span_hex),
                    _enc_int(position),
                ),
            )
        self.genai(span, resource, base)

    def genai(
        self,
        span: SpanView,
        resource: Attributes,
        base: Mapping[str, AttributeValue],
    ) -> None:
        attrs = span.attributes
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
        attribution = {key: attribution[key] for key in sorted(attribution)}
        for metric, quantity in counts:
            if quantity is None:
                continue
            self.emit(
                metric=metric,
                quantity=quantity,
                license_id=license_id,
                unit="tokens",
                nanos=span.end,
                attribution=attribution,
                event_id=_event_id(
                    NS_GENAI, _enc_str(span.trace_hex), _enc_str(span.span_hex), _enc_str(metric)
                ),
            )

    def usage_record(
        self,
        attrs: Attributes,
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

    def logs(
        self, resources: Iterable[tuple[Attributes, Iterable[tuple[str, Iterable[LogView]]]]]
    ) -> None:
        for resource, scopes in resources:
            enc_resource = _enc_attrs(resource)
            base = self.resource_attribution(resource)
            for scope_name, records in scopes:
                prefix = enc_resource + _enc_str(scope_name)
                for record in records:
                    attrs = record.attributes
                    name = record.event_name or _string(attrs, "event.name")
                    if name != USAGE_EVENT_NAME:
                        continue
                    license_id = _license(attrs, resource) or self.options.default_license_id
                    nanos = record.time or record.observed_time
                    identity = (
                        prefix
                        + _enc_int(record.time)
                        + _enc_int(record.observed_time)
                        + _enc_str(record.trace_hex)
                        + _enc_str(record.span_hex)
                        + _enc_attrs(attrs)
                    )
                    if "doow.metric" not in attrs and record.body is not None:
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
        body: Value,
        attrs: Attributes,
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
            if isinstance(body, str):
                data = parse_line(body)
            elif isinstance(body, Mapping):
                data = dict(body)
            else:
                raise BadRecord("not_json", "body", "must be a JSON object or a map")
            # named by the place in its file: the doowfilelog receiver's doow.file.id and
            # offset, else (a line with a time of its own) its path and position
            file_id = _string(attrs, "doow.file.id")
            offset = _int(attrs, "log.file.record_offset")
            stamped = data.get("timestamp") is not None or data.get("occurred_at") is not None
            if file_id and offset is not None:
                event_id = _event_id(NS_LINE, _enc_str(file_id), _enc_int(offset), _enc_value(body))
            elif file is not None and position is not None and stamped:
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


def convert_metrics_request(
    request: ExportMetricsServiceRequest, options: ConversionOptions | None = None
) -> Conversion:
    """OTLP metrics (the collector route's, the vectors')."""
    converter = _Converter(options or ConversionOptions())
    converter.metrics(_otlp_metrics(request))
    return converter.result


def convert_metrics(data: MetricsData, options: ConversionOptions | None = None) -> Conversion:
    """The SDK's metrics, read as they are: the same events as `convert_metrics_request`
    of their OTLP encoding, without encoding them."""
    converter = _Converter(options or ConversionOptions())
    converter.metrics(_sdk_metrics(data))
    return converter.result


def convert_traces_request(
    request: ExportTraceServiceRequest, options: ConversionOptions | None = None
) -> Conversion:
    converter = _Converter(options or ConversionOptions())
    converter.traces(_otlp_spans(request))
    return converter.result


def convert_spans(spans: Iterable[Any], options: ConversionOptions | None = None) -> Conversion:
    """The SDK's spans (ReadableSpan), read as they are: the same events as
    `convert_traces_request` of their OTLP encoding, without encoding them."""
    converter = _Converter(options or ConversionOptions())
    converter.traces(_sdk_spans(spans))
    return converter.result


def convert_logs_request(
    request: ExportLogsServiceRequest, options: ConversionOptions | None = None
) -> Conversion:
    converter = _Converter(options or ConversionOptions())
    converter.logs(_otlp_logs(request))
    return converter.result


def convert_log_records(
    records: Iterable[Any], options: ConversionOptions | None = None
) -> Conversion:
    """The SDK's log records, read as they are: the same events as `convert_logs_request`
    of their OTLP encoding, without encoding them."""
    converter = _Converter(options or ConversionOptions())
    converter.logs(_sdk_logs(records))
    return converter.result
