"""The conversion rules of docs/conversion.md, written once for Python: the neutral view
(`views`) of metrics, spans and log records in, Doow events out.

Which data points, span events and log records are usage, where the license and the
attribution come from, the GenAI mapping, units, and the deterministic event ids.
tests/vectors/ and scripts/parity_fuzz.py hold these rules and the Go collector
exporter's alike.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from doow_otel.errors import BadRecord, InvalidEvent, counted
from doow_otel.model.event import UsageEvent
from doow_otel.model.fields import AttributeValue
from doow_otel.model.ids import (
    NS_GENAI,
    NS_LINE,
    NS_LOG,
    NS_METRIC,
    NS_SPAN_EVENT,
    encode_attributes,
    encode_int,
    encode_str,
    encode_value,
    id_after,
    id_start,
    name_id,
)
from doow_otel.model.records import parse_line, record_event
from doow_otel.otel.conversion.views import (
    Attributes,
    LogView,
    MetricView,
    ResourceView,
    SpanView,
    Value,
)

__all__ = [
    "LICENSE_KEYS",
    "MIRROR_SCOPE",
    "TRACKER_SCOPE",
    "USAGE_EVENT_NAME",
    "Conversion",
    "ConversionOptions",
    "Converter",
    "is_delta",
]

DEFAULT_RESOURCE_ATTRIBUTES = (
    "service.name",
    "deployment.environment",
    "faas.name",
    "cloud.region",
)
TRACKER_SCOPE = "doow_otel"
MIRROR_SCOPE = "doow_otel.mirror"
"""DoowTracker's usage mirrored on an application's MeterProvider: never usage (the
tracker delivers it itself; billing it here would bill it twice)."""
USAGE_EVENT_NAME = "doow.usage"
LICENSE_KEYS = ("doow.license_id", "license_id")

MAX_PARTS = 1000
"""An SDK sum past int64 is billed in at most this many parts (docs/conversion.md, Metrics)."""

_DELTA = 1
"""AggregationTemporality.DELTA, in OTLP and in the SDK."""

_FIXES = {
    "cardinality_overflow": "more licenses (attribute sets) in one export than the SDK's "
    "cardinality limit; raise it: doow_otel.metric_reader(cardinality_limit=...) or a View "
    "with aggregation_cardinality_limit",
    "cumulative_temporality": "usage counters must use delta temporality: set "
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta, use DoowMetricExporter's "
    "preferred temporality, or add the collector's cumulativetodelta processor",
    "missing_license": "set doow.license_id on the record or the resource, bill to it with "
    "doow_otel.bill_to(license_id), or configure default_license_id / DOOW_LICENSE_ID",
    "empty_license": "a data point's doow.license_id is empty or not a string; set it to the "
    "customer's license id",
    "misspelled_license": "a data point carries a license under a key Doow does not read; the "
    "key is exactly doow.license_id",
    "unlicensed_point": "a data point with doow.* attributes but no doow.license_id of its own "
    "is not usage (a default license applies only to DoowTracker's and listed metrics); set "
    "doow.license_id on the point",
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


@dataclass
class Conversion:
    """The events, and the usage that could not be converted, counted by reason code."""

    events: list[UsageEvent] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    suspected: Counter[str] = field(default_factory=Counter)
    """Data points that are not usage by the rules (no license of their own, not listed)
    but look like it: a doow.* attribute, an empty or misspelled license key. Counted
    here, apart from `dropped`, so the rules shared with Go stay as they are."""
    bad_records: dict[str, str] = field(default_factory=dict)
    """The first bad usage record (a log body, a line) of each reason code: where and why."""
    lost: dict[tuple[str, str], int | float] = field(default_factory=dict)
    """Usage the SDK folded past its cardinality limit (no license left to bill), per
    (metric, unit), in its own units."""

    @property
    def problems(self) -> list[str]:
        return [self.describe(code, count) for code, count in sorted(self.dropped.items())]

    def describe(self, code: str, count: int) -> str:
        first = self.bad_records.get(code)
        example = f" (the first: {first})" if first else ""
        if code == "cardinality_overflow" and self.lost:
            amounts = ", ".join(
                f"{quantity:g} {metric}" + (f" {unit}" if unit else "")
                for (metric, unit), quantity in sorted(self.lost.items())
            )
            example = f" ({amounts} not billable: the overflow point has no license)"
        return (
            f"{counted(count, 'usage record')} not billed ({code}){example}: "
            f"{_FIXES.get(code, code)} (each reason is reported at most once a minute; "
            "stats() counts them all)"
        )


class _Drop(Exception):
    def __init__(self, code: str) -> None:
        self.code = code


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


def _looks_like_usage(attrs: Attributes) -> str | None:
    """Why a data point with no license that is not listed looks like usage, or None."""
    if any(key in attrs for key in LICENSE_KEYS):
        return "empty_license"  # present, but not a non-empty string
    for key in attrs:
        plain = "".join(c for c in key.lower() if c.isalpha())
        if plain.startswith("doowlicen") or plain in ("licenseid", "licenceid"):
            return "misspelled_license"
    if any(key.startswith("doow.") for key in attrs):
        return "unlicensed_point"
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


def is_delta(data: Any) -> bool:
    """Delta temporality (AggregationTemporality.DELTA is 1 in OTLP and in the SDK)."""
    return bool(data.aggregation_temporality == _DELTA)


class Converter:
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
            enc_resource = encode_attributes(resource.attributes)
            base = self.resource_attribution(resource.attributes)
            for scope in resource.scopes:
                if scope.name == MIRROR_SCOPE:
                    continue
                scope_is_usage = scope.name == TRACKER_SCOPE
                prefix = enc_resource + encode_str(scope.name) + encode_str(scope.version)
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
        identity = id_start(NS_METRIC, prefix, encode_str(name))
        other_license = _license(resource) or self.options.default_license_id
        by_count = self.options.histogram_quantity == "count"
        dropped = self.result.dropped
        emit, attribution = self.emit, self.attribution
        last_start: int | None = None
        last_nanos: int | None = None
        enc_times = ""
        licensed = listed  # a usage metric: listed, or a point of it has a license
        overflow = 0
        overflowed: int | float = 0  # the usage the SDK folded into its overflow point
        for attrs, start, nanos, value, count in metric.points:
            own_license = _license(attrs)
            if own_license:
                licensed = True
            if attrs.get("otel.metric.overflow") is True:
                overflow += 1
                overflowed += (count if by_count and not is_sum else value) or 0
                continue
            if not own_license and not listed:
                suspect = _looks_like_usage(attrs) if attrs else None
                if suspect:
                    self.result.suspected[suspect] += 1
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
                enc_times = f"i{start};i{nanos};"  # encode_int(start) + encode_int(nanos)
            own_name = attrs.get("doow.metric")  # _string(attrs, ...), inline
            own_unit = attrs.get("doow.unit")
            emit(  # positional: once per point
                own_name if type(own_name) is str and own_name else name,
                quantity,
                own_license or other_license,
                own_unit if type(own_unit) is str and own_unit else unit or None,
                nanos,
                attribution(base, attrs),
                id_after(identity, encode_attributes(attrs) + enc_times),
            )
        if overflow and licensed:  # the SDK's cardinality limit folded licenses away
            dropped["cardinality_overflow"] += overflow
            lost = self.result.lost
            lost[name, unit] = lost.get((name, unit), 0) + overflowed

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
                event_id=name_id(
                    NS_SPAN_EVENT,
                    encode_str(span.trace_hex),
                    encode_str(span.span_hex),
                    encode_int(position),
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
                event_id=name_id(
                    NS_GENAI,
                    encode_str(span.trace_hex),
                    encode_str(span.span_hex),
                    encode_str(metric),
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
            enc_resource = encode_attributes(resource)
            base = self.resource_attribution(resource)
            for scope_name, records in scopes:
                prefix = enc_resource + encode_str(scope_name)
                for record in records:
                    attrs = record.attributes
                    name = record.event_name or _string(attrs, "event.name")
                    if name != USAGE_EVENT_NAME:
                        continue
                    license_id = _license(attrs, resource) or self.options.default_license_id
                    nanos = record.time or record.observed_time
                    identity = (
                        prefix
                        + encode_int(record.time)
                        + encode_int(record.observed_time)
                        + encode_str(record.trace_hex)
                        + encode_str(record.span_hex)
                        + encode_attributes(attrs)
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
                        event_id=name_id(NS_LOG, identity),
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
                place = encode_str(file_id) + encode_int(offset)
                event_id = name_id(NS_LINE, place, encode_value(body))
            elif file is not None and position is not None and stamped:
                place = encode_str(file) + encode_int(position)
                event_id = name_id(NS_LINE, place, encode_value(body))
            else:
                event_id = name_id(NS_LINE, identity, encode_value(body))
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
        self.result.bad_records.setdefault(bad.code, f"{where}: {bad}")
