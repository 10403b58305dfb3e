"""SDK metric points to Doow events, without the round trip through OTLP protobuf.

The rules are conversion.py's for metrics (docs/conversion.md), read from the SDK's
`MetricsData` as it is: the default route then needs no protobuf encoding (about 10 ms
of a cold start, and the encoding's CPU for every point). Where the OTLP encoder would
do something of its own (a value that is not a string, bool, int64, finite float or a
sequence of them; a point value past int64, which the exporter splits), this returns
None and the exporter takes the OTLP path. tests/test_sdk_metrics.py checks that both
paths give the same events, ids included.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ExponentialHistogram,
    Histogram,
    MetricsData,
    Sum,
)

from doow_otel.conversion import (
    LICENSE_KEYS,
    NS_METRIC,
    TRACKER_SCOPE,
    Conversion,
    ConversionOptions,
    _Converter,
    _enc_int,
    _enc_str,
    _scalar_text,
)
from doow_otel.events import AttributeValue

__all__ = ["convert_metrics_data"]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NS_METRIC = NS_METRIC.bytes


class _NotPlain(Exception):
    """The data holds what the OTLP path treats in its own way."""


def _enc_value(value: object) -> str:
    if isinstance(value, bool):
        return "b1" if value else "b0"
    if isinstance(value, str):
        return _enc_str(value)
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _NotPlain
        return _enc_int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotPlain
        return "d" + struct.pack(">d", value).hex()
    if isinstance(value, (tuple, list)):
        return f"a{len(value)}[" + "".join(_enc_value(v) for v in value) + "]"
    raise _NotPlain


def _enc_attrs(attributes: Mapping[str, object] | None) -> str:
    if not attributes:
        return "m0{}"
    # UTF-8 keeps code point order: sorting the keys sorts their UTF-8 bytes
    body = "".join(_enc_str(key) + _enc_value(attributes[key]) for key in sorted(attributes))
    return f"m{len(attributes)}{{{body}}}"


def _event_id(namespace: bytes, *parts: str) -> str:
    """uuid.uuid5(namespace, "".join(parts)) as conversion._event_id gives it, without
    building UUID objects (a tenth of the CPU per point)."""
    digest = bytearray(hashlib.sha1(namespace + "".join(parts).encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _plain(value: object) -> AttributeValue | None:
    """conversion._plain for the SDK's values (checked plain by _enc_attrs first)."""
    if isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value  # finite: _enc_attrs refused the others
    if isinstance(value, (tuple, list)):
        parts = [_plain(v) for v in value]
        if any(p is None for p in parts):
            return None
        return ",".join(_scalar_text(p) for p in parts if p is not None)
    return None


def _string(attrs: Mapping[str, object], key: str) -> str | None:
    value = attrs.get(key)
    return value if isinstance(value, str) and value else None


def _license(*sources: Mapping[str, object]) -> str | None:
    for attrs in sources:
        for key in LICENSE_KEYS:
            found = _string(attrs, key)
            if found:
                return found
    return None


class _SdkConverter(_Converter):
    def resource_base(self, resource: Mapping[str, object]) -> dict[str, AttributeValue]:
        picked: dict[str, AttributeValue] = {}
        for key in self.options.resource_attributes:
            if key in resource:
                value = _plain(resource[key])
                if key == "service.name" and str(value).startswith("unknown_service"):
                    continue  # the SDKs' placeholder names nothing
                if value is not None:
                    picked[key] = value
        return picked

    def merged(
        self, base: Mapping[str, AttributeValue], record: Mapping[str, object]
    ) -> dict[str, AttributeValue]:
        merged = dict(base)
        for key, value in record.items():
            if not key or key.startswith("doow.") or key == "license_id":
                continue
            plain = _plain(value)
            if plain is not None:
                merged[key] = plain
        return {key: merged[key] for key in sorted(merged, key=str.encode)}

    def metrics_data(self, data: MetricsData) -> None:
        for resource_metrics in data.resource_metrics:
            resource = resource_metrics.resource.attributes or {}
            enc_resource = _enc_attrs(resource)
            base = self.resource_base(resource)
            for scope_metrics in resource_metrics.scope_metrics:
                scope = scope_metrics.scope
                prefix = enc_resource + _enc_str(scope.name) + _enc_str(scope.version or "")
                for metric in scope_metrics.metrics:
                    listed = (
                        scope.name == TRACKER_SCOPE or metric.name in self.options.usage_metrics
                    )
                    self.sdk_metric(metric, resource, base, prefix, listed)

    def sdk_metric(
        self,
        metric: Any,
        resource: Mapping[str, object],
        base: Mapping[str, AttributeValue],
        prefix: str,
        listed: bool,
    ) -> None:
        data = metric.data
        if isinstance(data, Sum):
            if not data.is_monotonic:
                return
        elif not isinstance(data, (Histogram, ExponentialHistogram)):
            return
        points = data.data_points
        usage_metric = listed or any(_license(p.attributes or {}) for p in points)
        for point in points:
            attrs = point.attributes or {}
            enc_point = _enc_attrs(attrs)
            own_license = _license(attrs)
            overflow = attrs.get("otel.metric.overflow")
            if type(overflow) is bool and overflow:
                if usage_metric:  # the SDK's cardinality limit folded licenses away
                    self.result.dropped["cardinality_overflow"] += 1
                continue
            if not own_license and not listed:
                continue  # other telemetry
            if data.aggregation_temporality != AggregationTemporality.DELTA:
                self.result.dropped["cumulative_temporality"] += 1
                continue
            quantity: int | float | None
            if isinstance(data, Sum):
                quantity = point.value
                if isinstance(quantity, int) and not _INT64_MIN <= quantity <= _INT64_MAX:
                    raise _NotPlain  # the exporter splits it into parts on the OTLP path
                quantity = int(quantity) if isinstance(quantity, int) else float(quantity)
            elif self.options.histogram_quantity == "count":
                quantity = int(point.count)
            elif point.sum is None:
                self.result.dropped["histogram_without_sum"] += 1
                continue
            else:
                quantity = float(point.sum)  # OTLP carries a histogram's sum as a double
            self.emit(
                metric=_string(attrs, "doow.metric") or metric.name,
                quantity=quantity,
                license_id=own_license or _license(resource) or self.options.default_license_id,
                unit=_string(attrs, "doow.unit") or metric.unit or None,
                nanos=point.time_unix_nano,
                attribution=self.merged(base, attrs),
                event_id=_event_id(
                    _NS_METRIC,
                    prefix,
                    _enc_str(metric.name),
                    enc_point,
                    _enc_int(point.start_time_unix_nano or 0),
                    _enc_int(point.time_unix_nano),
                ),
            )


def convert_metrics_data(
    data: MetricsData, options: ConversionOptions | None = None
) -> Conversion | None:
    """The events of the SDK's metrics; None when only the OTLP path handles them."""
    converter = _SdkConverter(options or ConversionOptions())
    try:
        converter.metrics_data(data)
    except Exception:  # noqa: BLE001 - _NotPlain, or a string UTF-8 cannot carry: the
        return None  # OTLP path handles it, and reports what it must drop
    return converter.result
