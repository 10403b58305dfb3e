"""Latency a metering strategy adds to a warm serverless invocation, and memory over many.

The local server runs in its own process with 20 ms of injected latency per request
(a round trip to a real ingest endpoint). Each strategy wraps the same handler, which
records 1 or 10 usage events; we time warm invocations (wall, and this process's CPU)
minus the bare handler, side by side in one run:
  - doow-otel `meter.with_lambda` (one flush, one request, within the time left);
  - the Node.js SDK's strategy: one flush per tracked event (here with doow-track);
  - doow-track 0.1.2 flushing once at the end of the invocation;
  - OpenTelemetry's Lambda instrumentation strategy: an OTLP metric exporter, the
    provider force-flushed at the end (to the server's OTLP endpoint).
  - doow-otel through the otelcol-doow Lambda extension: `with_lambda` pushes to the
    extension's collector on localhost (collector/build-lambda-layer.sh), which
    delivers after the response; its own CPU per invocation is reported beside.
Then a cold invocation (a fresh interpreter: import, set up, first invocation) for
the same strategies. Then Vercel with `wait_until`: time to the response's last byte,
with and without doow-otel. Then memory (tracemalloc) over 1,000 warm invocations.
Usage: python bench/bench_serverless.py [invocations] [--quick] [--json PATH]
"""

from __future__ import annotations

import asyncio
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import httpx

from _results import Record, Recorder, options
from _server import KEY, UNPACED, local_server, table, usage_total

LATENCY = 0.02
EVENTS = (1, 10, 100)
PER_EVENT_UP_TO = 10  # one request per event: 100 would take 2 s per invocation
MEMORY_INVOCATIONS = 1000
COLD_PROCESSES = 7
OURS = "doow-otel with_lambda (one flush)"
EXTENSION = "doow-otel with_lambda + otelcol-doow extension (push to localhost)"
EXTENSION_GOALS = ("<= 2", "<= 1")  # added wall ms, added CPU ms, per warm invocation


class Context:
    """What Lambda passes as `context`: the handler has 10 s left."""

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def faults(url: str, command: dict[str, Any]) -> None:
    httpx.post(
        f"{url}/admin/faults", json=command, headers={"Authorization": f"Bearer {KEY}"}
    ).raise_for_status()


def time_invocations(invoke: Callable[[int], object], n: int) -> tuple[float, float]:
    """Median wall ms and mean CPU ms per invocation (after two warm-up calls)."""
    invoke(0)
    invoke(1)
    walls = []
    cpu = time.process_time()
    for i in range(n):
        started = time.perf_counter()
        invoke(i)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls) * 1000, (time.process_time() - cpu) / n * 1000


def handler_body(record: Callable[[str, int], None], events: int, metric: str) -> dict[str, int]:
    for i in range(events):
        record(f"lic_{i % 3}", 1)
    return {"statusCode": 200}


def wrapped_handler(meter: Any, events: int, metric: str) -> Callable[[int], object]:
    """Invocation `i` of a `with_lambda` handler that tracks `events` records on `meter`."""

    @meter.with_lambda
    def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
        return handler_body(
            lambda lic, q: meter.track(
                metric=metric,
                quantity=q,
                license_id=lic,
                attribution={"invocation": event["i"] % 2},
            ),
            events,
            metric,
        )

    return lambda i: handler({"i": i}, Context())


def ours(
    url: str, events: int, metric: str, spool: str, events_per_minute: int | None = None
) -> tuple[Callable[[int], object], Any]:
    from doow_otel import DoowTracker

    meter = DoowTracker(
        KEY, endpoint=url, spool=spool, flush_interval=3600, handle_sigterm=False,
        events_per_minute=events_per_minute,
    )  # fmt: skip
    return wrapped_handler(meter, events, metric), meter.shutdown


def doow_track(
    url: str, events: int, metric: str, per_event: bool
) -> tuple[Callable[[int], object], Any]:
    from doow_track import Tracker, TrackerOptions, TrackEvent

    tracker = Tracker(KEY, TrackerOptions(endpoint=url, flush_interval=3600, flush_at=1000))

    def record(lic: str, q: int) -> None:
        tracker.track(TrackEvent(metric=metric, quantity=q, license_id=lic))
        if per_event:
            tracker.flush()

    def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
        result = handler_body(record, events, metric)
        if not per_event:
            tracker.flush()
        return result

    return (lambda i: handler({"i": i}, Context())), tracker.shutdown


def otel_lambda(url: str, events: int, metric: str) -> tuple[Callable[[int], object], Any]:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    from doow_otel.otel.metrics import DELTA_TEMPORALITY

    exporter = OTLPMetricExporter(
        endpoint=f"{url}/telemetry/otlp/v1/metrics",
        headers={"Authorization": f"Bearer {KEY}"},
        preferred_temporality=DELTA_TEMPORALITY,
    )
    provider = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)]
    )
    counter = provider.get_meter("app").create_counter(metric)
    seq = [0]

    def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
        # a fresh attribute per invocation: every invocation's points are distinct usage
        seq[0] += 1
        result = handler_body(
            lambda lic, q: counter.add(q, {"license_id": lic, "invocation": seq[0]}), events, metric
        )
        provider.force_flush(10_000)  # what the AWS Lambda instrumentation does at the end
        return result

    return (lambda i: handler({"i": i}, Context())), provider.shutdown


class ExtensionCollector:
    """The Lambda layer's collector (its default config), as the extension runs it
    beside the function, here without the Lambda lifecycle (no AWS_LAMBDA_RUNTIME_API)."""

    BINARY = os.path.join(
        os.path.dirname(__file__), "..", "collector", "_build", "lambda", "otelcol-doow"
    )
    CONFIG = os.path.join(os.path.dirname(__file__), "..", "collector", "lambda", "config.yaml")

    def __init__(self, url: str) -> None:
        from doow_otel_testing.processes import free_port

        build = os.path.join(os.path.dirname(__file__), "..", "collector", "build-lambda-layer.sh")
        subprocess.run(["bash", build], check=True, timeout=900)
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DOOW_API_KEY": KEY,
            "DOOW_ENDPOINT": url,
            "DOOW_EXTENSION_OTLP_ENDPOINT": f"127.0.0.1:{port}",
            "DOOW_EXTENSION_QUEUE_DIR": tempfile.mkdtemp(),
            "DOOW_EXTENSION_CONFIG": self.CONFIG,
        }
        env.pop("AWS_LAMBDA_RUNTIME_API", None)
        self.process = subprocess.Popen(
            [self.BINARY], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        from doow_otel.serverless.lambda_extension import await_collector

        if not await_collector(self.endpoint, limit=10):
            raise RuntimeError("the extension's collector did not start")

    def cpu_ms(self) -> float:
        """The collector's CPU so far, summed over its threads (schedstat, in ns)."""
        total = 0
        for task in os.listdir(f"/proc/{self.process.pid}/task"):
            with open(f"/proc/{self.process.pid}/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[0])
        return total / 1e6

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def extension_route(
    collector: ExtensionCollector, events: int, metric: str
) -> tuple[Callable[[int], object], Any]:
    from doow_otel import DoowTracker

    meter = DoowTracker(
        route="collector",
        collector_endpoint=collector.endpoint,
        flush_interval=3600,
        handle_sigterm=False,
    )
    return wrapped_handler(meter, events, metric), meter.shutdown


def await_usage(url: str, metric: str, expected: int, limit: float = 30.0) -> int:
    """The stored total once it reaches `expected` (the extension delivers after the
    response), or what is there after `limit` seconds."""
    end = time.monotonic() + limit
    while (stored := usage_total(url, metric)) < expected and time.monotonic() < end:
        time.sleep(0.05)
    return stored


def bare(events: int) -> Callable[[int], object]:
    return lambda i: handler_body(lambda lic, q: None, events, "bare")


def lambda_table(url: str, n: int, rec: Recorder) -> list[list[str]]:
    if os.environ.get("DOOW_BENCH_NO_BUILD") and not os.path.exists(ExtensionCollector.BINARY):
        # `./dev bench --no-build` (the quick test): no layer build of several minutes
        print("the Lambda extension's layer is not built: its route is left out")
        return _lambda_table(url, n, rec, None)
    collector = ExtensionCollector(url)
    try:
        return _lambda_table(url, n, rec, collector)
    finally:
        collector.close()


def _lambda_table(
    url: str, n: int, rec: Recorder, collector: ExtensionCollector | None
) -> list[list[str]]:
    rows: list[list[str]] = []
    for events in EVENTS:
        base_wall, base_cpu = time_invocations(bare(events), n)
        contenders: dict[str, Callable[[str], tuple[Callable[[int], object], Any]]] = {
            OURS: functools.partial(lambda e, m: ours(url, e, m, tempfile.mkdtemp()), events),
            "doow-track 0.1.2, flush at the end": functools.partial(
                lambda e, m: doow_track(url, e, m, per_event=False), events
            ),
            "OTel Lambda instrumentation (OTLP, force_flush)": functools.partial(
                lambda e, m: otel_lambda(url, e, m), events
            ),
        }
        if events <= PER_EVENT_UP_TO:
            contenders["Node SDK strategy (flush per event, doow-track)"] = functools.partial(
                lambda e, m: doow_track(url, e, m, per_event=True), events
            )
        if collector is not None:
            contenders[EXTENSION] = functools.partial(
                lambda e, m: extension_route(collector, e, m), events
            )
        added: dict[str, tuple[float, float]] = {}
        stored_share: dict[str, float] = {}
        extension_cpu = 0.0
        for name, make in contenders.items():
            metric = f"bench_{events}_{len(rows)}"
            invoke, close = make(metric)
            collector_cpu = collector.cpu_ms() if collector else 0.0
            wall, cpu = time_invocations(invoke, n)
            close()
            expected = (n + 2) * events
            stored = (
                await_usage(url, metric, expected)
                if name == EXTENSION
                else usage_total(url, metric)
            )
            if collector is not None and name == EXTENSION:
                extension_cpu = (collector.cpu_ms() - collector_cpu) / (n + 2)
            added[name] = (wall - base_wall, cpu - base_cpu)
            stored_share[name] = stored / expected
            rows.append(
                [
                    name,
                    str(events),
                    f"{wall - base_wall:.1f}",
                    f"{cpu - base_cpu:.2f}",
                    f"{stored / expected:.0%}",
                ]
            )
        for figure, unit, index in (
            ("added latency per warm Lambda invocation", "ms", 0),
            ("added CPU per warm Lambda invocation", "ms CPU", 1),
        ):
            rec.add(
                Record(
                    name=f"{figure}, {events} event{'s' if events > 1 else ''}",
                    unit=unit,
                    better="lower",
                    ours=added[OURS][index],
                    ours_label=OURS,
                    alternatives={
                        k: v[index] for k, v in added.items() if k not in (OURS, EXTENSION)
                    },
                    delivered_ok=stored_share[OURS] == 1.0,
                    group="lambda_wall" if index == 0 else "lambda_cpu",
                    params={
                        "events_per_invocation": events,
                        "invocations": n,
                        "server_latency_ms": LATENCY * 1000,
                        "stored": stored_share,
                    },
                    note=f"median of {n} warm invocations minus the bare handler; the server "
                    f"answers in {LATENCY * 1000:.0f} ms",
                )
            )
            if EXTENSION not in added:
                continue
            rec.add(
                Record(
                    name=f"{figure} through the Lambda extension, "
                    f"{events} event{'s' if events > 1 else ''}",
                    unit=unit,
                    better="lower",
                    ours=added[EXTENSION][index],
                    ours_label=EXTENSION,
                    # the others a user would pick first, then our direct route
                    alternatives={
                        **{k: v[index] for k, v in added.items() if k not in (EXTENSION, OURS)},
                        OURS: added[OURS][index],
                    },
                    delivered_ok=stored_share[EXTENSION] == 1.0,
                    group="lambda_extension_wall" if index == 0 else "lambda_extension_cpu",
                    goal=EXTENSION_GOALS[index],
                    params={
                        "events_per_invocation": events,
                        "invocations": n,
                        "server_latency_ms": LATENCY * 1000,
                        "extension_cpu_ms_per_invocation": extension_cpu,
                        "stored": stored_share,
                    },
                    note="before the response, in the function's process; the extension's "
                    f"collector spends {extension_cpu:.2f} ms CPU per invocation after it",
                )
            )
        if collector is None:
            continue
        rows.append(
            [
                "  (the extension's collector, after the response)",
                str(events),
                "-",
                f"{extension_cpu:.2f}",
                "-",
            ]
        )
    return rows


def vercel_table(url: str, n: int, rec: Recorder) -> list[list[str]]:
    """ASGI app under with_vercel: time until the response's last body message."""
    from vercel.cache.context import set_context

    from doow_otel import DoowTracker

    meter = DoowTracker(
        KEY, endpoint=url, spool=tempfile.mkdtemp(), flush_interval=3600, handle_sigterm=False
    )

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        for i in range(10):
            meter.track(metric="vercel_calls", quantity=1, license_id=f"lic_{i % 3}")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def one(target: Any, pending: list[Any]) -> float:
        set_context(wait_until=lambda work: pending.append(asyncio.ensure_future(work)))
        started = time.perf_counter()
        done = 0.0

        async def send(message: dict[str, Any]) -> None:
            nonlocal done
            if message["type"] == "http.response.body" and not message.get("more_body"):
                done = time.perf_counter()

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        await target({"type": "http", "method": "GET", "path": "/"}, receive, send)
        return done - started

    async def run(target: Any) -> float:
        pending: list[Any] = []
        times = [await one(target, pending) for _ in range(n)]
        await asyncio.gather(*pending)  # the runtime keeps the function alive for these
        return statistics.median(times) * 1000

    wrapped = meter.with_vercel(app)
    base = asyncio.run(run(bare_app))
    ours_ms = asyncio.run(run(wrapped))
    meter.shutdown()
    stored = usage_total(url, "vercel_calls")
    rec.add(
        Record(
            name="Vercel: time to the last response byte, 10 events, wait_until",
            unit="ms",
            better="lower",
            ours=ours_ms,
            ours_label="with_vercel",
            alternatives={"bare ASGI app (no metering)": base},
            delivered_ok=stored == n * 10,
            group="vercel",
            params={"invocations": n},
            compared=False,
            note="the flush runs in wait_until, after the response",
        )
    )
    return [
        ["bare ASGI app", f"{base:.2f}", "-"],
        ["with_vercel + wait_until, 10 events", f"{ours_ms:.2f}", f"{stored / (n * 10):.0%}"],
    ]


def memory_rows(url: str, invocations: int, rec: Recorder) -> list[list[str]]:
    # a few thousand events in well under a minute: pacing lifted (not the subject here)
    invoke, close = ours(url, 10, "memory_probe", tempfile.mkdtemp(), UNPACED)
    tracemalloc.start()
    rows = []
    for i in range(invocations):
        invoke(i)
        if i + 1 in (10, invocations // 10, invocations // 2, invocations):
            current, peak = tracemalloc.get_traced_memory()
            rows.append([str(i + 1), f"{current / 1024:,.0f}", f"{peak / 1024:,.0f}"])
    tracemalloc.stop()
    close()
    rec.add(
        Record(
            name=f"memory held after {invocations:,} warm invocations of 10 events",
            unit="KiB",
            better="lower",
            ours=current / 1024,
            ours_label=OURS,
            alternatives={},
            delivered_ok=usage_total(url, "memory_probe") == invocations * 10,
            group="memory",
            params={"invocations": invocations, "peak_kib": peak / 1024},
            note="tracemalloc, current (peak in params); pacing lifted",
        )
    )
    return rows


# A cold start: a fresh interpreter imports, sets up and runs its first invocation. Each
# script prints the seconds from before its first import to the handler's return, so the
# interpreter's own start-up (the same for all) is left out.
COLD_PRELUDE = """
import os, time
started = time.perf_counter()
class Context:
    def get_remaining_time_in_millis(self):
        return 10_000
"""
COLD = {
    "bare handler (no metering)": """
def handler(event, context):
    return {"statusCode": 200}
""",
    OURS: """
from doow_otel import DoowTracker
meter = DoowTracker(handle_sigterm=False)
@meter.with_lambda
def handler(event, context):
    meter.track(metric=os.environ["METRIC"], quantity=1, license_id="lic_1")
    return {"statusCode": 200}
""",
    "doow-track 0.1.2, flush at the end": """
from doow_track import Tracker, TrackerOptions, TrackEvent
tracker = Tracker(
    os.environ["DOOW_TRACK_API_KEY"], TrackerOptions(endpoint=os.environ["DOOW_TRACK_ENDPOINT"])
)
def handler(event, context):
    tracker.track(TrackEvent(metric=os.environ["METRIC"], quantity=1, license_id="lic_1"))
    tracker.flush()
    return {"statusCode": 200}
""",
    "OTel Lambda instrumentation (OTLP, force_flush)": """
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
exporter = OTLPMetricExporter(
    endpoint=os.environ["DOOW_TRACK_ENDPOINT"] + "/telemetry/otlp/v1/metrics",
    headers={"Authorization": "Bearer " + os.environ["DOOW_TRACK_API_KEY"]},
    preferred_temporality={Counter: AggregationTemporality.DELTA},
)
provider = MeterProvider(
    metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)]
)
counter = provider.get_meter("app").create_counter(os.environ["METRIC"])
def handler(event, context):
    counter.add(1, {"doow.license_id": "lic_1"})
    provider.force_flush(10_000)
    return {"statusCode": 200}
""",
}
COLD_END = """
handler({}, Context())
print(time.perf_counter() - started)
"""


def cold_table(url: str, rec: Recorder) -> list[list[str]]:
    medians: dict[str, float] = {}
    stored_share: dict[str, float] = {}
    for i, (name, body) in enumerate(COLD.items()):
        metric = f"cold_{i}"
        env = {
            **os.environ,
            "METRIC": metric,
            "DOOW_TRACK_API_KEY": KEY,
            "DOOW_TRACK_ENDPOINT": url,
            "DOOW_SPOOL_DIR": tempfile.mkdtemp(),
        }
        times = []
        for _ in range(COLD_PROCESSES):
            done = subprocess.run(
                [sys.executable, "-c", COLD_PRELUDE + body + COLD_END],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            times.append(float(done.stdout.strip().splitlines()[-1]) * 1000)
        medians[name] = statistics.median(times)
        stored_share[name] = usage_total(url, metric) / COLD_PROCESSES
    bare = medians.pop("bare handler (no metering)")
    stored_share.pop("bare handler (no metering)")
    added = {name: ms - bare for name, ms in medians.items()}
    rec.add(
        Record(
            name="cold Lambda invocation: import, set up, first invocation (1 event)",
            unit="ms",
            better="lower",
            ours=added[OURS],
            ours_label=OURS,
            alternatives={k: v for k, v in added.items() if k != OURS},
            delivered_ok=stored_share[OURS] == 1.0,
            group="lambda_cold",
            params={
                "processes": COLD_PROCESSES,
                "server_latency_ms": LATENCY * 1000,
                "stored": stored_share,
            },
            note=f"median of {COLD_PROCESSES} fresh interpreters, from the first import to the "
            "handler's return, minus a bare handler's",
        )
    )
    return [[name, f"{ms:.0f}", f"{stored_share[name]:.0%}"] for name, ms in added.items()]


def main() -> None:
    global EVENTS, MEMORY_INVOCATIONS, COLD_PROCESSES
    args, rec = options(__doc__ or "")
    n = args.args[0] if args.args else 40
    if args.quick:
        n, EVENTS, MEMORY_INVOCATIONS, COLD_PROCESSES = 4, (1, 10), 50, 2
    try:
        with local_server() as url:
            faults(url, {"latency": {"seconds": LATENCY}})
            table(
                f"Added per warm Lambda invocation (median of {n}; server answers in "
                f"{LATENCY * 1000:.0f} ms; CPU is this process's)",
                ["strategy", "events", "added wall ms", "added CPU ms", "usage stored"],
                lambda_table(url, n, rec),
            )
            table(
                f"Added to a cold Lambda invocation (median of {COLD_PROCESSES} fresh "
                "interpreters: first import to the handler's return, 1 event)",
                ["strategy", "added ms", "usage stored"],
                cold_table(url, rec),
            )
            table(
                "Vercel (ASGI) with wait_until: time to the last response byte",
                ["app", "ms", "usage stored"],
                vercel_table(url, n, rec),
            )
            faults(url, {"clear": True})
            table(
                f"doow-otel memory over {MEMORY_INVOCATIONS:,} warm invocations of 10 events "
                "(tracemalloc, KiB)",
                ["invocations", "current", "peak"],
                memory_rows(url, MEMORY_INVOCATIONS, rec),
            )
    finally:
        rec.write()


if __name__ == "__main__":
    main()
