"""Usage that looks like usage but cannot be billed (issue 23): never dropped in silence.
Each data point, span event or log record is counted per reason, reported once per reason
per interval (on_error and the doow_otel logger) with the fix, and counted in stats();
DOOW_TRACK_DEBUG shows what each export read, sent and what Doow answered."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from doow_otel import DoowClient, ErrorReport
from doow_otel.otel.logs import DoowLogExporter
from doow_otel.otel.metrics import DoowMetricExporter, metric_reader
from doow_otel.otel.traces import DoowSpanExporter
from doow_otel_testing import LocalDoow
from otel_versions import emit

BAD_POINTS = [
    {"doow.license_id": ""},  # empty
    {"doow.licence_id": "lic_a"},  # misspelled
    {"doow.license": "lic_a"},  # misspelled
    {"doow.metric": "pages"},  # a usage attribute, no license
]


def test_unbillable_usage_is_counted_and_reported_once_per_reason(
    local_doow: LocalDoow, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reports: list[ErrorReport] = []
    client = DoowClient(
        local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "s", on_error=reports.append
    )
    meters = MeterProvider(
        metric_readers=[metric_reader(DoowMetricExporter(client), interval=3600)]
    )
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(DoowSpanExporter(client)))
    logs = LoggerProvider()
    logs.add_log_record_processor(SimpleLogRecordProcessor(DoowLogExporter(client)))
    calls = meters.get_meter("app").create_counter("api_calls")
    tracer = tracing.get_tracer("app")
    caplog.set_level(logging.WARNING, logger="doow_otel")
    for _ in range(3):  # three exports of each: one report per reason
        for attributes in BAD_POINTS:
            calls.add(1, attributes)
        calls.add(1, {"http.route": "/"})  # other telemetry: not usage, not counted
        calls.add(2, {"doow.license_id": "lic_ok"})
        meters.force_flush()
        with tracer.start_as_current_span("work") as span:
            span.add_event("doow.usage", {"doow.metric": "pages", "doow.quantity": 1})
            span.add_event(
                "doow.usage",
                {"doow.metric": "pages", "doow.quantity": -1.0, "doow.license_id": "lic_ok"},
            )
        emit(
            logs.get_logger("app"),
            {"doow.metric": "pages", "doow.quantity": 1, "doow.kind": "REFUND",
             "doow.license_id": "lic_ok"},
            usage=True,
        )  # fmt: skip
    stats = client.stats()
    assert stats["not_billed:empty_license"] == 3
    assert stats["not_billed:misspelled_license"] == 6
    assert stats["not_billed:unlicensed_point"] == 3
    assert stats["not_billed:missing_license"] == 3  # the span event
    assert stats["not_billed:invalid_quantity"] == 3
    assert stats["not_billed:invalid_kind"] == 3
    assert stats["not_billed"] == 21
    codes = [
        report.message.split("(")[1].split(")")[0]
        for report in reports
        if "not billed" in report.message
    ]
    assert sorted(codes) == sorted(
        ["empty_license", "misspelled_license", "unlicensed_point", "missing_license",
         "invalid_quantity", "invalid_kind"]
    ), [r.message for r in reports]  # fmt: skip
    by_code = {r.message.split("(")[1].split(")")[0]: r.message for r in reports}
    assert "doow.license_id" in by_code["misspelled_license"]  # the fix
    assert "bill_to" in by_code["missing_license"]
    assert "USAGE or ADJUSTMENT" in by_code["invalid_kind"]
    logged = [r.getMessage() for r in caplog.records if "not billed" in r.getMessage()]
    assert len(logged) == 6
    assert local_doow.total("api_calls", "lic_ok") == 6  # what can be billed is
    for provider in (meters, tracing, logs):
        provider.shutdown()
    client.close()


def test_a_reason_is_reported_again_after_its_interval(tmp_path: Path) -> None:
    reports: list[ErrorReport] = []
    client = DoowClient(disabled=True, spool=None, on_error=reports.append)
    client.report.not_billed_interval = 0.0  # every time: the interval has always passed
    meters = MeterProvider(
        metric_readers=[metric_reader(DoowMetricExporter(client), interval=3600)]
    )
    calls = meters.get_meter("app").create_counter("api_calls")
    for _ in range(2):
        calls.add(1, {"doow.license_id": ""})
        meters.force_flush()
    assert [r.count for r in reports if "empty_license" in r.message] == [1, 1]
    meters.shutdown()


def test_debug_shows_what_was_read_sent_and_answered(
    local_doow: LocalDoow, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = DoowClient(local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "s")
    meters = MeterProvider(
        metric_readers=[metric_reader(DoowMetricExporter(client), interval=3600)]
    )
    calls = meters.get_meter("app").create_counter("api_calls")
    caplog.set_level(logging.DEBUG, logger="doow_otel")
    calls.add(3, {"doow.license_id": "lic_dbg", "plan": "pro", "token": "dk_live_abcdefgh1234"})
    calls.add(1, {"http.route": "/"})
    meters.force_flush()
    text = "\n".join(r.getMessage() for r in caplog.records)
    (event,) = local_doow.events(metric="api_calls")
    assert "2 data points read, 1 usage events" in text
    assert f"event {event['event_id']}: USAGE api_calls=3 license lic_dbg" in text
    assert "'plan': 'pro'" in text
    assert "batch " in text and "answered 202: delivered" in text
    assert "delivered 1, kept in the spool 0" in text
    assert "dk_live_abcdefgh1234" not in text  # stripped by the policy: never logged
    assert local_doow.api_key not in text
    meters.shutdown()
    client.close()
