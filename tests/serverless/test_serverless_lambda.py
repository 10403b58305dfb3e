"""Lambda: the real `awslambdaric` runtime client against a loopback Runtime API.

Like Lambda, the runtime process is frozen (SIGSTOP) the instant it posts its
response; every check then reads what the local server stored. Whatever the
wrapper did not deliver before the response is not there.
"""

from __future__ import annotations

import json
import signal
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from doow_otel_testing import LocalDoow

pytest.importorskip("awslambdaric")
if not hasattr(signal, "SIGSTOP"):
    pytest.skip("the freeze needs SIGSTOP", allow_module_level=True)

from doow_otel_testing.lambda_runtime import Invocation, LambdaRuntime  # noqa: E402

FUNCTIONS = {
    # track() what the event says, then return or raise
    "app.py": """
        import asyncio
        import os

        from doow_otel import DoowTracker

        meter = DoowTracker(flush_interval=float(os.environ.get("FLUSH_INTERVAL", "3600")))


        def _track(event):
            for item in event.get("track", []):
                meter.track(**item)


        @meter.with_lambda
        def handler(event, context):
            _track(event)
            if event.get("raise"):
                raise RuntimeError(event["raise"])
            return {"ok": True, "request_id": context.aws_request_id}


        @meter.with_lambda
        async def async_handler(event, context):
            await asyncio.sleep(0)
            _track(event)
            return {"loop": id(asyncio.get_running_loop())}
    """,
    # usage recorded at import, during the cold start
    "coldstart.py": """
        from doow_otel import DoowTracker

        meter = DoowTracker(flush_interval=3600)
        meter.track(metric="cold_starts", quantity=1, license_id="lic_init")


        @meter.with_lambda
        def handler(event, context):
            meter.track(metric="api_calls", quantity=1, license_id="lic_init")
            return "ok"
    """,
    # plain OpenTelemetry with the Doow exporters on the global providers, no tracker
    "plain_otel.py": """
        from opentelemetry import _logs, metrics, trace
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from doow_otel.otel.logs import DoowLogExporter
        from doow_otel.otel.traces import DoowSpanExporter
        from doow_otel.otel.metrics import metric_reader
        from doow_otel.serverless import with_lambda

        metrics.set_meter_provider(MeterProvider(metric_readers=[metric_reader(interval=3600)]))
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(
            BatchSpanProcessor(DoowSpanExporter(), schedule_delay_millis=3_600_000)
        )
        trace.set_tracer_provider(tracer_provider)
        logger_provider = LoggerProvider()
        logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(DoowLogExporter(), schedule_delay_millis=3_600_000)
        )
        _logs.set_logger_provider(logger_provider)

        requests = metrics.get_meter("app").create_counter("api_calls")
        tracer = trace.get_tracer("app")
        log = _logs.get_logger("app")


        @with_lambda
        def handler(event, context):
            requests.add(1, {"doow.license_id": "lic_otel"})
            with tracer.start_as_current_span("summarize") as span:
                span.add_event(
                    "doow.usage",
                    {"doow.metric": "words", "doow.quantity": 120, "doow.license_id": "lic_otel"},
                )
            log.emit(
                event_name="doow.usage",
                attributes={"doow.metric": "exports", "doow.quantity": 2,
                            "doow.license_id": "lic_otel"},
            )
            return "ok"
    """,
}


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    root = tmp_path / "task"
    root.mkdir()
    for name, source in FUNCTIONS.items():
        (root / name).write_text(textwrap.dedent(source))
    return root


@pytest.fixture
def start(
    local_doow: LocalDoow, task_root: Path, tmp_path: Path
) -> Iterator[Callable[..., LambdaRuntime]]:
    runtimes: list[LambdaRuntime] = []

    def start(handler: str = "app.handler", **env: str) -> LambdaRuntime:
        runtime = LambdaRuntime(
            handler,
            task_root=task_root,
            env={
                "DOOW_TRACK_API_KEY": local_doow.api_key,
                "DOOW_TRACK_ENDPOINT": local_doow.url,
                "DOOW_SPOOL_DIR": str(tmp_path / "spool"),
                **env,
            },
        )
        runtimes.append(runtime.start())
        return runtime

    yield start
    for runtime in runtimes:
        runtime.close()


def track(metric: str, quantity: float, license_id: str) -> dict[str, Any]:
    return {"metric": metric, "quantity": quantity, "license_id": license_id}


def spooled(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "spool").glob("*.batch"))


def answered(result: Invocation, runtime: LambdaRuntime) -> Invocation:
    """The invocation posted a response in time (the runtime's log otherwise)."""
    assert result.in_time, runtime.log()
    return result


def test_usage_of_an_invocation_arrived_before_the_response(
    start: Callable[..., LambdaRuntime], local_doow: LocalDoow
) -> None:
    runtime = start()
    result = answered(
        runtime.invoke(
            {
                "track": [
                    track("api_calls", 1, "lic_a"),
                    track("api_calls", 1, "lic_a"),
                    track("tokens", 1024, "lic_a"),
                    track("tokens", 6, "lic_b"),
                ]
            }
        ),
        runtime,
    )
    assert result.ok and result.body["request_id"] == result.request_id
    # the runtime is frozen now: only what was sent before the response counts
    assert local_doow.total("api_calls", "lic_a") == 2
    assert local_doow.total("tokens", "lic_a") == 1024
    assert local_doow.total("tokens", "lic_b") == 6
    assert (
        len(local_doow.requests(path="/telemetry/events")) == 1
    )  # the whole invocation in one request


def test_a_handler_that_raises_still_flushed(
    start: Callable[..., LambdaRuntime], local_doow: LocalDoow
) -> None:
    runtime = start()
    result = answered(
        runtime.invoke({"track": [track("api_calls", 3, "lic_a")], "raise": "model timed out"}),
        runtime,
    )
    assert not result.ok
    assert result.body["errorType"] == "RuntimeError"
    assert result.body["errorMessage"] == "model timed out"  # the handler's own exception
    assert local_doow.total("api_calls", "lic_a") == 3


def test_an_invocation_with_nothing_tracked_makes_no_request(
    start: Callable[..., LambdaRuntime], local_doow: LocalDoow
) -> None:
    runtime = start()
    for _ in range(3):
        assert answered(runtime.invoke({}), runtime).ok
    assert local_doow.requests() == []


def test_slow_server_response_in_time_then_usage_delivered_once_by_the_next_invocation(
    start: Callable[..., LambdaRuntime], local_doow: LocalDoow, tmp_path: Path
) -> None:
    runtime = start()
    local_doow.faults.latency(5.0)  # slower than the 1.5 s the invocation has
    first = runtime.invoke({"track": [track("api_calls", 7, "lic_slow")]}, timeout=1.5)
    assert answered(first, runtime).ok  # posted before the deadline, despite the server
    assert local_doow.total("api_calls", "lic_slow") == 0  # nothing got through in time
    assert len(spooled(tmp_path)) == 1  # kept on disk while frozen

    local_doow.faults.clear()
    second = runtime.invoke({"track": [track("api_calls", 1, "lic_next")]}, timeout=3.0)
    assert answered(second, runtime).ok
    assert local_doow.total("api_calls", "lic_slow") == 7  # exactly once
    assert local_doow.total("api_calls", "lic_next") == 1
    assert len(local_doow.events(metric="api_calls", license_id="lic_slow")) == 1
    assert spooled(tmp_path) == []
    # the spooled batch went first, then the invocation's own
    posts = local_doow.requests(path="/telemetry/events")
    assert [p["status"] for p in posts[-2:]] == [202, 202]
    replayed_ids = {e["event_id"] for e in local_doow.events(license_id="lic_slow")}
    own_ids = {e["event_id"] for e in local_doow.events(license_id="lic_next")}
    assert set(posts[-2]["event_ids"]) == replayed_ids
    assert set(posts[-1]["event_ids"]) == own_ids


def test_a_background_export_stuck_on_a_slow_server_does_not_hold_the_handler(
    start: Callable[..., LambdaRuntime], local_doow: LocalDoow
) -> None:
    # The tracker's periodic export runs every 50 ms: with the server slow, one is in
    # flight (holding the exporter) when the invocation ends.
    runtime = start(FLUSH_INTERVAL="0.05")
    assert answered(runtime.invoke({"track": [track("api_calls", 1, "lic_a")]}), runtime).ok
    local_doow.faults.latency(5.0)
    time.sleep(0.2)
    assert answered(
        runtime.invoke({"track": [track("api_calls", 1, "lic_a")]}, timeout=1.5), runtime
    ).ok
    local_doow.faults.clear()
    for _ in range(40):  # later invocations deliver what was left behind
        runtime.invoke({}, timeout=3.0)
        if local_doow.total("api_calls", "lic_a") >= 2:
            break
        time.sleep(0.25)
    assert local_doow.total("api_calls", "lic_a") == 2


def test_100_warm_invocations_share_one_connection(
    start: Callable[..., LambdaRuntime], local_doow: LocalDoow
) -> None:
    runtime = start()
    for number in range(100):
        result = runtime.invoke({"track": [track("api_calls", 1, "lic_warm")]})
        assert result.ok and result.in_time, (number, runtime.log())
    assert local_doow.total("api_calls", "lic_warm") == 100
    posts = local_doow.requests(path="/telemetry/events")
    assert len(posts) == 100  # one request per invocation
    assert len({p["peer_port"] for p in posts}) == 1  # over one reused connection


def test_cold_start_usage_tracked_at_import_goes_with_the_first_invocation(
    start: Callable[..., LambdaRuntime], local_doow: LocalDoow
) -> None:
    runtime = start("coldstart.handler")
    assert runtime.ready.wait(30), runtime.log()  # initialised: waiting for its first event
    assert local_doow.requests() == []  # creating the tracker and track() made no I/O
    assert answered(runtime.invoke({}), runtime).ok
    assert local_doow.total("cold_starts", "lic_init") == 1
    assert local_doow.total("api_calls", "lic_init") == 1
    assert len(local_doow.requests(path="/telemetry/events")) == 1


def test_async_handler_runs_to_completion_on_one_loop_across_invocations(
    start: Callable[..., LambdaRuntime], local_doow: LocalDoow
) -> None:
    runtime = start("app.async_handler")
    first = answered(runtime.invoke({"track": [track("api_calls", 2, "lic_async")]}), runtime)
    second = answered(runtime.invoke({"track": [track("api_calls", 3, "lic_async")]}), runtime)
    assert first.ok and second.ok
    assert first.body["loop"] == second.body["loop"]
    assert local_doow.total("api_calls", "lic_async") == 5
    assert len(local_doow.requests(path="/telemetry/events")) == 2


def test_plain_opentelemetry_without_a_tracker_flushes_the_global_providers(
    start: Callable[..., LambdaRuntime], local_doow: LocalDoow
) -> None:
    runtime = start("plain_otel.handler")
    assert answered(runtime.invoke({}), runtime).ok
    assert local_doow.total("api_calls", "lic_otel") == 1  # a Counter
    assert local_doow.total("words", "lic_otel") == 120  # a span event
    assert local_doow.total("exports", "lic_otel") == 2  # a log record


def test_the_runtime_reports_an_import_error_as_an_init_error(
    start: Callable[..., LambdaRuntime], task_root: Path
) -> None:
    (task_root / "broken.py").write_text("raise ImportError('no such model')\n")
    runtime = start("broken.handler")
    with pytest.raises(Exception, match="no such model"):
        runtime.invoke({})
    assert json.dumps(runtime.init_error)
