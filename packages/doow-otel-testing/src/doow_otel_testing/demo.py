"""`doow-local demo`: every way of recording usage, against the local server, no account.

1. the seed's `track()` API (DoowTracker);
2. plain OpenTelemetry: a Counter with `doow.license_id` and the Doow exporter;
3. the Lambda example under the real runtime interface client, one invocation while
   Doow is too slow (its usage is kept on disk and delivered by the next one);
4. the Vercel example (FastAPI) under uvicorn, the ASGI server Vercel's runtime uses;
5. the Azure Functions example, indexed and called through the azure-functions library;
6. Doow failing (503, 429) while usage is sent: retried, delivered exactly once;
7. a correction (an ADJUSTMENT) and two events Doow refuses, with the reasons.
Then it prints what the server stored per metric, license, path and kind, and with
`--keep-serving` leaves the server and its page up until Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from doow_otel.delivery.client import DoowClient
from doow_otel.errors import ErrorReport
from doow_otel.model.event import UsageEvent
from doow_otel_testing import LocalDoow

# the repository's examples/: packages/doow-otel-testing/src/doow_otel_testing/demo.py
EXAMPLES = Path(__file__).resolve().parents[4] / "examples"


def _step(title: str) -> None:
    print(f"\n== {title}")


def _tracker_api(doow: LocalDoow, spool: Path) -> None:
    from doow_otel.tracker import DoowTracker

    _step("1. DoowTracker.track(): the seed's API on OpenTelemetry")
    with DoowTracker(
        doow.api_key,
        endpoint=doow.url,
        spool=spool,
        attribution={"runtime": "process"},  # names the path in the summary
        handle_sigterm=False,
    ) as meter:
        for _ in range(3):
            meter.track(metric="api_calls", quantity=1, license_id="lic_acme")
        meter.track(
            metric="tokens",
            quantity=1024,
            license_id="lic_acme",
            unit="tokens",
            attribution={"model": "gpt-4o-mini"},
        )
        meter.flush()
    print(f"   api_calls for lic_acme: {doow.total('api_calls', 'lic_acme')}")


def _plain_opentelemetry(doow: LocalDoow, spool: Path) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    from doow_otel.otel.metrics import DoowMetricExporter

    _step("2. Plain OpenTelemetry: a Counter with doow.license_id, the Doow exporter")
    exporter = DoowMetricExporter(DoowClient(doow.api_key, endpoint=doow.url, spool=spool))
    provider = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=60_000)],
        resource=Resource.create({"service.name": "report-service"}),
    )
    pages = provider.get_meter("reports").create_counter("pages_rendered", unit="{page}")
    pages.add(12, {"doow.license_id": "lic_globex", "format": "pdf", "runtime": "otel-sdk"})
    pages.add(3, {"doow.license_id": "lic_globex", "format": "csv", "runtime": "otel-sdk"})
    pages.add(1, {"route": "/health"})  # no license: ordinary telemetry, not billed
    provider.force_flush()
    provider.shutdown()
    print(f"   pages_rendered for lic_globex: {doow.total('pages_rendered', 'lic_globex')}")


def _lambda(doow: LocalDoow, spool: Path) -> None:
    _step("3. AWS Lambda: the example handler under the real runtime interface client")
    if importlib.util.find_spec("awslambdaric") is None or not (EXAMPLES / "lambda").is_dir():
        print("   skipped: needs `pip install awslambdaric` and the repository's examples/")
        return
    from doow_otel_testing.lambda_runtime import LambdaRuntime

    env = {
        "DOOW_TRACK_API_KEY": doow.api_key,
        "DOOW_TRACK_ENDPOINT": doow.url,
        "DOOW_SPOOL_DIR": str(spool / "lambda"),
    }
    with LambdaRuntime("handler.handler", task_root=EXAMPLES / "lambda", env=env) as runtime:
        first = runtime.invoke({"license_id": "lic_initech", "text": "one two three"}, timeout=3)
        print(
            f"   invocation 1: answered in time={first.in_time}; "
            f"words stored: {doow.total('words', 'lic_initech')}"
        )
        doow.faults.latency(10.0)
        slow = runtime.invoke({"license_id": "lic_initech", "text": "four five"}, timeout=1.0)
        print(
            f"   invocation 2, Doow slower than the 1 s left: answered in time={slow.in_time}; "
            f"words stored: {doow.total('words', 'lic_initech')} (the rest is on disk)"
        )
        doow.faults.clear()
        runtime.invoke({"license_id": "lic_initech", "text": "six"}, timeout=3)
        print(
            f"   invocation 3 delivered the spooled usage first: words stored: "
            f"{doow.total('words', 'lic_initech')}"
        )


def _example_module(name: str, path: Path, doow: LocalDoow, spool: Path) -> Any:
    """Import an example the way its platform would, with the environment it documents."""
    os.environ.update(
        DOOW_TRACK_API_KEY=doow.api_key,
        DOOW_TRACK_ENDPOINT=doow.url,
        DOOW_SPOOL_DIR=str(spool / name),
    )
    spec = importlib.util.spec_from_file_location(f"doow_demo_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _vercel(doow: LocalDoow, spool: Path) -> None:
    _step("4. Vercel: the example FastAPI app under uvicorn")
    if not _have("fastapi", "uvicorn") or not (EXAMPLES / "vercel").is_dir():
        print("   skipped: needs fastapi, uvicorn and the repository's examples/")
        return
    import httpx
    import uvicorn

    module = _example_module("vercel", EXAMPLES / "vercel" / "api" / "index.py", doow, spool)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(module.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/summarize"
        for text in ("a b c d", "e f"):
            httpx.post(url, json={"license_id": "lic_hooli", "text": text}).raise_for_status()
        # without wait_until (not on Vercel) the flush follows the response's last byte
        _wait_for(lambda: doow.total("words", "lic_hooli") == 6)
        print(f"   2 requests; words stored for lic_hooli: {doow.total('words', 'lic_hooli')}")
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        module.meter.shutdown()


def _azure(doow: LocalDoow, spool: Path) -> None:
    _step("5. Azure Functions: the example FunctionApp, called as the host's worker does")
    if not _have("azure.functions") or not (EXAMPLES / "azure").is_dir():
        print("   skipped: needs azure-functions and the repository's examples/")
        return
    import azure.functions as func

    module = _example_module("azure", EXAMPLES / "azure" / "function_app.py", doow, spool)
    (summarize,) = [
        f.get_user_function()
        for f in module.app.get_functions()
        if f.get_function_name() == "summarize"
    ]
    request = func.HttpRequest(
        "POST",
        "http://localhost:7071/api/summarize",
        body=json.dumps({"license_id": "lic_stark", "text": "one two three four five"}).encode(),
        headers={"content-type": "application/json"},
    )
    response = summarize(request)
    module.meter.shutdown()
    print(
        f"   HTTP {response.status_code}; words stored for lic_stark: "
        f"{doow.total('words', 'lic_stark')}"
    )


def _wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        time.sleep(0.05)


def _have(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _failures(doow: LocalDoow, spool: Path) -> None:
    _step("6. Doow failing: two 503s, then a 429 with Retry-After")
    doow.faults.fail_next(2, 503)
    heard: list[ErrorReport] = []
    client = DoowClient(doow.api_key, endpoint=doow.url, spool=spool, on_error=heard.append)
    before = len(doow.requests())

    def exports(n: int) -> list[UsageEvent]:
        return [
            UsageEvent(
                metric="exports",
                quantity=1,
                license_id="lic_umbrella",
                attribution={"runtime": "client"},
            )
            for _ in range(n)
        ]

    result = client.send(exports(250))
    doow.faults.fail_next(1, 429, retry_after="1")
    more = client.send(exports(50))
    statuses = [r["status"] for r in doow.requests()[before:]]
    client.close()
    waits = [r for r in heard if r.kind == "rate_limited"]
    print(
        f"   answers seen: {statuses}; delivered {result.delivered + more.delivered}; "
        f"stored: {doow.total('exports', 'lic_umbrella')}"
    )
    if waits:
        print("   the client heard the 429 and waited as told before resending (on_error got it)")


def _corrections_and_refusals(doow: LocalDoow, spool: Path) -> None:
    import httpx

    _step("7. A correction (ADJUSTMENT) and two events Doow refuses")
    with DoowClient(doow.api_key, endpoint=doow.url, spool=spool) as client:
        correction = UsageEvent(
            metric="exports",
            quantity=-20,
            license_id="lic_umbrella",
            kind="ADJUSTMENT",
            attribution={"runtime": "client"},
        )
        client.send([correction])
    print("   an ADJUSTMENT of -20 exports for lic_umbrella: stored apart from the usage")
    # What a client without validation of its own might send; DoowClient and track()
    # refuse these at the call, Doow answers 207 with a reason per event.
    text_quantity = UsageEvent(metric="exports", quantity=1, license_id="lic_umbrella").to_wire()
    text_quantity["measurements"][0]["quantity"] = "12"
    no_license = UsageEvent(metric="exports", quantity=1, license_id="lic_umbrella").to_wire()
    del no_license["license_id"]
    answer = httpx.post(
        f"{doow.url}/telemetry/events",
        json={"events": [text_quantity, no_license]},
        headers={"Authorization": f"Bearer {doow.api_key}"},
    )
    print(f"   HTTP {answer.status_code}; the reasons Doow gives:")
    for rejection in answer.json().get("rejections", []):
        print(f"     {rejection['reason']}")


def _summary(doow: LocalDoow) -> None:
    _step("What the local Doow stored (GET /api/usage?by=runtime&per_kind=true)")
    rows = [
        [
            r["metric"],
            r["license_id"],
            str(r["total"]),
            str(r["runtime"]),
            str(r["events"]),
            r["kind"],
        ]
        for r in doow.server.store.usage(by="runtime", per_kind=True)
    ]
    header = ["metric", "license", "quantity", "path", "events", "kind"]
    widths = [max(len(x) for x in column) for column in zip(header, *rows, strict=False)]
    for line in [header, ["-" * w for w in widths], *rows]:
        print("   " + "  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())
    stats: dict[str, Any] = doow.stats()
    print(
        f"   accepted {stats['accepted']}, rejected {stats['rejected']}; "
        f"{stats['duplicates']} resent events recognised by id and not counted again"
    )
    limit = doow.server.budget.events_per_minute
    print(
        f"   Doow's event budget: {doow.offered_events()} events offered in all, at most "
        f"{limit:,} a minute per key (the page charts them per minute)"
    )


def _serve_until_stopped(doow: LocalDoow) -> None:
    """Keep the server and its page up until Ctrl-C or SIGTERM."""
    print(f"\nServing. The page: {doow.url}/#key={doow.api_key}")
    print("Send more with:")
    print(
        f"   DOOW_TRACK_API_KEY={doow.api_key} DOOW_TRACK_ENDPOINT={doow.url} "
        f"{command('doow-otel')} test-event --metric api_calls --license-id lic_demo"
    )
    print(f"Stop with Ctrl-C (or: kill {os.getpid()}).", flush=True)
    stop = threading.Event()

    def stop_on(signum: int, frame: FrameType | None) -> None:
        stop.set()

    main = threading.current_thread() is threading.main_thread()  # signals: main only
    previous = signal.signal(signal.SIGTERM, stop_on) if main else None
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print("stopped", flush=True)


def command(name: str) -> str:
    """How to run one of this installation's commands from any shell: its name when the
    shell finds this one, else its full path (a virtualenv's bin/ is not on PATH)."""
    beside = Path(sys.executable).parent / name
    if not beside.exists():
        return name
    found = shutil.which(name)
    if found and Path(found).resolve() == beside.resolve():
        return name
    return str(beside)


@contextlib.contextmanager
def _narrated() -> Iterator[None]:
    """The demo tells what happens itself: the library's warnings (a 429 it waits out, a
    503 it retries) would interrupt the story; DOOW_TRACK_DEBUG=true keeps them."""
    library = logging.getLogger("doow_otel")
    level = library.level
    if not os.environ.get("DOOW_TRACK_DEBUG"):
        library.setLevel(logging.ERROR)
    try:
        yield
    finally:
        library.setLevel(level)


def run(*, keep_serving: bool = False) -> int:
    with _narrated(), tempfile.TemporaryDirectory(prefix="doow-demo-") as tmp:
        spool = Path(tmp)
        with LocalDoow() as doow:
            print(f"Local Doow-compatible server: {doow.url}")
            print(f"Page: {doow.url}/#key={doow.api_key}")
            _tracker_api(doow, spool / "tracker")
            _plain_opentelemetry(doow, spool / "otel")
            _lambda(doow, spool)
            _vercel(doow, spool)
            _azure(doow, spool)
            _failures(doow, spool / "client")
            _corrections_and_refusals(doow, spool / "corrections")
            _summary(doow)
            if keep_serving:
                _serve_until_stopped(doow)
            else:
                print("\nThe server stops with the demo; `./dev demo --keep-serving` keeps it")
                print("and its page up (counters, chart, events, rejections) until Ctrl-C.")
    return 0
