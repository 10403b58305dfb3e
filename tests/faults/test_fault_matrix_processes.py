"""The fault matrix (tests/faultmatrix.py) on the paths that own a process: `doow-otel send`,
the zero-code path, the collector, and the process faults (SIGKILL and SIGTERM mid-flush,
fork, an unwritable spool, a full disk) on DoowTracker and DoowClient. Each run is a
real process; exact totals by what the local server stored."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from doow_otel_testing import LocalDoow
from faultmatrix import FAULTS, FIRST, PATH_FAULTS, PATH_PROCESS_FAULTS, PROCESS_FIRST
from helpers import Collector, child_env, run_app, running_collector, wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LICENSES = [f"lic_{i}" for i in range(5)]


@pytest.fixture
def doow() -> Iterator[LocalDoow]:
    with LocalDoow() as server:
        yield server


def _env(doow: LocalDoow, spool: Path, **extra: str) -> dict[str, str]:
    return child_env(
        {
            "DOOW_TRACK_API_KEY": doow.api_key,
            "DOOW_TRACK_ENDPOINT": doow.url,
            "DOOW_SPOOL_DIR": str(spool),
            **extra,
        }
    )


def _recover(doow: LocalDoow, again: Callable[[], object], expected: float) -> None:
    """Clear the fault, run the path once more (a new process: it replays what the first
    one kept), then check that the usage is there exactly once."""
    doow.faults.clear()
    again()
    assert wait_for(lambda: doow.total("api_calls") >= expected, seconds=10)
    time.sleep(0.2)
    assert doow.total("api_calls") == expected


# --- doow-otel send ---


def _lines(quantity: int) -> str:
    return "".join(
        json.dumps({"metric": "api_calls", "quantity": quantity, "license_id": lic}) + "\n"
        for lic in LICENSES
    )


@pytest.mark.parametrize("fault", PATH_FAULTS["send"])
def test_send(doow: LocalDoow, tmp_path: Path, fault: str) -> None:
    env = _env(doow, tmp_path / "spool")

    def send(lines: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "doow-otel"), "send", "--timeout", "2"],
            input=lines,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    FAULTS[fault].arm(doow)
    first = send(_lines(3))
    if FIRST[fault] == "delivered":
        assert first.returncode == 0, first.stderr
    else:
        assert first.returncode == 1, first.stderr  # the exit status says not all went out
        assert "kept in spool 5" in first.stderr
    _recover(doow, lambda: send(""), 15)


# --- zero-code: opentelemetry-instrument ---

ZERO_CODE_APP = """
from opentelemetry import metrics

import sys

calls = metrics.get_meter("app").create_counter("api_calls")
for i in range(5):
    calls.add(int(sys.argv[1]), {"doow.license_id": f"lic_{i}"})
"""


@pytest.mark.parametrize("fault", PATH_FAULTS["zero-code"])
def test_zero_code(doow: LocalDoow, tmp_path: Path, fault: str) -> None:
    env = _env(
        doow,
        tmp_path / "spool",
        OTEL_METRICS_EXPORTER="doow",
        OTEL_TRACES_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
    )
    app = tmp_path / "app.py"
    app.write_text(ZERO_CODE_APP)

    def run(quantity: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "opentelemetry-instrument"), sys.executable, str(app), str(quantity)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    FAULTS[fault].arm(doow)
    first = run(3)
    assert first.returncode == 0, first.stderr  # the app itself never fails
    if FIRST[fault] == "delivered":
        assert doow.total("api_calls") == 15
    else:
        assert doow.total("api_calls") < 15 or fault == "drop after store"
        assert "doow" in first.stderr  # reported
    _recover(doow, lambda: run(1), 20)  # the next run exports its own usage after the kept


ZERO_CODE_WAIT = (
    ZERO_CODE_APP
    + """
import time
print("ready", flush=True)
time.sleep(120)  # idle, as a server between requests: only the signal ends it
"""
)


@pytest.mark.parametrize("fault", PATH_PROCESS_FAULTS["zero-code"])
def test_zero_code_process_fault(doow: LocalDoow, tmp_path: Path, fault: str) -> None:
    app = tmp_path / "app.py"
    if fault == "SIGTERM before export":
        env = _env(doow, tmp_path / "spool", OTEL_METRICS_EXPORTER="doow",
                   OTEL_TRACES_EXPORTER="none", OTEL_LOGS_EXPORTER="none")  # fmt: skip
        app.write_text(ZERO_CODE_WAIT)
        process = subprocess.Popen(
            [str(BIN / "opentelemetry-instrument"), sys.executable, str(app), "3"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        assert process.returncode == -signal.SIGTERM, err
    else:  # only metrics asked for Doow; the rest left to opentelemetry-distro's default
        app.write_text(ZERO_CODE_APP)
        run = subprocess.run(
            [str(BIN / "opentelemetry-instrument"), sys.executable, str(app), "3"],
            env=_env(doow, tmp_path / "spool", OTEL_METRICS_EXPORTER="doow"),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert "Set OTEL_TRACES_EXPORTER to doow" in run.stderr
        assert "Set OTEL_LOGS_EXPORTER to doow" in run.stderr
    assert PROCESS_FIRST[fault] == "delivered"
    assert doow.total("api_calls") == 15


HAND_WIRED_WAIT = """
import time
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from doow_otel import metric_reader

metrics.set_meter_provider(MeterProvider(metric_readers=[metric_reader()]))
calls = metrics.get_meter("app").create_counter("api_calls")
for i in range(5):
    calls.add(3, {"doow.license_id": f"lic_{i}"})
print("ready", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("fault", PATH_PROCESS_FAULTS["otel"])
def test_hand_wired_otel_process_fault(doow: LocalDoow, tmp_path: Path, fault: str) -> None:
    app = tmp_path / "app.py"
    app.write_text(HAND_WIRED_WAIT)
    process = subprocess.Popen(
        [sys.executable, str(app)], env=_env(doow, tmp_path / "spool"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGTERM, err
    assert PROCESS_FIRST[fault] == "delivered"
    assert doow.total("api_calls") == 15


# --- the collector ---

COLLECTOR_APP = """
import os
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=60_000)
meters = MeterProvider(metric_readers=[reader])
calls = meters.get_meter("app").create_counter("api_calls")
for i in range(5):
    calls.add(3, {"doow.license_id": f"lic_{i}"})
meters.shutdown()
"""


@pytest.fixture
def collector(doow: LocalDoow, tmp_path: Path) -> Iterator[Collector]:
    with running_collector(doow, tmp_path) as running:
        yield running


def _push(collector: Collector, tmp_path: Path) -> None:
    run_app(
        COLLECTOR_APP,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http, "OTEL_METRICS_EXPORTER": "otlp"},
        tmp_path,
    )


@pytest.mark.parametrize("fault", PATH_FAULTS["collector"])
def test_collector(doow: LocalDoow, collector: Collector, tmp_path: Path, fault: str) -> None:
    FAULTS[fault].arm(doow)
    _push(collector, tmp_path)
    assert wait_for(lambda: len(doow.requests(path="/telemetry/events")) > 0, 30)
    if FIRST[fault] == "kept":
        time.sleep(0.5)
        assert doow.total("api_calls") < 15  # not delivered while the fault lasts
    doow.faults.clear()
    assert wait_for(lambda: doow.total("api_calls") >= 15, 60), collector.log.read_text()[-2000:]
    time.sleep(0.5)
    assert doow.total("api_calls") == 15


def test_collector_sigkill_mid_flush(doow: LocalDoow, tmp_path: Path) -> None:
    queue = tmp_path / "queue"
    queue.mkdir()
    running = Collector(doow, queue, tmp_path / "collector.log").start()
    try:
        doow.faults.latency(30, when="after_body")  # stored; the answer never comes in time
        _push(running, tmp_path)
        assert wait_for(lambda: doow.total("api_calls") >= 15, 30)
        running.stop(signal.SIGKILL)
        doow.faults.clear()
        running.start()  # the same persistent queue: it resends, Doow counts once
        assert wait_for(
            lambda: sum(1 for r in doow.requests(path="/telemetry/events") if r["status"]) >= 1
        )
        time.sleep(1.0)
        assert doow.total("api_calls") == 15
    finally:
        running.stop()


# --- process faults on DoowTracker and DoowClient ---

TRACKER_APP = """
import os, sys
from doow_otel import DoowTracker

meter = DoowTracker(flush_interval=3600, timeout=float(os.environ.get("FLUSH_TIMEOUT", "5")))
quantity = int(sys.argv[1])  # 0: track nothing, only flush (a replay)
for lic in ["lic_0", "lic_1", "lic_2", "lic_3", "lic_4"] if quantity else []:
    meter.track(metric="api_calls", quantity=quantity, license_id=lic)
if os.environ.get("FORK"):
    pid = os.fork()
    for lic in ["lic_0", "lic_1"]:
        meter.track(metric="api_calls", quantity=quantity, license_id=lic)
    meter.flush()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
if os.environ.get("WAIT"):  # idle until SIGTERM: nothing exported yet
    import time
    print("ready", flush=True)
    time.sleep(120)
print("flushing", flush=True)
ok = meter.flush()
print("flushed", ok, meter.client.stats(), flush=True)
"""


def _tracker(
    doow: LocalDoow, tmp_path: Path, spool: Path, quantity: int, **env: str
) -> subprocess.Popen[str]:
    script = tmp_path / "tracker_app.py"
    script.write_text(TRACKER_APP)
    return subprocess.Popen(
        [sys.executable, str(script), str(quantity)],
        env=_env(doow, spool, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def _in_flight(doow: LocalDoow) -> bool:
    return any(
        r["status"] is None for r in doow.requests(path="/telemetry/events", include_in_flight=True)
    )


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_tracker_killed_mid_flush(doow: LocalDoow, tmp_path: Path, sig: int) -> None:
    spool = tmp_path / "spool"
    doow.faults.latency(30, when="before_body")  # the flush waits on Doow; nothing stored yet
    process = _tracker(doow, tmp_path, spool, 3, FLUSH_TIMEOUT="20")
    assert wait_for(lambda: _in_flight(doow), 30)
    started = time.monotonic()
    process.send_signal(sig)
    process.wait(timeout=60)
    if sig == signal.SIGTERM:
        assert time.monotonic() - started < 20  # exits within the flush timeout
    doow.faults.clear()
    assert doow.total("api_calls") == 0
    _recover(
        doow, lambda: _finish(_tracker(doow, tmp_path, spool, 0)), 15
    )  # the next process replays


def test_tracker_sigterm_before_export(doow: LocalDoow, tmp_path: Path) -> None:
    process = _tracker(doow, tmp_path, tmp_path / "spool", 3, WAIT="1")
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGTERM, err
    assert PROCESS_FIRST["SIGTERM before export"] == "delivered"
    assert doow.total("api_calls") == 15  # delivered by the flush on SIGTERM


def test_tracker_fork(doow: LocalDoow, tmp_path: Path) -> None:
    code, out, err = _finish(_tracker(doow, tmp_path, tmp_path / "spool", 3, FORK="1"))
    assert code == 0, err
    # before the fork 5 x 3 (billed once, not once per process), then 2 x 3 in each process
    assert wait_for(lambda: doow.total("api_calls") >= 27, 10)
    time.sleep(0.3)
    assert doow.total("api_calls") == 27


@contextlib.contextmanager
def _full_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a tmpfs mount needs root")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        with contextlib.suppress(OSError), open(mount / "filler", "wb") as filler:
            while True:
                filler.write(b"x" * 1024)
                filler.flush()
        yield mount / "spool"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("fault", PATH_PROCESS_FAULTS["client"])
@pytest.mark.parametrize("path", ["tracker", "client"])
def test_spool_that_cannot_be_written(
    doow: LocalDoow, tmp_path: Path, fault: str, path: str
) -> None:
    with contextlib.ExitStack() as stack:
        if fault == "full disk":
            spool = stack.enter_context(_full_tmpfs(tmp_path))
        else:  # a file where the spool directory should be: nothing can be written there
            blocker = tmp_path / "not-a-dir"
            blocker.write_text("")
            spool = blocker / "spool"
        if path == "tracker":
            code, out, err = _finish(_tracker(doow, tmp_path, spool, 3))
            assert code == 0, err
            assert "flushed True" in out, out + err
        else:
            from doow_otel import DoowClient, UsageEvent

            with DoowClient(doow.api_key, endpoint=doow.url, spool=spool) as client:
                result = client.send(
                    [UsageEvent(metric="api_calls", quantity=3, license_id=lic) for lic in LICENSES]
                )
                assert result.delivered == 5
    assert doow.total("api_calls") == 15
    assert not any(p.name.startswith(".tmp") for p in spool.parent.rglob("*") if p.is_file())
