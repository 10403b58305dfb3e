"""The OpenTelemetry path end to end: exporters beside existing setups, baggage, GenAI
spans, logs, and `opentelemetry-instrument` with no code change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from doow_otel import DoowClient
from doow_otel.errors import ErrorReport
from doow_otel.otel.baggage import bill_to
from doow_otel.otel.logs import DoowLogExporter, LicenseFromContextLogs
from doow_otel.otel.metrics import DoowMetricExporter, metric_reader
from doow_otel.otel.traces import DoowSpanExporter, LicenseFromContext
from doow_otel.tracker import DoowTracker
from doow_otel_testing import LocalDoow
from otel_versions import emit


class OTLPReceiver:
    """A real OTLP/HTTP receiver that keeps what it gets (the user's existing backend)."""

    def __init__(self) -> None:
        self.spans: list[str] = []
        self.metric_points: dict[str, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/traces":
                    request = ExportTraceServiceRequest.FromString(body)
                    receiver.spans += [
                        s.name
                        for rs in request.resource_spans
                        for ss in rs.scope_spans
                        for s in ss.spans
                    ]
                elif self.path == "/v1/metrics":
                    request = ExportMetricsServiceRequest.FromString(body)
                    for rm in request.resource_metrics:
                        for sm in rm.scope_metrics:
                            for m in sm.metrics:
                                for p in m.sum.data_points:
                                    receiver.metric_points[m.name] = p.as_int or p.as_double
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    r = OTLPReceiver()
    yield r
    r.close()


def doow_client(doow: LocalDoow, tmp_path: Path) -> DoowClient:
    return DoowClient(doow.api_key, endpoint=doow.url, spool=tmp_path / "spool")


def test_adding_doow_leaves_the_existing_setup_complete(
    local_doow: LocalDoow, receiver: OTLPReceiver, tmp_path: Path
) -> None:
    client = doow_client(local_doow, tmp_path)
    # The application's existing setup: traces and metrics to its OTLP backend.
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces"))
    )
    meter_provider = MeterProvider(
        metric_readers=[
            PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=f"{receiver.url}/v1/metrics"),
                export_interval_millis=3_600_000,
            ),
            metric_reader(DoowMetricExporter(client), interval=3600),  # added for Doow
        ]
    )
    # ... and Doow's span processing added beside it, not replacing it.
    tracker = DoowTracker(
        client=client,
        meter_provider=meter_provider,
        tracer_provider=tracer_provider,
        handle_sigterm=False,
    )
    tracer = tracer_provider.get_tracer("app")
    requests = meter_provider.get_meter("app").create_counter("http.requests")
    for i in range(5):
        with tracer.start_as_current_span(f"GET /items/{i}") as span:
            requests.add(1, {"route": "/items"})  # ordinary telemetry: not billed
            tracker.track(metric="api_calls", quantity=1, license_id="lic_a")
            span.add_event(
                "doow.usage",
                {"doow.metric": "pages", "doow.quantity": 2, "doow.license_id": "lic_a"},
            )
    assert tracker.flush()
    assert sorted(receiver.spans) == [f"GET /items/{i}" for i in range(5)]
    assert receiver.metric_points["http.requests"] == 5
    assert receiver.metric_points["api_calls"] == 5  # the backend sees usage counters too
    assert local_doow.total("api_calls", "lic_a") == 5
    assert local_doow.total("pages", "lic_a") == 10
    assert local_doow.total("http.requests") == 0
    tracker.shutdown()  # else its at-exit flush exports to the receiver, closed by then
    tracer_provider.shutdown()
    meter_provider.shutdown()


def test_the_license_in_context_reaches_spans_and_tracked_usage(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    client = doow_client(local_doow, tmp_path)
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(LicenseFromContext())
    tracer_provider.add_span_processor(BatchSpanProcessor(DoowSpanExporter(client)))
    tracker = DoowTracker(client=client, handle_sigterm=False, flush_interval=3600)
    tracer = tracer_provider.get_tracer("app")
    with bill_to("lic_tenant_7"), tracer.start_as_current_span("handle") as span:
        span.add_event("doow.usage", {"doow.metric": "exports", "doow.quantity": 1})
        tracker.track(metric="api_calls", quantity=1)
    tracker.flush()
    tracer_provider.force_flush()
    assert local_doow.total("exports", "lic_tenant_7") == 1
    assert local_doow.total("api_calls", "lic_tenant_7") == 1
    tracer_provider.shutdown()
    tracker.shutdown()


def test_genai_span_bills_tokens(local_doow: LocalDoow, tmp_path: Path) -> None:
    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(DoowSpanExporter(doow_client(local_doow, tmp_path)))
    )
    with provider.get_tracer("llm").start_as_current_span("chat gpt-4o-mini") as span:
        span.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.finish_reasons": ["stop"],
                "gen_ai.usage.input_tokens": 812,
                "gen_ai.usage.output_tokens": 64,
                "doow.license_id": "lic_llm",
            }
        )
    provider.force_flush()
    assert local_doow.total("input_tokens", "lic_llm") == 812
    assert local_doow.total("output_tokens", "lic_llm") == 64
    (event,) = local_doow.events(metric="input_tokens")
    assert event["attribution"] == {
        "model": "gpt-4o-mini",
        "provider": "openai",
        "finish_reason": "stop",
    }
    assert event["unit"] == "tokens"
    provider.shutdown()


def test_usage_log_records(local_doow: LocalDoow, tmp_path: Path) -> None:
    provider = LoggerProvider()
    provider.add_log_record_processor(LicenseFromContextLogs())
    provider.add_log_record_processor(
        BatchLogRecordProcessor(DoowLogExporter(doow_client(local_doow, tmp_path)))
    )
    logger = provider.get_logger("billing")
    with bill_to("lic_logs"):
        emit(logger, {"doow.metric": "exports", "doow.quantity": 3, "format": "csv"}, usage=True)
        emit(logger, {"doow.quantity": 99}, usage=False)
    provider.force_flush()
    assert local_doow.total("exports", "lic_logs") == 3
    (event,) = local_doow.events(metric="exports")
    assert event["attribution"] == {"format": "csv"}
    provider.shutdown()


APP = textwrap.dedent(
    """
    import logging
    from opentelemetry import metrics, trace
    from opentelemetry._logs import get_logger
    from otel_versions import emit

    counter = metrics.get_meter("app").create_counter("api_calls")
    tracer = trace.get_tracer("app")
    for _ in range(7):
        counter.add(1, {"doow.license_id": "lic_auto"})
    with tracer.start_as_current_span("work") as span:
        span.add_event("doow.usage", {"doow.metric": "pages", "doow.quantity": 4,
                                      "doow.license_id": "lic_auto"})
    emit(get_logger("app"), {"doow.metric": "exports", "doow.quantity": 2,
                             "doow.license_id": "lic_auto"}, usage=True)
    print("done")
    """
)


def test_opentelemetry_instrument_with_no_code_change(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {
        **os.environ,
        "OTEL_METRICS_EXPORTER": "doow",
        "OTEL_TRACES_EXPORTER": "doow",
        "OTEL_LOGS_EXPORTER": "doow",
        "OTEL_SERVICE_NAME": "auto-app",
        "DOOW_TRACK_API_KEY": local_doow.api_key,
        "DOOW_TRACK_ENDPOINT": local_doow.url,
        "DOOW_SPOOL_DIR": str(tmp_path / "spool"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),  # otel_versions
    }
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    run = subprocess.run(
        [str(instrument), sys.executable, str(app)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "done" in run.stdout
    assert local_doow.total("api_calls", "lic_auto") == 7
    assert local_doow.total("pages", "lic_auto") == 4
    assert local_doow.total("exports", "lic_auto") == 2
    (event,) = local_doow.events(metric="api_calls")
    assert event["attribution"] == {"service.name": "auto-app"}
    assert json.dumps(event)  # stored as plain JSON values


def test_with_no_spool_usage_kept_in_memory_at_exit_is_one_drop(local_doow: LocalDoow) -> None:
    """Doow failing through the last export, no spool: the usage the exporter kept in
    memory ends with the process. Said once as kept, once as dropped, counted once (it
    was said dropped and kept alike, twice each, and counted twice)."""
    reports: list[ErrorReport] = []
    local_doow.faults.fail_next(1000, 503)
    client = DoowClient(
        local_doow.api_key, endpoint=local_doow.url, spool=None, timeout=1.0,
        on_error=reports.append,
    )  # fmt: skip
    provider = MeterProvider(
        metric_readers=[metric_reader(DoowMetricExporter(client=client), interval=3600)]
    )
    calls = provider.get_meter("app").create_counter("api_calls")
    calls.add(7, {"doow.license_id": "lic_exit"})
    provider.shutdown()
    dropped = [r for r in reports if r.kind == "dropped"]
    assert len(dropped) == 1 and dropped[0].count == 1, reports
    assert client.stats()["dropped"] == 1
    assert all("dropped" not in r.message for r in reports if r.kind != "dropped"), reports
    assert local_doow.total("api_calls") == 0
    client.close()
