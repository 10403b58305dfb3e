"""The exporter's direct path (SDK metrics to events, no protobuf) gives exactly what the
OTLP path gives: the same events, ids, quantities (int or float), attribution and drops,
on data generated through the real SDK."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.resources import Resource

from doow_otel.conversion import Conversion, ConversionOptions, convert_metrics_request
from doow_otel.exporters import DELTA_TEMPORALITY
from doow_otel.sdk_metrics import convert_metrics_data

scalars = st.one_of(
    st.text(max_size=6),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.one_of(scalars, st.lists(st.text(max_size=3), max_size=3).map(tuple))
keys = st.sampled_from(
    ["doow.license_id", "license_id", "doow.metric", "doow.unit", "plan", "région", "doow.x", ""]
)
attribute_sets = st.dictionaries(keys, values, max_size=4)
licensed = attribute_sets.map(lambda a: {**a, "doow.license_id": "lic_1"})


def _wire(conversion: Conversion) -> tuple[list[str], dict[str, int]]:
    events = [json.dumps(e.to_wire(), sort_keys=True) for e in conversion.events]
    return events, dict(conversion.dropped)


def _both(data: MetricsData, options: ConversionOptions) -> tuple[Any, Any]:
    direct = convert_metrics_data(data, options)
    assert direct is not None
    return _wire(direct), _wire(convert_metrics_request(encode_metrics(data), options))


def _record(
    resource: dict[str, Any], scope: str, temporality: str, records: list[tuple[str, Any, dict]]
) -> MetricsData:
    preferred = DELTA_TEMPORALITY if temporality == "delta" else {}
    reader = InMemoryMetricReader(preferred_temporality=preferred)
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create(resource))
    meter = provider.get_meter(scope, "1.2")
    instruments: dict[str, Any] = {}
    for kind, amount, attributes in records:
        if kind not in instruments:
            make = {
                "counter": meter.create_counter,
                "float_counter": meter.create_counter,
                "histogram": meter.create_histogram,
                "updown": meter.create_up_down_counter,
            }[kind]
            instruments[kind] = make(f"m_{kind}", unit="tok" if kind == "counter" else "")
        instruments[kind].add(amount, attributes) if kind != "histogram" else instruments[
            kind
        ].record(amount, attributes)
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return data


records = st.lists(
    st.one_of(
        st.tuples(st.just("counter"), st.integers(0, 10**6), st.one_of(licensed, attribute_sets)),
        st.tuples(st.just("float_counter"), st.floats(0, 1e6), licensed),
        st.tuples(st.just("histogram"), st.integers(0, 1000), st.one_of(licensed, attribute_sets)),
        st.tuples(st.just("updown"), st.integers(-5, 5), licensed),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(
    records=records,
    resource=st.dictionaries(
        st.sampled_from(["service.name", "deployment.environment", "doow.license_id", "x"]),
        st.one_of(st.text(max_size=5), st.just("unknown_service:py"), st.integers(0, 9)),
        max_size=3,
    ),
    scope=st.sampled_from(["doow_otel", "app"]),
    temporality=st.sampled_from(["delta", "cumulative"]),
    options=st.builds(
        ConversionOptions,
        default_license_id=st.sampled_from([None, "lic_default"]),
        usage_metrics=st.sampled_from([frozenset(), frozenset({"m_counter", "m_histogram"})]),
        histogram_quantity=st.sampled_from(["sum", "count"]),
    ),
)
def test_the_direct_path_gives_what_the_otlp_path_gives(
    records: list[tuple[str, Any, dict]],
    resource: dict[str, Any],
    scope: str,
    temporality: str,
    options: ConversionOptions,
) -> None:
    data = _record(resource, scope, temporality, records)
    direct, otlp = _both(data, options)
    assert direct == otlp


@pytest.mark.parametrize(
    "attributes",
    [
        {"doow.license_id": "lic_1", "big": 2**64},  # the OTLP encoder drops the key
        {"doow.license_id": "lic_1", "raw": b"\x00"},
        {"doow.license_id": "lic_1", "nan": float("nan")},
        {"doow.license_id": "lic_1", "lone\ud800": "surrogate key"},
        {"doow.license_id": "lic_1", "plan": "lone \ud800"},
    ],
)
def test_what_only_the_otlp_path_handles_goes_there(attributes: dict[str, Any]) -> None:
    data = _record({}, "app", "delta", [("counter", 1, attributes)])
    assert convert_metrics_data(data) is None


def test_a_sum_past_int64_goes_to_the_otlp_path_that_splits_it() -> None:
    data = _record({}, "app", "delta", [("counter", 2**63, {"doow.license_id": "lic_1"})])
    assert convert_metrics_data(data) is None
