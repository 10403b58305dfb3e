"""The fault matrix's "over budget" row (tests/faultmatrix.py): every path records usage
at once against one local server that keeps a small event budget (one key: an
organization's services share Doow's budget), faster than the budget takes; then the
load stops and everything drains. Judged by what the server stored (exact totals per
metric and license), what the spools hold afterwards (nothing waiting, nothing set
aside), what was dropped (nothing: stats, reports, exit status, logs), and what the
server was offered per minute.

Scaled to fit the suite (tests/faultmatrix.py says so in the published table): Doow's
budget is 1,000 events a minute and issue 19 asks for 5 minutes over it; here the budget
is 60 events a minute for 90 s, with the same shape: the paths' usage, together, asks over
ten times what the budget takes. Windows are shorter than their defaults where the point
is the budget, not the window: the tracker's 5 s (60 s by default), the OpenTelemetry
readers' and the collector app's pushes 15 s.

Each path records its own metric, so what the server stored, and which of its requests
it answered 429, is told apart per path (by the event ids it stored).
"""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from doow_otel import DoowClient, DoowTracker, UsageEvent
from doow_otel.errors import ErrorReport
from doow_otel.otel.metrics import DoowMetricExporter, metric_reader
from doow_otel.otel.traces import DoowSpanExporter
from doow_otel_testing import LocalDoow
from faultmatrix import BUDGET_EVENTS_PER_MINUTE, BUDGET_PATHS, BUDGET_SECONDS
from helpers import Collector, child_env, require_otelcol, wait_for

BUDGET = BUDGET_EVENTS_PER_MINUTE  # events a minute for the one key every path uses
OVERLOAD = float(BUDGET_SECONDS)  # seconds of load
DRAIN_WITHIN = 240.0  # seconds after the load stops (the pacers' shares recover slowly)
READER_WINDOW = 15.0  # metric_reader's and zero-code's window, the collector app's push
TRACKER_WINDOW = 5.0  # the tracker's flush_interval
BIN = Path(sys.executable).parent

# Reports over budget must not bring: a loss, a refusal, a wrong setting.
NOT_EXPECTED = {"dropped", "validation", "partial_accept", "auth", "configuration"}

Totals = collections.Counter[tuple[str, str]]  # (metric, license) -> quantity


def lics(n: int) -> list[str]:
    return [f"lic_{i}" for i in range(n)]


@dataclass
class Load:
    """One path under load: what it recorded (only once the call returned), what it
    reported, and how it drains and closes."""

    name: str
    metrics: tuple[str, ...]
    demand: float  # events a minute were each stream's window, export or record one event
    recorded: Totals = field(default_factory=collections.Counter)
    reports: list[ErrorReport] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    drain: Callable[[], object] = lambda: None  # after the load (default: its own clock)
    stopped: Callable[[], object] = lambda: None  # when the load stops
    close: Callable[[], object] = lambda: None
    clients: list[DoowClient] = field(default_factory=list)
    tracker: DoowTracker | None = None
    spool: Path | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def add(self, metric: str, license_id: str, quantity: int = 1) -> None:
        with self._lock:
            self.recorded[metric, license_id] += quantity

    def every(self, seconds: float, step: Callable[[], object]) -> None:
        """Run `step` every `seconds`, on a thread of its own, until the load stops."""

        def run() -> None:
            while not self.stop.is_set():
                step()
                self.stop.wait(seconds)

        self._thread = threading.Thread(target=run, name=f"load-{self.name}", daemon=True)
        self._thread.start()

    def end(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.stopped()


def stored(doow: LocalDoow, load: Load) -> Totals:
    found: Totals = collections.Counter()
    for metric in load.metrics:
        for row in doow.usage(metric=metric):
            found[metric, row["license_id"]] = row["total"]
    return found


def _env(doow: LocalDoow, spool: Path, **extra: str) -> dict[str, str]:
    return child_env(
        {
            "DOOW_TRACK_API_KEY": doow.api_key,
            "DOOW_TRACK_ENDPOINT": doow.url,
            "DOOW_SPOOL_DIR": str(spool),
            **extra,
        }
    )


def _client(doow: LocalDoow, spool: Path, load: Load) -> DoowClient:
    client = DoowClient(
        doow.api_key, endpoint=doow.url, spool=spool, timeout=2.0, on_error=load.reports.append
    )
    load.clients.append(client)
    load.spool = spool
    return client


# --- the paths ---


def tracker_path(doow: LocalDoow, tmp_path: Path) -> Load:
    """10 licenses tracked every 0.2 s; windows of 5 s. After the load: idle (its window
    clock drains)."""
    load = Load("tracker", ("tracker_calls",), demand=10 * 60 / TRACKER_WINDOW)
    client = _client(doow, tmp_path / "tracker", load)
    tracker = load.tracker = DoowTracker(
        client=client, flush_interval=TRACKER_WINDOW, timeout=2.0, handle_sigterm=False
    )

    def step() -> None:
        for lic in lics(10):
            tracker.track(metric="tracker_calls", quantity=1, license_id=lic)
            load.add("tracker_calls", lic)

    load.every(0.2, step)
    load.close = tracker.shutdown
    return load


class _Context:
    aws_request_id = "req"
    function_name = "fn"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def lambda_path(doow: LocalDoow, tmp_path: Path) -> Load:
    """An invocation every 0.5 s billing 5 licenses, flushed at its end (no window clock:
    a frozen function runs none). After the load: invocations with no usage."""
    load = Load("lambda", ("lambda_calls",), demand=5 * 60 / 0.5)
    client = _client(doow, tmp_path / "lambda", load)
    tracker = load.tracker = DoowTracker(
        client=client, flush_interval=3600, timeout=2.0, handle_sigterm=False
    )

    @tracker.with_lambda(flush_timeout=2.0)
    def handler(event: dict[str, Any], context: Any) -> str:
        for lic in event["licenses"]:
            tracker.track(metric="lambda_calls", quantity=1, license_id=lic)
        return "ok"

    def invoke() -> None:
        handler({"licenses": lics(5)}, _Context())
        for lic in lics(5):
            load.add("lambda_calls", lic)

    load.every(0.5, invoke)
    load.drain = lambda: handler({"licenses": []}, _Context())
    load.close = tracker.shutdown
    return load


def otel_path(doow: LocalDoow, tmp_path: Path) -> Load:
    """Counter.add on 2 licenses every 0.2 s through metric_reader (15 s windows), and a
    doow.usage span event every 30 s through a BatchSpanProcessor. After the load: idle
    (the reader's window clock drains)."""
    load = Load("otel", ("otel_calls", "otel_pages"), demand=2 * 60 / READER_WINDOW + 2)
    client = _client(doow, tmp_path / "otel", load)
    provider = MeterProvider(
        metric_readers=[metric_reader(DoowMetricExporter(client), interval=READER_WINDOW)]
    )
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(DoowSpanExporter(client)))
    counter = provider.get_meter("app").create_counter("otel_calls")
    tracer = tracer_provider.get_tracer("app")
    rounds = [0]

    def step() -> None:
        for lic in lics(2):
            counter.add(1, {"doow.license_id": lic})
            load.add("otel_calls", lic)
        rounds[0] += 1
        if rounds[0] % 150 == 0:
            with tracer.start_as_current_span("work") as span:
                span.add_event(
                    "doow.usage",
                    {"doow.metric": "otel_pages", "doow.quantity": 1, "doow.license_id": "lic_0"},
                )
            load.add("otel_pages", "lic_0")

    load.every(0.2, step)
    load.stopped = lambda: tracer_provider.force_flush()  # the last spans' batch

    def close() -> None:
        provider.shutdown()
        tracer_provider.shutdown()
        client.close()

    load.close = close
    return load


def client_path(doow: LocalDoow, tmp_path: Path) -> Load:
    """DoowClient.send of 2 events every 15 s. After the load: the application's next
    sends, with nothing new (flush_spool), every second."""
    load = Load("client", ("client_calls",), demand=2 * 60 / 15)
    client = _client(doow, tmp_path / "client", load)

    def step() -> None:
        events = [UsageEvent(metric="client_calls", quantity=1, license_id=lic) for lic in lics(2)]
        client.send(events, timeout=2.0)
        for lic in lics(2):
            load.add("client_calls", lic)

    load.every(15.0, step)
    load.drain = lambda: client.flush_spool(timeout=2.0)
    load.close = client.close
    return load


def send_path(doow: LocalDoow, tmp_path: Path) -> Load:
    """`doow-otel send` of 2 lines every 15 s, a process each. After the load: a run with
    no input every 10 s (a cron's next run), which replays the spool."""
    load = Load("send", ("send_calls",), demand=2 * 60 / 15)
    load.spool = tmp_path / "send"
    env = _env(doow, load.spool)
    runs: list[tuple[int, str]] = load.notes.setdefault("runs", [])

    def send(lines: str) -> None:
        done = subprocess.run(
            [str(BIN / "doow-otel"), "send", "--timeout", "2"],
            input=lines, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        runs.append((done.returncode, done.stderr))

    def step() -> None:
        send("".join(
            json.dumps({"metric": "send_calls", "quantity": 1, "license_id": lic}) + "\n"
            for lic in lics(2)
        ))  # fmt: skip
        for lic in lics(2):
            load.add("send_calls", lic)

    load.every(15.0, step)
    last = [0.0]

    def drain() -> None:
        if time.monotonic() - last[0] >= 10:
            last[0] = time.monotonic()
            send("")

    load.drain = drain
    return load


ZERO_CODE_APP = """
import json, os, sys, time
from opentelemetry import metrics

calls = metrics.get_meter("app").create_counter("zero_code_calls")
stop = sys.argv[1]
totals = {}
while not os.path.exists(stop):
    for i in range(2):
        calls.add(1, {"doow.license_id": f"lic_{i}"})
        totals[f"lic_{i}"] = totals.get(f"lic_{i}", 0) + 1
    time.sleep(0.2)
with open(stop + ".totals", "w") as out:
    json.dump(totals, out)
time.sleep(3600)  # a server with no requests: only SIGTERM ends it
"""


def zero_code_path(doow: LocalDoow, tmp_path: Path) -> Load:
    """An app under opentelemetry-instrument (OTEL_METRICS_EXPORTER=doow, 15 s windows)
    adding to a counter on 2 licenses every 0.2 s. After the load: the process idles (its
    reader's window clock drains), then SIGTERM."""
    load = Load("zero-code", ("zero_code_calls",), demand=2 * 60 / READER_WINDOW)
    load.spool = tmp_path / "zero-code"
    app = tmp_path / "zero_code_app.py"
    app.write_text(ZERO_CODE_APP)
    stop = tmp_path / "zero_code_stop"
    env = _env(
        doow, load.spool, OTEL_METRICS_EXPORTER="doow", OTEL_TRACES_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none", DOOW_TRACK_FLUSH_INTERVAL=str(int(READER_WINDOW * 1000)),
    )  # fmt: skip
    process = subprocess.Popen(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(app), str(stop)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def stopped() -> None:  # the app stops recording and says what it recorded
        stop.write_text("")
        totals = Path(f"{stop}.totals")
        assert wait_for(totals.exists, 30), "the zero-code app did not stop"
        for lic, quantity in json.loads(totals.read_text()).items():
            load.add("zero_code_calls", lic, quantity)

    def close() -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        load.notes.update(stderr=err, returncode=process.returncode)

    load.stopped, load.close = stopped, close
    return load


def collector_path(doow: LocalDoow, tmp_path: Path) -> Load:
    """otelcol-doow (its test config: 1 s aggregation windows), fed by an app's OTLP/HTTP
    pushes every 15 s of a counter on 2 licenses. After the load: the app's last push; the
    collector's queue drains on its own."""
    require_otelcol()
    load = Load("collector", ("collector_calls",), demand=2 * 60 / READER_WINDOW)
    queue = tmp_path / "queue"
    queue.mkdir()
    collector = Collector(doow, queue, tmp_path / "collector.log").start()
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(
            endpoint=f"{collector.otlp_http}/v1/metrics",
            preferred_temporality={Counter: AggregationTemporality.DELTA},
        ),
        export_interval_millis=READER_WINDOW * 1000,
    )
    provider = MeterProvider(metric_readers=[reader])
    counter = provider.get_meter("app").create_counter("collector_calls")

    def step() -> None:
        for lic in lics(2):
            counter.add(1, {"doow.license_id": lic})
            load.add("collector_calls", lic)

    load.every(0.2, step)
    load.notes["log"] = collector.log
    load.stopped = provider.shutdown
    load.close = collector.stop
    return load


PATHS: dict[str, Callable[[LocalDoow, Path], Load]] = {
    "tracker": tracker_path,
    "otel": otel_path,
    "lambda": lambda_path,
    "client": client_path,
    "send": send_path,
    "zero-code": zero_code_path,
    "collector": collector_path,
}


# --- what the server saw ---


def statuses_per_path(doow: LocalDoow, loads: list[Load]) -> dict[str, Totals]:
    """Per path, how many of the requests carrying its events got each status."""
    owner: dict[str, str] = {}
    for load in loads:
        for metric in load.metrics:
            for event in doow.events(metric=metric, limit=1000):
                owner[event["event_id"]] = load.name
    seen: dict[str, Totals] = {load.name: collections.Counter() for load in loads}
    for request in doow.requests(path="/telemetry/events"):
        for name in {owner[i] for i in request["event_ids"] or [] if i in owner}:
            seen[name][request["status"]] += 1
    return seen


# --- the test ---


def spool_listing(doow: LocalDoow, spool: Path) -> str:
    """`doow-otel spool` for a path's spool, with the path's key and endpoint."""
    done = subprocess.run(
        [str(BIN / "doow-otel"), "spool", "--dir", str(spool)],
        env=_env(doow, spool), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def nothing_lost(doow: LocalDoow, load: Load) -> None:
    """Nothing waits in the path's spool or was set aside; nothing dropped or refused,
    by its own account (stats, reports, exit status, log)."""
    if load.spool is not None:
        listing = spool_listing(doow, load.spool)
        assert "nothing waits" in listing and "set aside" not in listing, (load.name, listing)
    for client in load.clients:
        stats = client.stats()
        lost = {k: stats[k] for k in ("dropped", "set_aside", "dropped_spool_full", "rejected")}
        assert not any(lost.values()), (load.name, lost)
    if load.tracker is not None:
        assert load.tracker.stats()["dropped"] == 0  # the client's and the windows'
    wrong = [r for r in load.reports if r.kind in NOT_EXPECTED]
    assert not wrong, (load.name, wrong)
    for code, err in load.notes.get("runs", []):  # doow-otel send: 0 sent, 1 kept for later
        assert code in (0, 1) and "rejected 0, " in err and "dropped 0)" in err, err
    if "stderr" in load.notes:  # the zero-code app's reports, as its log says them
        err = load.notes["stderr"]
        assert not [kind for kind in NOT_EXPECTED if f"doow {kind}:" in err], err[-3000:]
    if "log" in load.notes:
        log = Path(load.notes["log"]).read_text()
        assert "Dropping data" not in log and "Doow refused" not in log, log[-3000:]


@pytest.mark.timeout(OVERLOAD + DRAIN_WITHIN + 120)
def test_over_budget_every_path_paces_and_drains_exactly(tmp_path: Path) -> None:
    assert list(PATHS) == BUDGET_PATHS  # the row docs/reliability.md publishes
    with LocalDoow(events_per_minute=BUDGET) as doow:
        loads: list[Load] = []
        try:
            for name, build in PATHS.items():
                (tmp_path / name).mkdir()
                loads.append(build(doow, tmp_path))
            # what the paths ask of the budget, together: over ten times what it takes
            assert sum(load.demand for load in loads) > 10 * BUDGET
            time.sleep(OVERLOAD)
            for load in loads:
                load.end()
            stopped_at = time.monotonic()
            at_stop = {load.name: stored(doow, load) for load in loads}
            drained: dict[str, float] = {}
            while len(drained) < len(loads) and time.monotonic() < stopped_at + DRAIN_WITHIN:
                for load in loads:
                    if load.name in drained:
                        continue
                    if stored(doow, load) == load.recorded:
                        drained[load.name] = time.monotonic() - stopped_at
                    else:
                        load.drain()
                time.sleep(1.0)
            time.sleep(3.0)  # anything sent twice would show by now
            final = {load.name: stored(doow, load) for load in loads}
            statuses = statuses_per_path(doow, loads)
            minutes = doow.minutes()
            summary = {
                load.name: {
                    "demand": load.demand,
                    "recorded": sum(load.recorded.values()),
                    "at stop": sum(at_stop[load.name].values()),
                    "final": sum(final[load.name].values()),
                    "drain": round(drained.get(load.name, -1.0), 1),
                    "statuses": dict(statuses[load.name]),
                    "stats": {
                        k: v
                        for c in load.clients
                        for k, v in c.stats().items()
                        if k in ("rate_limited", "paced", "spooled")
                    },
                    "extended": load.tracker.stats()["windows_extended"] if load.tracker else None,
                }
                for load in loads
            }
            print(json.dumps(summary))
            print(json.dumps(minutes))
            for load in loads:
                # exactly once, per metric and license
                assert final[load.name] == load.recorded, (load.name, summary[load.name])
                # held back by the budget: the server refused some of it (429) at least once
                assert statuses[load.name][429] >= 1, (load.name, summary[load.name])
            # What the server was offered each minute, refused requests included: at most
            # twice the budget. What it took never passes the budget (its rolling minute);
            # what it refused stays below the budget too, because a 429 holds each sender
            # until its Retry-After and halves its pace (issue 19's service, not paced,
            # offered 23 times the budget, most of it refused or duplicate).
            assert max(m["offered"] for m in minutes) <= 2 * BUDGET, minutes
        finally:
            for load in loads:
                load.stop.set()
                load.close()
        for load in loads:
            nothing_lost(doow, load)
