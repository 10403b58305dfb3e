"""The seams between parts: serverless on a small protocol, deadlines in seconds first."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from doow_otel import ConfigurationError, DoowClient, UsageEvent
from doow_otel.delivery import deadline as _deadline
from doow_otel.serverless import Flushable, flush, invocation, with_lambda
from doow_otel.tracker import DoowTracker
from doow_otel_testing import LocalDoow


def test_serverless_imports_nothing_of_the_tracker() -> None:
    code = (
        "import sys, doow_otel.serverless; "
        "assert 'doow_otel.tracker' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


class Holder:
    """A Flushable that is not a tracker: what the wrappers ask of it, in order."""

    route: str | None = "doow"
    collector_endpoint: str | None = None

    def __init__(self, pending: bool = True) -> None:
        self.pending = pending
        self.calls: list[Any] = []

    def needs_flush(self) -> bool:
        return self.pending

    def flush(self, timeout: float | None = None) -> bool:
        self.calls.append(("flush", timeout))
        return True

    def begin_invocation(self) -> None:
        self.calls.append("begin")

    def end_invocation(self) -> None:
        self.calls.append("end")


def test_the_wrappers_need_only_the_protocol() -> None:
    holder = Holder()
    checked: Flushable = holder  # mypy: a Holder is a Flushable

    @with_lambda(tracker=checked, flush_timeout=1.0)
    def handler(event: Any, context: Any) -> str:
        holder.calls.append("handler")
        return "ok"

    assert handler({}, None) == "ok"
    assert holder.calls[:3] == ["begin", "handler", "end"]
    (name, timeout) = holder.calls[3]
    assert name == "flush" and 0 < timeout <= 1.0
    assert len(holder.calls) == 4


def test_nothing_pending_skips_the_flush() -> None:
    holder = Holder(pending=False)
    with invocation(tracker=holder):
        pass
    assert holder.calls == ["begin", "end"]
    assert flush(tracker=holder) is True


def test_invocation_takes_the_seconds_left(
    meter: DoowTracker, local_doow: LocalDoow, tmp_path: Path
) -> None:
    local_doow.faults.latency(3.0)
    with meter.invocation(timeout=0.6):
        meter.track(metric="api_calls", quantity=4, license_id="lic_late")
    # back before the slow server answered: nothing stored, the batch on disk
    assert local_doow.total("api_calls", "lic_late") == 0
    assert len(list((tmp_path / "spool").glob("*.batch"))) == 1
    local_doow.faults.clear()
    with meter.invocation():
        pass
    assert local_doow.total("api_calls", "lic_late") == 4


@pytest.mark.parametrize(
    ("deadline", "says"),
    [
        (time.time() + 5, "a time.time() timestamp?"),  # wall clock: was silently no bound
        ((time.time() + 5) * 1000, "a time.time() timestamp?"),
        (math.nan, "NaN"),
    ],
)
def test_a_deadline_that_is_not_monotonic_is_refused(deadline: float, says: str) -> None:
    with pytest.raises(ConfigurationError, match="deadline") as raised:
        invocation(deadline=deadline)
    assert says in str(raised.value)
    assert "timeout=" in str(raised.value)


def test_seconds_given_as_a_deadline_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # on a machine up for ten days (time.monotonic() is the uptime on Linux)
    up = 10 * 86400.0
    monkeypatch.setattr(_deadline, "time", SimpleNamespace(monotonic=lambda: up))
    with pytest.raises(ConfigurationError, match="a number of seconds"):
        invocation(deadline=5.0)
    assert invocation(deadline=up - 60).deadline == up - 60  # a minute late: a deadline
    assert invocation(deadline=up + 30 * 86400).deadline == up + 30 * 86400  # a long one


def test_the_client_refuses_a_wall_clock_deadline_before_sending(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    client = DoowClient(local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "spool")
    event = UsageEvent(metric="api_calls", quantity=1, license_id="lic_a")
    with client:
        with pytest.raises(ConfigurationError, match="deadline"):
            client.send([event], deadline=time.time() + 5)
        with pytest.raises(ConfigurationError, match="deadline"):
            client.flush_spool(deadline=time.time() + 5)
        assert local_doow.requests() == []
        assert client.send([event], timeout=5.0).delivered == 1  # seconds: the primary form
        assert client.send([], deadline=time.monotonic() + 5.0).ok
        assert client.send([], deadline=math.inf).ok  # no bound, said explicitly
    assert local_doow.total("api_calls", "lic_a") == 1


def test_the_public_api_lists_what_users_need_and_loads_it_lazily() -> None:
    code = """
import sys
import doow_otel

public = set(doow_otel.__all__)
for name in ("DoowTracker", "configure", "with_lambda", "with_vercel", "with_azure_function",
             "invocation", "LicenseFromContext", "DoowMetricReader", "metric_reader",
             "SendResult", "Rejection", "ErrorReport", "ConfigurationError", "InvalidEvent"):
    assert name in public, name
assert not [n for n in public if n.startswith("_") and n != "__version__"], public
heavy = ("opentelemetry", "httpx", "doow_otel.serverless", "doow_otel.tracker")
loaded = [m for m in sys.modules if m.startswith(heavy)]
assert loaded == [], loaded
for name in sorted(public):
    getattr(doow_otel, name)
assert doow_otel.with_lambda is __import__("doow_otel.serverless").serverless.with_lambda
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_usage_logged_on_the_apps_logger_provider_is_flushed_by_the_wrapper(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """Log records the app emits itself are not counted by the tracker: with the app's
    LoggerProvider given, an invocation always flushes (as with a TracerProvider)."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    from doow_otel import DoowLogExporter
    from otel_versions import emit

    client = DoowClient(local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "spool")
    logs = LoggerProvider()
    logs.add_log_record_processor(
        BatchLogRecordProcessor(DoowLogExporter(client), schedule_delay_millis=3_600_000)
    )
    meter = DoowTracker(
        client=client, logger_provider=logs, flush_interval=3600, handle_sigterm=False
    )
    try:
        with meter.invocation(flush_timeout=5.0):
            attributes = {"doow.metric": "pages", "doow.quantity": 2, "doow.license_id": "lic_l"}
            emit(logs.get_logger("app"), attributes, usage=True)
        assert local_doow.total("pages", "lic_l") == 2
    finally:
        meter.shutdown()
        logs.shutdown()
        client.close()


def test_the_default_route_runs_without_protobuf(tmp_path: Path) -> None:
    """Metrics, span events and usage records reach Doow with protobuf and OTLP's
    packages unimportable: the runtime wheel does not depend on them (only the testing
    package does)."""
    with LocalDoow() as doow:
        code = f"""
import sys
for name in ("google.protobuf", "opentelemetry.proto", "opentelemetry.exporter"):
    sys.modules[name] = None  # importing it now raises ImportError
from opentelemetry.sdk.trace import TracerProvider
from doow_otel import DoowTracker
tracing = TracerProvider()
meter = DoowTracker({doow.api_key!r}, endpoint={doow.url!r}, spool={str(tmp_path)!r},
                    tracer_provider=tracing, handle_sigterm=False)
meter.track(metric="no_protobuf", quantity=2, license_id="lic_1")
meter.track(metric="no_protobuf", quantity=1, license_id="lic_1", idempotency_key="job-1")
with tracing.get_tracer("app").start_as_current_span("work") as span:
    span.add_event("doow.usage", {{"doow.metric": "no_protobuf", "doow.quantity": 4,
                                   "doow.license_id": "lic_1"}})
assert meter.flush()
meter.shutdown()
"""
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        assert doow.total("no_protobuf", "lic_1") == 7
