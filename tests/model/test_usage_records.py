"""Usage records (docs/conversion.md, "Usage records"): the seed's whole event (kind,
timestamp, metadata, source_system, metric_tuple_hint, idempotency_key, event_id) reaches
the local server intact through every path: track() in-process, a serverless flush,
`doow-otel send`, plain OpenTelemetry log records, and the collector."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from doow_otel import DoowTracker
from doow_otel.errors import InvalidEvent
from doow_otel.model.records import idempotency_event_id
from doow_otel_testing import LocalDoow
from helpers import child_env, run_app, running_collector, wait_for

HINT = {"app_name": "acme-app", "license_name": "Acme Pro", "metric_name": "tokens"}


def adjustment(key: str) -> dict[str, Any]:
    return {
        "metric": "tokens",
        "quantity": -250,
        "license_id": "lic_rec",
        "kind": "ADJUSTMENT",
        "unit": "tokens",
        "timestamp": "2026-11-24T12:15:00.5+02:00",
        "attribution": {"function": "refunds"},
        "metadata": {"ticket": "SUP-12", "refund": True},
        "source_system": "billing-fixes",
        "metric_tuple_hint": HINT,
        "idempotency_key": key,
    }


def assert_stored_adjustment(doow: LocalDoow, key: str) -> None:
    stored = [e for e in doow.events(metric="tokens") if e["kind"] == "ADJUSTMENT"]
    assert len(stored) == 1, stored
    event = stored[0]
    assert event["event_id"] == idempotency_event_id("lic_rec", "tokens", key)
    assert event["quantity"] == -250
    assert event["occurred_at"] == "2026-11-24T10:15:00.500Z"
    assert event["source"] == "billing-fixes"
    assert event["metadata"] == {"ticket": "SUP-12", "refund": True}
    assert event["attribution"]["function"] == "refunds"
    assert event["unit"] == "tokens"


def test_track_sends_the_whole_event_one_by_one(meter: DoowTracker, local_doow: LocalDoow) -> None:
    meter.track(**adjustment("refund-SUP-12"))
    meter.track(adjustment("refund-SUP-12"))  # the same key again (a retry): one event
    meter.track(metric="tokens", quantity=100, license_id="lic_rec")  # plain: a counter
    meter.track(metric="tokens", quantity=20, license_id="lic_rec")
    meter.track(
        metric="tokens",
        quantity=7,
        license_id="lic_rec",
        timestamp=datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc),
    )
    assert meter.has_pending
    assert meter.flush()
    assert_stored_adjustment(local_doow, "refund-SUP-12")
    assert local_doow.total("tokens", "lic_rec") == 120 + 7 - 250
    usage = sorted(
        (e["quantity"], e["occurred_at"])
        for e in local_doow.events(metric="tokens")
        if e["kind"] == "USAGE"
    )
    assert usage[0] == (7, "2026-11-24T09:00:00.000Z")
    assert [q for q, _ in usage] == [7, 120]  # the counter's two calls: one event


@pytest.mark.slow
def test_the_same_idempotency_key_from_another_process_bills_once(
    meter: DoowTracker, local_doow: LocalDoow, tmp_path: Path
) -> None:
    meter.track(**adjustment("job-42"))
    assert meter.flush()
    run_app(
        f"""
        from doow_otel import DoowTracker
        tracker = DoowTracker({local_doow.api_key!r}, endpoint={local_doow.url!r},
                              spool=None, handle_sigterm=False)
        tracker.track(**{adjustment("job-42")!r})
        assert tracker.flush()
        tracker.shutdown()
        """,
        child_env(),
        tmp_path,
    )
    assert local_doow.stats()["duplicates"] >= 1
    assert_stored_adjustment(local_doow, "job-42")


def test_track_names_the_field_of_a_bad_record(meter: DoowTracker) -> None:
    base = {"metric": "tokens", "quantity": 1, "license_id": "lic_rec"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "REFUND"}, "kind"),
        ({"kind": "USAGE", "quantity": -1, "idempotency_key": "k"}, "quantity"),
        ({"timestamp": "2026-11-24 10:00"}, "timestamp"),
        ({"timestamp": datetime(1999, 1, 1, tzinfo=timezone.utc)}, "timestamp"),
        ({"timestamp": datetime.now(timezone.utc) + timedelta(days=365 * 80)}, "timestamp"),
        ({"timestamp": datetime(2026, 1, 1)}, "timestamp"),
        ({"metadata": {"nested": {"a": 1}}}, "metadata"),
        ({"metadata": "text"}, "metadata"),
        ({"source_system": 3}, "source_system"),
        ({"metric_tuple_hint": {"app": "x"}}, "metric_tuple_hint"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"event_id": "not-a-uuid"}, "event_id"),
        # text no JSON body can carry (a lone surrogate): named, not a UnicodeEncodeError
        ({"idempotency_key": "job-\ud800"}, "idempotency_key"),
        ({"source_system": "erp\udfff"}, "source_system"),
        ({"metric_tuple_hint": {"app_name": "\ud800"}}, "metric_tuple_hint"),
        ({"metadata": {"note": "\ud800"}}, "metadata"),
    ]
    for extra, field in cases:
        with pytest.raises(InvalidEvent) as raised:
            meter.track(**{**base, **extra})
        assert raised.value.field == field, (extra, raised.value)


def test_an_adjustment_through_a_serverless_flush(
    meter: DoowTracker, local_doow: LocalDoow
) -> None:
    @meter.with_lambda
    def handler(event: Any, context: Any) -> str:
        meter.track(**adjustment("lambda-1"))
        meter.track(metric="tokens", quantity=300, license_id="lic_rec")
        return "done"

    assert handler({}, None) == "done"
    assert_stored_adjustment(local_doow, "lambda-1")
    assert local_doow.total("tokens", "lic_rec") == 50


@pytest.mark.slow
def test_doow_otel_send_reads_the_same_records(local_doow: LocalDoow, tmp_path: Path) -> None:
    lines = [json.dumps(adjustment("cli-1")), json.dumps(adjustment("cli-1"))]
    lines.append(json.dumps({"metric": "tokens", "quantity": 5, "license_id": "lic_rec"}))
    result = subprocess.run(
        [sys.executable, "-m", "doow_otel.cli", "send"],
        input="\n".join(lines).encode(),
        env=child_env(
            {
                "DOOW_TRACK_API_KEY": local_doow.api_key,
                "DOOW_TRACK_ENDPOINT": local_doow.url,
                "DOOW_TRACK_SPOOL_DIR": str(tmp_path / "spool"),
            }
        ),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert_stored_adjustment(local_doow, "cli-1")
    assert local_doow.total("tokens", "lic_rec") == 5 - 250


PLAIN_LOGS_APP = """
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry._logs import LogRecord

    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(EXPORTER))
    provider.get_logger("app").emit(
        LogRecord(body=RECORD, attributes={"event.name": "doow.usage"})
    )
    provider.get_logger("app").emit(
        LogRecord(attributes={
            "event.name": "doow.usage", "doow.metric": "credits", "doow.quantity": -3,
            "doow.license_id": "lic_rec", "doow.kind": "ADJUSTMENT",
            "doow.idempotency_key": "attr-1", "doow.timestamp": "2026-11-24T08:00:00Z",
            "doow.metadata.ticket": "SUP-9", "doow.source_system": "crm", "region": "eu",
        })
    )
    provider.shutdown()
"""


def assert_stored_attribute_record(doow: LocalDoow) -> None:
    (event,) = doow.events(metric="credits")
    assert event["event_id"] == idempotency_event_id("lic_rec", "credits", "attr-1")
    assert (event["kind"], event["quantity"], event["source"]) == ("ADJUSTMENT", -3, "crm")
    assert event["occurred_at"] == "2026-11-24T08:00:00.000Z"
    assert event["metadata"] == {"ticket": "SUP-9"}
    assert event["attribution"]["region"] == "eu"


@pytest.mark.slow
def test_plain_otel_log_records_carry_the_record_in_their_body(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    source = PLAIN_LOGS_APP.replace("RECORD", repr(adjustment("log-1"))).replace(
        "EXPORTER", "DoowLogExporter()"
    )
    run_app(
        "from doow_otel.otel.logs import DoowLogExporter\n" + source.replace("\n    ", "\n"),
        {"DOOW_TRACK_API_KEY": local_doow.api_key, "DOOW_TRACK_ENDPOINT": local_doow.url},
        tmp_path,
    )
    assert_stored_adjustment(local_doow, "log-1")
    assert_stored_attribute_record(local_doow)


@pytest.mark.slow
def test_the_collector_converts_usage_records_from_otlp_logs(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    with running_collector(local_doow, tmp_path) as collector:
        source = PLAIN_LOGS_APP.replace("RECORD", repr(adjustment("otlp-1"))).replace(
            "EXPORTER", "OTLPLogExporter()"
        )
        run_app(
            "from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter\n"
            + source.replace("\n    ", "\n"),
            {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http},
            tmp_path,
        )
        assert wait_for(lambda: len(local_doow.events(metric="credits")) == 1, seconds=30)
        assert wait_for(lambda: len(local_doow.events(metric="tokens")) == 1, seconds=30)
    assert_stored_adjustment(local_doow, "otlp-1")
    assert_stored_attribute_record(local_doow)


@pytest.mark.slow
def test_track_routed_through_the_collector_keeps_the_record(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    with running_collector(local_doow, tmp_path) as collector:
        tracker = DoowTracker(
            route="collector", collector_endpoint=collector.otlp_http, handle_sigterm=False
        )
        tracker.track(**adjustment("routed-1"))
        tracker.track(metric="tokens", quantity=1, license_id="lic_rec", event_id=str(uuid.uuid4()))
        assert tracker.flush()
        tracker.shutdown()
        assert wait_for(lambda: len(local_doow.events(metric="tokens")) == 2, seconds=30)
    assert_stored_adjustment(local_doow, "routed-1")
