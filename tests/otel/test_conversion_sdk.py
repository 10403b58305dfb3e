"""The conversion's SDK adapter reads the SDK's data as its OTLP encoding reads.

The Doow exporters convert the SDK's metrics, spans and log records without encoding them;
the vectors and the Go exporter pin the rules on OTLP. These tests hold the two adapters
alike: the same events (the same ids, byte for byte on the wire) and the same drops, from
every attribute value type and every kind of metric, as the conversion of the data's OTLP
encoding (`convert_metrics_request(encode_metrics(data))` and alike).
"""

from __future__ import annotations

import dataclasses
import enum
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from doow_otel.delivery.wire import encode_event
from doow_otel.otel.conversion import ConversionOptions, convert_metrics
from doow_otel_testing.otlp_views import convert_metrics_request

DELTA = AggregationTemporality.DELTA
CUMULATIVE = AggregationTemporality.CUMULATIVE
T0, T1 = 1_764_000_000_000_000_000, 1_764_000_060_123_456_789
BIG = 2**63 - 1


class _Str(str):
    pass


class _Level(enum.IntEnum):
    HIGH = 3


class _Float(float):
    pass


class _Plan(str, enum.Enum):  # str() of a member is "_Plan.PRO"; its value is "lic_pro"
    PRO = "lic_pro"


ATTRIBUTE_SETS: list[dict[Any, Any]] = [
    {},
    {"k": "v"},
    {"é": 1, "Z": 2, "a.b": 3, "": "empty key", "ü": "ü", "\U0001f600": "emoji"},
    {"flag": True},
    {"flag": 1},
    {"n": 1.0},
    {"n": -0.0, "m": 5e-324, "big": 1.7976931348623157e308},
    {"n": float("nan"), "i": float("inf")},
    {"n": 2**63},  # past int64: the encoder leaves it out
    {"n": -(2**63), "m": BIG},
    {"a": ("x", "y"), "b": [1, 2.5, True], "c": []},
    {"nested": [[1], ["x"]], "bad": [1, 2**64]},
    {"bytes": b"\x00\xff", "ba": bytearray(b"ab")},
    {"map": {"b": 1, "a": [1, {"c": 2}]}, "keys": {1: "x", "1": "y"}},
    {"s": "a\ud800", "\udc00k": "v", "ok": "still here"},
    {1: "not a string key", "ok": 1},
    {"obj": object(), "dec": Decimal("1.5"), "ok": "x"},
    {"sub": _Str("text"), "level": _Level.HIGH, "f": _Float(2.5)},
    {"plan": _Plan.PRO, _Plan.PRO: "a str-enum key", "tiers": [_Plan.PRO]},
    {"api_key": "hidden", "auth": "Bearer abcdef", "note": "x" * 300, "function": "nightly"},
    {"doow.metric": "Tokens", "doow.unit": "tokens", "doow.part": 1},
    {"doow.metric": 5, "doow.unit": ["u"]},
    {"license_id": "lic_plain", "doow.license_id": ""},
]


NONE_VALUES: list[dict[Any, Any]] = [
    {"none": None},
    {"nested": [["x", None]]},
    {"map": {"a": [1, {"c": None}]}},
]
"""Encoded as an empty value by recent releases of opentelemetry's OTLP encoder (1.34 leaves
the whole attribute out): the SDK adapter follows the recent ones on any release."""


def _encoder_keeps_none() -> bool:
    encoded = encode_metrics(
        _one_scope(_metric("m", Sum([_point(NONE_VALUES[0], 1)], DELTA, True)))
    )
    point = encoded.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0]
    return len(point.attributes) == 1


def _one_scope(*metrics: Metric, scope: str = "app") -> MetricsData:
    scopes = [ScopeMetrics(InstrumentationScope(scope), list(metrics), "")]
    return MetricsData([ResourceMetrics(Resource({}), scopes, "")])


def _point(attributes: dict[Any, Any], value: int | float, start: int = T0) -> NumberDataPoint:
    return NumberDataPoint(
        attributes=attributes, start_time_unix_nano=start, time_unix_nano=T1, value=value
    )


def _histogram_point(attributes: dict[Any, Any], total: Any, count: int) -> HistogramDataPoint:
    return HistogramDataPoint(
        attributes=attributes,
        start_time_unix_nano=T0,
        time_unix_nano=T1,
        count=count,
        sum=total,
        bucket_counts=[count],
        explicit_bounds=[],
        min=0,
        max=total or 0,
    )


def _metric(name: str, data: Any, unit: str | None = "1") -> Metric:
    return Metric(name=name, description="", unit=unit, data=data)  # type: ignore[arg-type]


def _metrics() -> list[Metric]:
    sets = ATTRIBUTE_SETS + (NONE_VALUES if _encoder_keeps_none() else [])
    licensed = [{**attrs, "doow.license_id": f"lic_{i}"} for i, attrs in enumerate(sets)]
    exp_point = ExponentialHistogramDataPoint(
        attributes={"doow.license_id": "lic_exp"},
        start_time_unix_nano=T0,
        time_unix_nano=T1,
        count=3,
        sum=7,
        scale=1,
        zero_count=0,
        positive=Buckets(offset=0, bucket_counts=[1, 2]),
        negative=Buckets(offset=0, bucket_counts=[]),
        flags=0,
        min=1,
        max=4,
    )
    return [
        _metric("api_calls", Sum([_point(a, 1) for a in licensed], DELTA, True)),
        _metric(
            "values",
            Sum(
                [
                    _point({"doow.license_id": "lic_a"}, 2.5),
                    _point({"doow.license_id": "lic_b"}, 0),
                    _point({"doow.license_id": "lic_c"}, -3),
                    _point({"doow.license_id": "lic_d"}, float("nan")),
                    _point({"doow.license_id": "lic_f"}, 4, start=0),
                    _point({"doow.license_id": "l" * 129}, 1),
                    _point({"otel.metric.overflow": True}, 9),
                    _point({"other": "no license"}, 1),
                ],
                DELTA,
                True,
            ),
            unit=None,
        ),
        _metric("Bad Name", Sum([_point({"doow.license_id": "lic_a"}, 1)], DELTA, True)),
        _metric("cumulative", Sum([_point({"doow.license_id": "lic_a"}, 1)], CUMULATIVE, True)),
        _metric("updown", Sum([_point({"doow.license_id": "lic_a"}, 1)], DELTA, False)),
        _metric("gauge", Gauge([_point({"doow.license_id": "lic_a"}, 1)])),
        _metric("listed", Sum([_point({"region": "eu"}, 3)], DELTA, True)),
        _metric("http.requests", Sum([_point({"route": "/"}, 3)], DELTA, True)),
        _metric(
            "latency",
            Histogram(
                [
                    _histogram_point({"doow.license_id": "lic_a"}, 12, 3),  # an int sum
                    _histogram_point({"doow.license_id": "lic_b"}, 2.5, 1),
                    _histogram_point({"doow.license_id": "lic_c"}, None, 2),
                    _histogram_point({"doow.license_id": "lic_d"}, 0, 0),
                ],
                DELTA,
            ),
            unit="ms" * 40,
        ),
        _metric("old_latency", Histogram([_histogram_point({}, 1, 1)], CUMULATIVE), unit="ms"),
        _metric("exp", ExponentialHistogram([exp_point], DELTA)),
    ]


def _data(scope_name: str = "app", version: str | None = "1.0") -> MetricsData:
    resource = Resource(
        {
            "service.name": "unknown_service:python",
            "deployment.environment": "prod",
            "cloud.region": ("eu", "west"),
            "host.name": "h1",
            "faas.name": 3.5,
        }
    )
    scopes = [
        ScopeMetrics(InstrumentationScope(scope_name, version), _metrics(), schema_url=""),
        ScopeMetrics(
            InstrumentationScope("doow_otel", None),
            [_metric("tracked", Sum([_point({"x": "y"}, 2)], DELTA, True))],
            schema_url="",
        ),
    ]
    licensed = Resource({"doow.license_id": "lic_resource", "service.name": "checkout"})
    return MetricsData(
        [
            ResourceMetrics(resource, scopes, schema_url=""),
            ResourceMetrics(
                licensed, [ScopeMetrics(InstrumentationScope("é", "ü"), _metrics(), "")], ""
            ),
        ]
    )


def _outcome(conversion: Any) -> tuple[list[bytes], dict[str, int]]:
    return [encode_event(e) for e in conversion.events], dict(conversion.dropped)


@pytest.mark.parametrize(
    "options",
    [
        ConversionOptions(),
        ConversionOptions(
            default_license_id="lic_default",
            usage_metrics=frozenset({"listed"}),
            histogram_quantity="count",
            resource_attributes=("service.name", "cloud.region", "faas.name", "host.name"),
        ),
    ],
    ids=["defaults", "options"],
)
def test_sdk_data_converts_as_its_otlp_encoding(options: ConversionOptions) -> None:
    data = _data()
    direct = _outcome(convert_metrics(data, options))
    via_otlp = _outcome(convert_metrics_request(encode_metrics(data), options))
    assert direct == via_otlp
    assert len(direct[0]) > 40  # most points are usage: the comparison compares something
    assert {"invalid_quantity", "cumulative_temporality", "cardinality_overflow"} <= set(direct[1])


def test_usage_folded_past_the_sdks_cardinality_limit_is_reported_in_its_units() -> None:
    """The SDK's overflow point has no license left: it cannot be billed, and the report
    says how much usage that is (1,000,000 calls reported as '1 usage records' before)."""
    folded = Sum(
        [_point({"doow.license_id": "lic_a"}, 3), _point({"otel.metric.overflow": True}, 900)],
        DELTA,
        True,
    )
    conversion = convert_metrics(_one_scope(_metric("api_calls", folded, unit="")))
    assert conversion.lost == {("api_calls", ""): 900}
    assert "900 api_calls not billable" in conversion.describe("cardinality_overflow", 1)


def test_an_interval_sum_past_int64_converts_as_its_parts_would() -> None:
    """OTLP cannot carry the sum; the parts (the remainder, then 2**63-1 with doow.part
    1, 2, ...) are what the exporter encoded before it read SDK data directly."""
    total = 2 * BIG + 5
    attrs = {"doow.license_id": "lic_a", "region": "eu"}
    whole = Sum([_point(attrs, total)], DELTA, True)
    parts = Sum(
        [
            _point(attrs, 5),
            _point({**attrs, "doow.part": 1}, BIG),
            _point({**attrs, "doow.part": 2}, BIG),
        ],
        DELTA,
        True,
    )

    direct = convert_metrics(_one_scope(_metric("bytes", whole)))
    via_parts = convert_metrics_request(encode_metrics(_one_scope(_metric("bytes", parts))))
    assert _outcome(direct) == _outcome(via_parts)
    assert sum(e.quantity for e in direct.events) == total
    assert all("doow.part" not in e.attribution for e in direct.events)


def test_scope_names_the_encoder_cannot_carry_still_convert() -> None:
    metric = _metric("api_calls", Sum([_point({"doow.license_id": "lic_a"}, 1)], DELTA, True))
    conversion = convert_metrics(_one_scope(metric, scope="bad\ud800"))
    assert [e.quantity for e in conversion.events] == [1]


def test_event_bytes_are_what_json_dumps_writes() -> None:
    """encode_event uses the C encoder directly; its bytes are json.dumps' (Go compares them)."""
    import json
    from datetime import datetime, timedelta, timezone

    from doow_otel.model.event import UsageEvent

    moment = datetime(2026, 11, 24, 10, 15, 0, 123999, tzinfo=timezone(timedelta(hours=2)))
    events = [
        UsageEvent(metric="api_calls", quantity=1, license_id="lic_1", occurred_at=moment),
        UsageEvent(
            metric="tokens",
            quantity=-2.5e-7,
            license_id='lic_"é\u2028\x01',
            kind="ADJUSTMENT",
            unit="ü",
            occurred_at=moment,
            attribution={"b": True, "f": 1e22, "i": -(2**63), "s": "\U0001f600 <&>", "z": 0.1},
            metadata={"ticket": "SUP-12"},
            source_system="fixes",
            metric_tuple_hint={"app_name": "a", "metric_name": "tokens"},
        ),
        UsageEvent(  # no hint: written field by field, not through the encoder
            metric="tokens",
            quantity=2**63 - 1,
            license_id='lic_"é\u2028\x01\\',
            unit='u"\n',
            occurred_at=moment,
            attribution={"b": False, "t": True, "f": -0.0, "i": 0, 'k\t"é': "\ud7ff\x7f", "e": ""},
            metadata={"ticket": "SUP-12", "n": 1e-300},
            source_system="ü",
        ),
        UsageEvent(metric="m", quantity=0.1, license_id="l", unit="", occurred_at=moment),
        UsageEvent(  # values of subclasses: the encoder writes them
            metric="m",
            quantity=_Float(2.5),
            license_id=_Str("l"),
            occurred_at=moment,
            attribution={"level": _Level.HIGH, "s": _Str("x"), "f": _Float(1.5)},
        ),
        UsageEvent(metric="m", quantity=_Level.HIGH, license_id="l", occurred_at=moment),
        UsageEvent(metric="m", quantity=-1, license_id="l", kind="ADJUSTMENT", occurred_at=moment),
        *convert_metrics(_data()).events,  # read-only empty mappings among them
    ]
    for event in events:
        expected = json.dumps(event.to_wire(), separators=(",", ":"), ensure_ascii=False)
        assert encode_event(event) == expected.encode()


def _spans() -> list[Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    providers = [
        TracerProvider(resource=Resource({"service.name": "checkout", "region": "eu"})),
        TracerProvider(resource=Resource({"doow.license_id": "lic_resource"})),
    ]
    for provider in providers:
        provider.add_span_processor(SimpleSpanProcessor(memory))
    app, other = providers[0].get_tracer("app", "1.0"), providers[0].get_tracer("other")
    licensed = providers[1].get_tracer("app")
    usage = {"doow.metric": "pages", "doow.quantity": 3}
    with app.start_as_current_span("a") as span:
        span.set_attribute("doow.license_id", "lic_span")
        span.add_event("exception", {"x": 1})
        span.add_event("doow.usage", {**usage, "doow.unit": "page", "é": "ü", "n": (1, 2)})
        span.add_event("doow.usage", {**usage, "doow.license_id": "lic_event", "f": 0.5})
        span.add_event("doow.usage", {"doow.quantity": 1})  # no metric
        span.add_event("doow.usage", {"doow.metric": "pages", "doow.quantity": 2**64})
        span.add_event("doow.usage", {**usage, "doow.kind": "ADJUSTMENT", "doow.metadata.t": "x"})
    with other.start_as_current_span("llm") as span:
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": 120,
                "gen_ai.usage.output_tokens": 2.5,
                "gen_ai.request.model": "gpt",
                "gen_ai.system": "openai",
                "gen_ai.response.finish_reasons": ("stop", "length"),
                "doow.license_id": "lic_llm",
            }
        )
    with app.start_as_current_span("b") as span:  # app again, after other: grouped by scope
        span.add_event("doow.usage", usage)
        span.set_attribute("gen_ai.usage.input_tokens", 2**63)  # past int64: left out
    with licensed.start_as_current_span("c") as span:
        span.add_event("doow.usage", usage)
        span.set_attributes({"gen_ai.usage.output_tokens": 7, "gen_ai.provider.name": "x"})
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import SpanContext

    small_ids = ReadableSpan(  # ids with leading zeros keep them in hex
        name="d",
        context=SpanContext(trace_id=5, span_id=6, is_remote=False),
        resource=Resource({}),
        events=[Event("doow.usage", {**usage, "doow.license_id": "lic_d"}, timestamp=T1)],
        end_time=T1,
    )
    return [*memory.get_finished_spans(), small_ids]


@pytest.mark.parametrize(
    "options",
    [
        ConversionOptions(),
        ConversionOptions(default_license_id="lic_d", genai_without_license=True),
    ],
    ids=["defaults", "options"],
)
def test_sdk_spans_convert_as_their_otlp_encoding(options: ConversionOptions) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from doow_otel.otel.conversion import convert_spans
    from doow_otel_testing.otlp_views import convert_traces_request

    spans = _spans()
    direct = _outcome(convert_spans(spans, options))
    via_otlp = _outcome(convert_traces_request(encode_spans(spans), options))
    assert direct == via_otlp
    assert len(direct[0]) >= 7
    assert direct[1]


def test_a_point_without_a_number_costs_only_itself() -> None:
    points = [
        _point({"doow.license_id": "lic_a"}, None),  # type: ignore[arg-type]
        _point({"doow.license_id": "lic_b"}, "3"),  # type: ignore[arg-type]
        _point({"doow.license_id": "lic_c"}, object()),  # type: ignore[arg-type]
        _point({"doow.license_id": "lic_d"}, 2),
    ]
    histogram = Histogram([_histogram_point({"doow.license_id": "lic_e"}, "x", 1)], DELTA)
    conversion = convert_metrics(
        _one_scope(_metric("m", Sum(points, DELTA, True)), _metric("h", histogram))
    )
    assert [(e.license_id, e.quantity) for e in conversion.events] == [("lic_d", 2)]
    assert conversion.dropped == {"missing_quantity": 3, "histogram_without_sum": 1}


def _emit(
    logger: Any,
    *,
    attributes: dict[str, Any],
    body: Any = None,
    trace_ids: tuple[int, int] = (0, 0),
    timestamp: int | None = T1,
    event_name: str | None = None,
) -> None:
    """A log record on any supported SDK: keyword arguments from 1.35, a LogRecord before."""
    from opentelemetry import trace

    trace_id, span_id = trace_ids
    context = None
    if trace_id:
        span_context = trace.SpanContext(trace_id, span_id, False, trace.TraceFlags(1))
        context = trace.set_span_in_context(trace.NonRecordingSpan(span_context))
    try:
        logger.emit(
            timestamp=timestamp,
            observed_timestamp=T1 + 5,
            context=context,
            body=body,
            attributes=attributes,
            event_name=event_name,
        )
    except TypeError:
        from opentelemetry._logs import SeverityNumber
        from opentelemetry.sdk._logs import LogRecord
        from opentelemetry.trace import TraceFlags

        if event_name:
            attributes = {**attributes, "event.name": event_name}
        logger.emit(
            LogRecord(  # type: ignore[call-arg]
                timestamp=timestamp,
                observed_timestamp=T1 + 5,
                trace_id=trace_id,
                span_id=span_id,
                trace_flags=TraceFlags(1),
                severity_number=SeverityNumber.INFO,  # 1.34's encoder needs it
                body=body,
                attributes=attributes,
            )
        )


def _log_providers(*resources: Resource) -> tuple[Any, list[Any]]:
    """Logger providers that keep what they emit in one in-memory exporter."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    try:
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter as Memory
    except ImportError:  # before 1.39
        from opentelemetry.sdk._logs.export import InMemoryLogExporter as Memory

    memory = Memory()
    providers = [LoggerProvider(resource=resource) for resource in resources]
    for provider in providers:
        provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    return memory, providers


def _log_records() -> list[Any]:
    memory, providers = _log_providers(
        Resource({"service.name": "checkout", "region": "eu"}),
        Resource({"doow.license_id": "lic_resource"}),
    )
    app, other = providers[0].get_logger("app", "1.0"), providers[0].get_logger("other")
    licensed = providers[1].get_logger("app")
    usage = {"event.name": "doow.usage"}
    line = (
        '{"metric": "api_calls", "quantity": 2, "license_id": "lic_b", '
        '"timestamp": "2026-11-24T10:15:00Z"}'
    )
    _emit(
        app,
        attributes={**usage, "doow.metric": "pages", "doow.quantity": 3, "é": "ü", "n": (1, 2)},
        trace_ids=(5, 6),
    )
    _emit(app, attributes={**usage, "log.file.path": "/f", "log.file.record_offset": 12}, body=line)
    _emit(other, attributes=usage, body=line)  # no file position: the record's identity
    _emit(app, attributes=usage, body={"metric": "tokens", "quantity": 1.5, "kind": "USAGE"})
    _emit(app, attributes=usage, body="not json")
    _emit(app, attributes=usage, body=b"\x00")
    _emit(app, attributes=usage, body=["a"])
    _emit(app, attributes={**usage, "doow.quantity": 1})  # neither metric nor body
    _emit(app, attributes={"doow.metric": "pages", "doow.quantity": 3})  # not usage
    _emit(app, attributes=usage, body={"metric": "pages", "quantity": 1}, timestamp=None)
    _emit(app, attributes={"doow.metric": "pages", "doow.quantity": 4}, event_name="doow.usage")
    _emit(licensed, attributes={**usage, "doow.metric": "pages", "doow.quantity": 1})
    _emit(
        app,
        attributes={**usage, "doow.metric": "pages", "doow.quantity": 1, "doow.kind": "ADJUSTMENT"},
    )
    return list(memory.get_finished_logs())


def test_sdk_log_records_convert_as_their_otlp_encoding() -> None:
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

    from doow_otel.otel.conversion import convert_log_records
    from doow_otel_testing.otlp_views import convert_logs_request

    records = _log_records()
    options = ConversionOptions(default_license_id="lic_default")
    direct = convert_log_records(records, options)
    via_otlp = convert_logs_request(encode_logs(records), options)
    assert _outcome(direct) == _outcome(via_otlp)
    assert direct.bad_records == via_otlp.bad_records
    assert len(direct.events) >= 7
    assert direct.dropped["not_json"] == 3
    # the report names the first bad record of each reason, and the fix
    described = direct.describe("not_json", 3)
    assert described.startswith("3 usage records not billed (not_json) (the first: ")
    assert "must be a JSON object" in described


def test_a_log_body_otlp_cannot_carry_is_no_body() -> None:
    from doow_otel.otel.conversion import convert_log_records

    memory, (provider,) = _log_providers(Resource({}))
    body = {"metric": "pages", "quantity": 2**64, "license_id": "lic_a"}
    _emit(provider.get_logger("app"), attributes={"event.name": "doow.usage"}, body=body)
    records = list(memory.get_finished_logs())
    conversion = convert_log_records(records)
    assert not conversion.events
    assert dict(conversion.dropped) == {"missing_metric": 1}


def test_sums_too_large_for_parts_or_floats_are_dropped_not_raised() -> None:
    points = [
        _point({"doow.license_id": "lic_a"}, 1001 * BIG),  # more than 1,000 parts
        _point({"doow.license_id": "lic_b"}, -(2**1100)),  # no float holds it
        _point({"doow.license_id": "lic_c"}, 1000 * BIG),  # exactly 1,000 parts
    ]
    conversion = convert_metrics(_one_scope(_metric("m", Sum(points, DELTA, True))))
    assert conversion.dropped == {"invalid_quantity": 2}
    assert len(conversion.events) == 1000
    assert sum(e.quantity for e in conversion.events) == 1000 * BIG


def test_converted_events_equal_the_constructors() -> None:
    """The conversion builds events without the constructor's checks of what its rules
    already decide (UsageEvent.converted); every event is what the constructor makes."""
    from doow_otel.otel.conversion import convert_log_records, convert_spans

    conversions = [
        convert_metrics(_data(), options)
        for options in (
            ConversionOptions(),
            ConversionOptions(default_license_id="lic_d", histogram_quantity="count"),
        )
    ]
    conversions.append(convert_spans(_spans(), ConversionOptions(genai_without_license=True)))
    conversions.append(convert_log_records(_log_records()))
    events = [event for conversion in conversions for event in conversion.events]
    assert len(events) > 60
    for event in events:
        built = dataclasses.replace(event)  # through __init__ and its checks
        assert built == event
        assert encode_event(built) == encode_event(event)
        assert isinstance(event.attribution, dict) and isinstance(event.metadata, dict)


_BAD_FIELDS: list[dict[str, Any]] = [
    {"metric": "bad name"},
    {"metric": ""},
    {"metric": "m" * 129},
    {"quantity": 2**63},
    {"quantity": float("nan")},
    {"quantity": -1},
    {"quantity": True},
    {"license_id": " "},
    {"license_id": "l" * 129},
    {"attribution": {"": 1}},
    {"attribution": {"k": float("inf")}},
    {"attribution": {"k": 2**64}},
    {"attribution": {"k": [1]}},
    {"metric": "bad name", "license_id": " ", "quantity": 2**63},  # the first one named
    {"license_id": " ", "attribution": {"": 1}},
]


@pytest.mark.parametrize("bad", _BAD_FIELDS, ids=[str(sorted(b)) for b in _BAD_FIELDS])
def test_converted_checks_what_the_constructor_checks(bad: dict[str, Any]) -> None:
    from datetime import datetime, timezone

    from doow_otel.errors import InvalidEvent
    from doow_otel.model.event import UsageEvent

    fields: dict[str, Any] = {
        "metric": "api_calls",
        "quantity": 1,
        "license_id": "lic_a",
        "unit": None,
        "occurred_at": datetime(2026, 11, 24, tzinfo=timezone.utc),
        "attribution": {"region": "eu"},
        "event_id": "6f1c2d7a-1b10-5c8e-9f0e-5b1d6f0e3c52",
        **bad,
    }
    with pytest.raises(InvalidEvent) as constructor:
        UsageEvent(**fields)
    with pytest.raises(InvalidEvent) as converted:
        UsageEvent.converted(**fields)
    assert (converted.value.field, str(converted.value)) == (
        constructor.value.field,
        str(constructor.value),
    )


def test_converted_attribution_passes_the_policy() -> None:
    from datetime import datetime, timezone

    from doow_otel.model.event import UsageEvent

    attribution = {"api_key": "x", "note": "Bearer abcdef", "region": "eu"}
    event = UsageEvent.converted(
        "api_calls",
        1,
        "lic_a",
        "ms",
        datetime(2026, 11, 24, tzinfo=timezone.utc),
        attribution,
        "6f1c2d7a-1b10-5c8e-9f0e-5b1d6f0e3c52",
    )
    assert event.attribution == {"region": "eu"}
    assert attribution == {"api_key": "x", "note": "Bearer abcdef", "region": "eu"}  # a copy
    assert dataclasses.replace(event) == event


def test_a_converted_event_without_attribution_shares_one_read_only_empty_mapping() -> None:
    import copy
    import json
    import pickle

    metric = _metric("api_calls", Sum([_point({"doow.license_id": "lic_a"}, 1)], DELTA, True))
    (event,) = convert_metrics(_one_scope(metric)).events
    assert event.attribution == {} and event.metadata == {}
    for mapping in (event.attribution, event.metadata):
        with pytest.raises(TypeError):
            mapping["k"] = "v"  # type: ignore[index]
        with pytest.raises(TypeError):
            mapping.update(k="v")  # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(event)) == event
    assert copy.deepcopy(event) == event and dataclasses.asdict(event)["metadata"] == {}
    assert json.loads(encode_event(event))["metadata"] == {}
    assert repr(event) == repr(dataclasses.replace(event))
