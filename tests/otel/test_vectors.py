"""The shared conversion vectors (tests/vectors/), run against the Python conversion.

The Go collector exporter runs the same files; together they prove one set of rules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from doow_otel_testing import otlp_json
from doow_otel_testing.otlp_views import (
    conversion_options,
    convert_logs_request,
    convert_metrics_request,
    convert_traces_request,
)

VECTORS = sorted((Path(__file__).resolve().parents[1] / "vectors").glob("*.json"))
CONVERT: dict[str, Any] = {
    "metrics": (convert_metrics_request, ExportMetricsServiceRequest),
    "traces": (convert_traces_request, ExportTraceServiceRequest),
    "logs": (convert_logs_request, ExportLogsServiceRequest),
}
PROTO_HAS_EVENT_NAME = "event_name" in LogRecord.DESCRIPTOR.fields_by_name


def test_there_are_enough_vectors_for_every_signal() -> None:
    signals = [json.loads(p.read_text())["signal"] for p in VECTORS]
    assert len(VECTORS) >= 25
    assert {"metrics", "traces", "logs"} <= set(signals)


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_vector(path: Path) -> None:
    if '"eventName"' in path.read_text() and not PROTO_HAS_EVENT_NAME:
        pytest.skip("opentelemetry-proto before 1.35 has no LogRecord.event_name")
    vector = json.loads(path.read_text())
    convert, message_type = CONVERT[vector["signal"]]
    request = otlp_json.parse(vector["otlp"], message_type())
    result = convert(request, conversion_options(vector["options"]))
    got = [json.loads(json.dumps(event.to_wire())) for event in result.events]
    assert got == vector["expected"]["events"]
    assert dict(result.dropped) == vector["expected"]["dropped"]


def test_ids_within_a_vector_are_distinct() -> None:
    # Across vectors the same span or point appears on purpose (same identity, same id).
    for path in VECTORS:
        ids = [e["event_id"] for e in json.loads(path.read_text())["expected"]["events"]]
        assert len(set(ids)) == len(ids), path.name
