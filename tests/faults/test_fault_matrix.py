"""The fault matrix (tests/faultmatrix.py) run on the in-process paths: every fault, every
path, exact totals by what the local server stored."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from doow_otel import DoowClient, DoowTracker, UsageEvent
from doow_otel.errors import ErrorReport
from doow_otel.otel.metrics import DoowMetricExporter, metric_reader
from doow_otel.otel.traces import DoowSpanExporter
from doow_otel_testing import LocalDoow
from faultmatrix import FAULTS, FIRST, PATH_FAULTS, REJECTED, describe, legend, render
from helpers import wait_for

# Faults whose batch is stored before the (missing or slow) answer: the sender cannot know.
STORED_BEFORE_ANSWER = {"slow answer", "trickle"}
LICENSES = [f"lic_{i}" for i in range(5)]  # five events per flush: enough to split
FLUSH_TIMEOUT = 2.0


@dataclass
class Run:
    """One path under test: record usage, flush it, and what it reported."""

    record: Callable[[int], None]  # quantity per license
    flush: Callable[[], bool]
    close: Callable[[], None]
    reports: list[ErrorReport] = field(default_factory=list)
    metric: str = "api_calls"


def _client(
    doow: LocalDoow, spool: Path, reports: list[ErrorReport], transport: Any = None
) -> DoowClient:
    return DoowClient(
        doow.api_key,
        endpoint=doow.url,
        spool=spool,
        on_error=reports.append,
        timeout=FLUSH_TIMEOUT,
        auth_probe_interval=0.0,  # the test fixes the key at once; production waits 30 s
        transport=transport,
    )


def _tracker(client: DoowClient) -> DoowTracker:
    """A tracker on `client` that exports only when flushed."""
    return DoowTracker(
        client=client, flush_interval=3600, timeout=FLUSH_TIMEOUT, handle_sigterm=False
    )


def _tracker_run(doow: LocalDoow, spool: Path) -> Run:
    reports: list[ErrorReport] = []
    tracker = _tracker(_client(doow, spool, reports))

    def record(quantity: int) -> None:
        for lic in LICENSES:
            tracker.track(metric="api_calls", quantity=quantity, license_id=lic)

    return Run(record, lambda: tracker.flush(FLUSH_TIMEOUT), tracker.shutdown, reports)


def _otel_run(doow: LocalDoow, spool: Path) -> Run:
    reports: list[ErrorReport] = []
    client = _client(doow, spool, reports)
    provider = MeterProvider(
        metric_readers=[metric_reader(DoowMetricExporter(client), interval=3600)]
    )
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(DoowSpanExporter(client)))
    counter = provider.get_meter("app").create_counter("api_calls")
    tracer = tracer_provider.get_tracer("app")

    def record(quantity: int) -> None:
        for lic in LICENSES:
            counter.add(quantity, {"doow.license_id": lic})
        # span events go out as each span ends: under a fault, that export is kept too
        with tracer.start_as_current_span("work") as span:
            span.add_event(
                "doow.usage",
                {"doow.metric": "pages", "doow.quantity": quantity, "doow.license_id": "lic_0"},
            )

    def flush() -> bool:
        ok = provider.force_flush(int(FLUSH_TIMEOUT * 1000))
        return bool(tracer_provider.force_flush(int(FLUSH_TIMEOUT * 1000))) and ok

    def close() -> None:
        provider.shutdown()
        tracer_provider.shutdown()

    return Run(record, flush, close, reports)


class _Context:
    aws_request_id = "req-1"
    function_name = "fn"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _lambda_run(doow: LocalDoow, spool: Path) -> Run:
    reports: list[ErrorReport] = []
    tracker = _tracker(_client(doow, spool, reports))
    pending: list[int] = []

    @tracker.with_lambda(flush_timeout=FLUSH_TIMEOUT)
    def handler(event: dict[str, Any], context: Any) -> str:
        for lic in LICENSES:
            for quantity in event["track"]:
                tracker.track(metric="api_calls", quantity=quantity, license_id=lic)
        return "ok"

    def flush() -> bool:
        # one invocation: what was recorded since the last one, flushed at its end
        handler({"track": list(pending)}, _Context())
        pending.clear()
        return not tracker.has_pending

    return Run(pending.append, flush, tracker.shutdown, reports)


def _client_run(doow: LocalDoow, spool: Path, transport: Any = None) -> Run:
    reports: list[ErrorReport] = []
    client = _client(doow, spool, reports, transport)
    pending: list[UsageEvent] = []

    def record(quantity: int) -> None:
        pending.extend(
            UsageEvent(metric="api_calls", quantity=quantity, license_id=lic) for lic in LICENSES
        )

    def flush() -> bool:
        result = client.send(pending, timeout=FLUSH_TIMEOUT)
        pending.clear()
        return result.ok

    return Run(record, flush, client.close, reports)


def _httpx_run(doow: LocalDoow, spool: Path) -> Run:
    import httpx

    from doow_otel.delivery.transport.httpx import HttpxTransport

    return _client_run(doow, spool, HttpxTransport(httpx.Client()))


PATH_RUNS: dict[str, Callable[[LocalDoow, Path], Run]] = {
    "tracker": _tracker_run,
    "otel": _otel_run,
    "lambda": _lambda_run,
    "client": _client_run,
    "httpx": _httpx_run,
}


@pytest.fixture
def doow() -> Iterator[LocalDoow]:
    with LocalDoow() as server:
        yield server


CASES = [(path, fault) for path in PATH_RUNS for fault in PATH_FAULTS[path]]


@pytest.mark.parametrize(("path", "fault"), CASES, ids=[f"{p}-{f}" for p, f in CASES])
def test_fault(doow: LocalDoow, tmp_path: Path, path: str, fault: str) -> None:
    run = PATH_RUNS[path](doow, tmp_path / "spool")
    pages = path == "otel"  # the OTel path also bills one span event per record
    expected = 0
    try:
        run.record(1)  # a first round with no fault: the connection is warm, as in production
        assert run.flush()
        expected += len(LICENSES) * 1 + (1 if pages else 0)
        assert _total(doow, pages) == expected

        FAULTS[fault].arm(doow)
        run.record(2)
        expected += len(LICENSES) * 2 + (2 if pages else 0)
        first_ok = run.flush()
        stored_first = _total(doow, pages)
        if FIRST[fault] == "delivered":
            assert stored_first == expected, f"{fault}: the retries should ride it out"
            assert first_ok
        else:
            if fault not in STORED_BEFORE_ANSWER:
                assert stored_first < expected
            # reported (a wrapper's flush past its budget reports from the background)
            assert wait_for(lambda: bool(run.reports), seconds=5), f"{fault}: kept, not reported"
        doow.faults.clear()

        def recovered() -> bool:
            run.flush()
            return _total(doow, pages) >= expected

        assert wait_for(recovered, seconds=15)
        assert _total(doow, pages) == expected  # exactly once, whatever was resent
    finally:
        doow.faults.clear()
        run.close()


def test_a_rejected_event_is_reported_never_resent(doow: LocalDoow, tmp_path: Path) -> None:
    reports: list[ErrorReport] = []
    client = _client(doow, tmp_path / "spool", reports)
    events = [UsageEvent(metric="api_calls", quantity=1, license_id=lic) for lic in LICENSES]
    object.__setattr__(events[2], "quantity", 0)  # refused by Doow, as if from an old SDK
    result = client.send(events)
    assert result.delivered == 4 and [r.event_id for r in result.rejected] == [events[2].event_id]
    assert [r.kind for r in reports] == ["partial_accept"]
    client.send([])
    assert doow.total("api_calls") == 4
    assert len(doow.requests(path="/telemetry/events")) == 1  # never resent
    client.close()


def _total(doow: LocalDoow, pages: bool) -> float:
    return doow.total("api_calls") + (doow.total("pages") if pages else 0)


def test_the_published_matrix_is_the_tested_one() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text()
    assert render() in doc, "docs/reliability.md: paste the output of python tests/faultmatrix.py"
    assert legend() in doc and describe() in doc, "docs/reliability.md: the words and faults too"
    assert REJECTED in doc
