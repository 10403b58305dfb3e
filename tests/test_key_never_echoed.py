"""The API key never appears in any output (issue 24, point 4, the Python side of the shared
test; the Go exporter runs its own): a server whose answers echo the Authorization header
(503, 400 and 207 bodies), and bad input carrying the key (a kind, a metric, a time, an
event id, an attribution key, a license), fed to every Python path: the tracker, the plain
OpenTelemetry exporters, a serverless wrapper, `doow-otel send` and `doow-otel test-event`.
Every output is searched: log records, stdout and stderr, on_error reports, exception
texts, reprs and spool files."""

from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from doow_otel import DoowClient, DoowTracker, ErrorReport, InvalidEvent, UsageEvent
from doow_otel.otel.logs import DoowLogExporter
from doow_otel.otel.metrics import DoowMetricExporter, metric_reader
from doow_otel.otel.traces import DoowSpanExporter
from otel_versions import emit

KEY = "dk_live_canaryKEY0123456789abcdef"
MODES = ("503", "400", "207", "202")


class EchoingDoow:
    """A real HTTP server that answers like a misbehaving proxy or a buggy Doow: each
    request's Authorization header echoed in the body of a 503, a 400 or a 207 (turn by
    turn, then a 202 that takes the batch)."""

    def __init__(self) -> None:
        self.turn = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                auth = self.headers.get("Authorization", "")
                mode = MODES[server.turn % len(MODES)]
                server.turn += 1
                ids = [e["event_id"] for e in json.loads(body or b"{}").get("events", [])]
                if mode == "503":
                    self.answer(503, f"upstream refused: Authorization: {auth}", "text/plain")
                elif mode == "400":
                    self.answer(400, json.dumps({"error": "bad", "echo": {"authorization": auth}}))
                elif mode == "207":
                    rejections = [{"event_id": i, "reason": f"not for {auth}"} for i in ids]
                    self.answer(
                        207,
                        json.dumps({"accepted": 0, "rejected": len(ids), "rejections": rejections}),
                    )
                else:
                    self.answer(202, json.dumps({"accepted": len(ids)}))

            def answer(self, status: int, text: str, kind: str = "application/json") -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture
def echoing() -> Iterator[EchoingDoow]:
    server = EchoingDoow()
    yield server
    server.http.shutdown()


BAD_FIELDS: list[dict[str, Any]] = [
    {"kind": f"Bearer {KEY}"},
    {"metric": f"Bearer {KEY}"},
    {"metric": KEY + "!"},
    {"timestamp": f"Bearer {KEY}"},
    {"event_id": KEY},
    {"license_id": KEY * 5},  # too long
    {"unit": KEY * 3},
    {"attribution": {f"Bearer {KEY}": float("nan")}},
    {"attribution": {"doow.note": KEY}},
    {"source_system": KEY * 3},
]


def _seed(**fields: Any) -> dict[str, Any]:
    return {"metric": "api_calls", "quantity": 1, "license_id": "lic_a", **fields}


def _client(echoing: EchoingDoow, spool: Path, reports: list[ErrorReport]) -> DoowClient:
    return DoowClient(
        KEY,
        endpoint=echoing.url,
        spool=spool,
        on_error=reports.append,
        timeout=2.0,
        max_retries=1,
        auth_probe_interval=0.0,
    )


def test_no_python_path_echoes_the_key(
    echoing: EchoingDoow,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    spool = tmp_path / "spool"
    reports: list[ErrorReport] = []
    texts: list[str] = []
    client = _client(echoing, spool, reports)

    # the tracker: bad track() calls raise, naming the field; good usage meets the echoes
    tracker = DoowTracker(client=client, flush_interval=3600, handle_sigterm=False)
    texts.append(repr(tracker))
    for fields in BAD_FIELDS:
        with pytest.raises(InvalidEvent) as raised:
            tracker.track(_seed(**fields))
        texts.append(str(raised.value))
    for _ in range(len(MODES)):
        tracker.track(metric="api_calls", quantity=1, license_id="lic_a")
        tracker.track(_seed(idempotency_key=f"k-{echoing.turn}"))
        tracker.flush(3.0)

    # a serverless wrapper: the same, inside an invocation
    @tracker.with_lambda(flush_timeout=3.0)
    def handler(event: dict[str, Any], context: Any) -> str:
        try:
            tracker.track(_seed(**event))
        except InvalidEvent as exc:
            return str(exc)
        return "ok"

    class Context:
        aws_request_id = "req"
        function_name = "fn"

        def get_remaining_time_in_millis(self) -> int:
            return 30_000

    for fields in [*BAD_FIELDS, {}, {}, {}, {}]:
        texts.append(handler(fields, Context()))

    # the plain OpenTelemetry exporters: usage with the key in a bad field is not billed
    meters = MeterProvider(
        metric_readers=[metric_reader(DoowMetricExporter(client), interval=3600)]
    )
    tracing = TracerProvider()
    span_exporter = DoowSpanExporter(client)
    tracing.add_span_processor(SimpleSpanProcessor(span_exporter))
    logs = LoggerProvider()
    logs.add_log_record_processor(SimpleLogRecordProcessor(DoowLogExporter(client)))
    texts += [repr(span_exporter), repr(client)]
    calls = meters.get_meter("app").create_counter("api_calls")
    for _ in range(len(MODES)):
        calls.add(1, {"doow.license_id": "lic_a", "authorization": f"Bearer {KEY}"})
        calls.add(1, {"doow.license_id": KEY * 5})
        meters.force_flush()
        with tracing.get_tracer("app").start_as_current_span("work") as span:
            span.add_event(
                "doow.usage",
                {"doow.metric": "pages", "doow.quantity": 1, "doow.license_id": "lic_a",
                 "doow.kind": f"Bearer {KEY}"},
            )  # fmt: skip
            span.add_event(
                "doow.usage",
                {"doow.metric": "pages", "doow.quantity": 1, "doow.license_id": "lic_a",
                 "doow.timestamp": f"Bearer {KEY}"},
            )  # fmt: skip
        emit(
            logs.get_logger("app"),
            {"doow.metric": f"Bearer {KEY}", "doow.quantity": 1, "doow.license_id": "lic_a",
             "doow.kind": "USAGE"},
            usage=True,
        )  # fmt: skip
    for provider in (meters, tracing, logs):
        provider.shutdown()
    tracker.shutdown()
    for _ in range(len(MODES)):  # what send() returns holds Doow's reasons: redacted too
        texts.append(repr(client.send([UsageEvent(metric="m", quantity=1, license_id="l")])))
    texts.append(json.dumps(client.stats()))
    client.close()

    assert {r.kind for r in reports} >= {"validation", "partial_accept", "dropped"}, reports
    assert any(r.status == 207 for r in reports)
    texts += [str(r) for r in reports]
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.exc_info) for record in caplog.records if record.exc_info]
    texts += list(capfd.readouterr())
    texts += [p.read_text(errors="replace") for p in spool.rglob("*") if p.is_file()]
    assert [t for t in texts if KEY in t] == []
    # and the key did go out: the server's echoes had it to echo
    assert echoing.turn >= len(MODES)


def _cli(args: list[str], echoing: EchoingDoow, tmp_path: Path, stdin: str = "") -> str:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DOOW_")},
        "DOOW_TRACK_API_KEY": KEY,
        "DOOW_TRACK_ENDPOINT": echoing.url,
        "DOOW_SPOOL_DIR": str(tmp_path / "spool"),
        "DOOW_TRACK_DEBUG": "true",
    }
    done = subprocess.run(
        [sys.executable, "-m", "doow_otel.cli", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout + done.stderr


def test_the_command_line_never_echoes_the_key(echoing: EchoingDoow, tmp_path: Path) -> None:
    lines = [json.dumps(_seed(**fields)) for fields in BAD_FIELDS]
    lines += [json.dumps(_seed()) for _ in range(3)]
    lines.append(f'{{"metric": "api_calls", "quantity": 1, "license_id": "{KEY}", ')  # not JSON
    outputs = []
    for _ in range(len(MODES)):  # each of the server's echoing answers in turn
        outputs.append(_cli(["send", "--timeout", "2"], echoing, tmp_path, "\n".join(lines)))
    outputs.append(
        _cli(["test-event", "--metric", "api_calls", "--license-id", "lic_a"], echoing, tmp_path)
    )
    outputs.append(
        _cli(["test-event", "--metric", f"Bearer {KEY}", "--license-id", "l"], echoing, tmp_path)
    )
    spooled = [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    assert "line 1: kind: must be 'USAGE' or 'ADJUSTMENT', got a string of" in outputs[0]
    assert [o for o in outputs + spooled if KEY in o] == []
