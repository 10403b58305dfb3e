"""otelcol-doow as a Lambda extension layer.

Under the real AWS Lambda Runtime Interface Emulator (aws-lambda-rie, installed pinned
by scripts/install-lambda-rie.sh): the layer (collector/build-lambda-layer.sh) is
unpacked into a private /opt (a bind mount in a private mount namespace; the host's
/opt is untouched), the emulator starts its extension from /opt/extensions and the
function under `awslambdaric`, a handler wrapped by `with_lambda` with
`DoowTracker(route="collector")`. Totals are read from the local Doow server. The
emulator offers no Telemetry API and never freezes: there the extension acknowledges
each INVOKE at once and exports in the background, and SHUTDOWN (SIGTERM to the
emulator) is where it must drain.

The freeze itself is proven under the in-package emulator (doow_otel_testing.lambda_runtime),
which sends platform.runtimeDone and SIGSTOPs the runtime and the extension as Lambda
freezes the environment: the usage must be stored by then.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from doow_otel.serverless import lambda_extension
from doow_otel_testing import LocalDoow
from doow_otel_testing.lambda_runtime import LambdaRuntime
from helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "collector" / "_build" / "otelcol-doow-lambda-layer.zip"

pytest.importorskip("awslambdaric")

HANDLER = """
    import os
    import time

    from doow_otel import DoowTracker

    meter = DoowTracker(route="collector", flush_interval=3600)


    @meter.with_lambda
    def _handler(event, context):
        for item in event.get("track", []):
            meter.track(**item)
        return {"ok": True, "request_id": context.aws_request_id}


    def handler(event, context):
        result = _handler(event, context)
        # the response is ready: awslambdaric posts it when this returns
        with open(os.environ["READY_LOG"], "a") as log:
            log.write(f"{context.aws_request_id} {time.time():.6f}\\n")
        return result
"""


def _why_not() -> str | None:
    if not sys.platform.startswith("linux"):
        return "the emulator and the private /opt need Linux"
    if os.geteuid() != 0:
        return "a private /opt needs a mount namespace (root); run as root"
    if shutil.which("unshare") is None or shutil.which("go") is None:
        return "needs unshare(1) and the Go toolchain"
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True, timeout=10
    )
    if probe.returncode != 0:
        return f"unshare -m is not permitted here: {probe.stderr.decode().strip()}"
    return None


if (_reason := _why_not()) is not None:
    pytest.skip(_reason, allow_module_level=True)


def _run(*command: str, timeout: float) -> str:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip()


@pytest.fixture(scope="module")
def rie() -> Path:
    return Path(_run("bash", "scripts/install-lambda-rie.sh", timeout=600))


@pytest.fixture(scope="module")
def opt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer, built by its one command and unpacked as Lambda does into /opt."""
    _run("bash", "collector/build-lambda-layer.sh", timeout=900)
    root = tmp_path_factory.mktemp("opt")
    with zipfile.ZipFile(LAYER) as layer:
        assert sorted(layer.namelist()) == ["extensions/otelcol-doow", "otelcol-doow/config.yaml"]
        layer.extractall(root)
    (root / "extensions" / "otelcol-doow").chmod(0o755)  # zipfile drops the mode
    return root


@dataclass
class Answer:
    body: object
    requested: float  # time.time() when the invoke request was sent
    ready: float  # time.time() when the handler's response was ready to post


class Emulator:
    """aws-lambda-rie with the layer in a private /opt, running HANDLER."""

    def __init__(self, rie: Path, opt: Path, task: Path, doow: LocalDoow) -> None:
        self.port, api_port, otlp_port = free_port(), free_port(), free_port()
        self.ready_log = task / "ready.log"
        self.log_path = task / "emulator.log"
        (task / "app.py").write_text(textwrap.dedent(HANDLER))
        env = {
            **os.environ,
            "DOOW_API_KEY": doow.api_key,
            "DOOW_ENDPOINT": doow.url,
            # the layer's default config, on ports and a queue of this test's own
            "DOOW_EXTENSION_OTLP_ENDPOINT": f"127.0.0.1:{otlp_port}",
            "DOOW_EXTENSION_QUEUE_DIR": str(task / "queue"),
            "DOOW_EXTENSION_LOG_LEVEL": "info",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
            "DOOW_ROUTE": "collector",
            "READY_LOG": str(self.ready_log),
            "PYTHONPATH": os.pathsep.join([str(task), str(ROOT / "src")]),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": "30",
        }
        env.pop("DOOW_EXTENSION_CONFIG", None)
        script = 'mount --bind "$1" /opt && cd "$2" && shift 2 && exec "$@"'
        command = [
            *("unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh"),
            *(str(opt), str(task), str(rie)),
            *("--runtime-interface-emulator-address", f"127.0.0.1:{self.port}"),
            *("--runtime-api-address", f"127.0.0.1:{api_port}"),
            *(sys.executable, "-m", "awslambdaric", "app.handler"),
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self._wait_listening()

    def _wait_listening(self) -> None:
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.process.poll() is not None:
                pytest.fail(f"the emulator exited:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        pytest.fail(f"the emulator is not listening:\n{self.log()}")

    def invoke(self, event: object) -> Answer:
        url = f"http://127.0.0.1:{self.port}/2015-03-31/functions/function/invocations"
        request = urllib.request.Request(url, data=json.dumps(event).encode())
        requested = time.time()
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = json.loads(answer.read())
        assert isinstance(body, dict) and body.get("ok"), f"{body}\n{self.log()}"
        return Answer(body, requested, self.ready_at(body["request_id"]))

    def ready_at(self, request_id: str) -> float:
        for line in self.ready_log.read_text().splitlines():
            rid, at = line.split()
            if rid == request_id:
                return float(at)
        raise AssertionError(f"no ready time for {request_id}")

    def terminate(self, wait: float = 15.0) -> None:
        """SIGTERM, as when Lambda retires the environment: the extension gets SHUTDOWN."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(wait)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the emulator did not exit within {wait}s:\n{self.log()}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


@pytest.fixture
def emulator(
    rie: Path, opt: Path, tmp_path: Path, local_doow: LocalDoow
) -> Iterator[Callable[[], Emulator]]:
    started: list[Emulator] = []

    def start() -> Emulator:
        started.append(Emulator(rie, opt, tmp_path, local_doow))
        return started[-1]

    yield start
    for e in started:
        e.close()


def usage(invocation: int, events: int = 10) -> dict[str, object]:
    return {
        "track": [
            {"metric": "api_calls", "quantity": 1 + (i % 3), "license_id": f"lic_{i % 4}"}
            for i in range(events)
        ]
        + [{"metric": "invocations", "quantity": 1, "license_id": f"lic_{invocation % 2}"}]
    }


def expected_totals(invocations: range, events: int = 10) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = {}
    for n in invocations:
        for item in usage(n, events)["track"]:  # type: ignore[union-attr]
            key = (item["metric"], item["license_id"])  # type: ignore[index]
            totals[key] = totals.get(key, 0) + item["quantity"]  # type: ignore[index]
    return totals


def stored(doow: LocalDoow, keys: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    return {key: int(doow.total(*key)) for key in keys}


def await_totals(doow: LocalDoow, expected: dict[tuple[str, str], int], limit: float) -> None:
    end = time.monotonic() + limit
    while stored(doow, expected) != expected and time.monotonic() < end:
        time.sleep(0.05)
    assert stored(doow, expected) == expected


def test_many_invocations_deliver_exact_totals(
    emulator: Callable[[], Emulator], local_doow: LocalDoow
) -> None:
    lam = emulator()
    for n in range(40):
        lam.invoke(usage(n))
    expected = expected_totals(range(40))
    await_totals(local_doow, expected, limit=15)
    time.sleep(0.3)  # nothing more arrives: no usage counted twice
    assert stored(local_doow, expected) == expected


def test_a_slow_doow_does_not_delay_the_response(
    emulator: Callable[[], Emulator], local_doow: LocalDoow
) -> None:
    lam = emulator()
    lam.invoke(usage(0))  # cold start
    local_doow.faults.latency(0.5)
    answers = [lam.invoke(usage(n)) for n in range(1, 6)]
    # A flush that waited for Doow could not be ready before Doow's 0.5 s had passed.
    for answer in answers:
        assert answer.ready - answer.requested < 0.5, answer
    await_totals(local_doow, expected_totals(range(6)), limit=15)


def test_doow_down_for_a_while_then_back_delivers_exact_totals(
    emulator: Callable[[], Emulator], local_doow: LocalDoow
) -> None:
    lam = emulator()
    lam.invoke(usage(0))
    local_doow.faults.fail_next(status=503, fraction=1.0)
    for n in range(1, 11):
        lam.invoke(usage(n))
    assert local_doow.total("invocations", "lic_1") == 0  # the outage held them back
    local_doow.faults.clear()
    await_totals(local_doow, expected_totals(range(11)), limit=30)


def test_sigterm_shutdown_delivers_what_is_in_flight(
    emulator: Callable[[], Emulator], local_doow: LocalDoow
) -> None:
    lam = emulator()
    lam.invoke(usage(0))
    # 40 pushes at 0.3 s each, 10 at a time (the queue's consumers): 1.2 s of exports.
    # The emulator gives the runtime 0.6 s to stop, then sends SHUTDOWN with 1.4 s left:
    # the collector's own stop would leave the last 10 or 20 queued on disk, lost with
    # the environment's /tmp; the extension drains them first.
    local_doow.faults.latency(0.3)
    for n in range(1, 41):
        lam.invoke(usage(n))
    expected = expected_totals(range(41))
    assert stored(local_doow, expected) != expected  # exports still in flight
    lam.terminate()
    # The emulator exits after its extension: what it delivered is stored by now.
    assert stored(local_doow, expected) == expected, lam.log()


# --- the function's side, without the emulator ---


def test_a_hint_when_the_layer_is_present_but_the_route_is_doow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from doow_otel.serverless import with_lambda

    extension = tmp_path / "extensions" / "otelcol-doow"
    extension.parent.mkdir()
    extension.write_bytes(b"")
    monkeypatch.setattr(lambda_extension, "EXTENSION_PATH", extension)
    monkeypatch.setattr(lambda_extension, "_hinted", False)
    monkeypatch.delenv("DOOW_ROUTE", raising=False)
    caplog.set_level(logging.INFO, logger="doow_otel")
    with_lambda(lambda event, context: None)
    with_lambda(lambda event, context: None)
    hints = [r for r in caplog.records if "DOOW_ROUTE=collector" in r.getMessage()]
    assert len(hints) == 1
    monkeypatch.setattr(lambda_extension, "_hinted", False)
    monkeypatch.setenv("DOOW_ROUTE", "doow")  # a route chosen: no hint
    caplog.clear()
    with_lambda(lambda event, context: None)
    assert not [r for r in caplog.records if "DOOW_ROUTE=collector" in r.getMessage()]


def test_the_first_push_waits_for_the_extension_to_listen(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setattr(lambda_extension, "_ready", set())
    listener = socket.socket()

    def listen_later() -> None:
        time.sleep(0.3)
        listener.bind(("127.0.0.1", port))
        listener.listen()

    threading.Thread(target=listen_later, daemon=True).start()
    try:
        assert lambda_extension.await_collector(f"http://127.0.0.1:{port}", limit=5.0)
        # once ready, later pushes do not check again
        assert lambda_extension.collector_address(f"http://127.0.0.1:{port}") in (
            lambda_extension._ready
        )
    finally:
        listener.close()
    silent = free_port()
    assert not lambda_extension.await_collector(f"http://127.0.0.1:{silent}", limit=0.1)


# --- freeze semantics: the in-package emulator, with the Extensions and Telemetry APIs ---


@pytest.fixture
def frozen_lambda(opt: Path, tmp_path: Path, local_doow: LocalDoow) -> Iterator[LambdaRuntime]:
    """The layer's extension and the function under doow_otel_testing.lambda_runtime, which
    sends platform.runtimeDone and freezes (SIGSTOP) each process as Lambda would."""
    otlp_port = free_port()
    (tmp_path / "app.py").write_text(textwrap.dedent(HANDLER))
    runtime = LambdaRuntime(
        "app.handler",
        task_root=tmp_path,
        extensions=[opt / "extensions" / "otelcol-doow"],
        env={
            "DOOW_API_KEY": local_doow.api_key,
            "DOOW_ENDPOINT": local_doow.url,
            "DOOW_EXTENSION_CONFIG": str(opt / "otelcol-doow" / "config.yaml"),
            "DOOW_EXTENSION_OTLP_ENDPOINT": f"127.0.0.1:{otlp_port}",
            "DOOW_EXTENSION_QUEUE_DIR": str(tmp_path / "queue"),
            "DOOW_EXTENSION_LOG_LEVEL": "info",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
            "DOOW_ROUTE": "collector",
            "READY_LOG": str(tmp_path / "ready.log"),
        },
    )
    with runtime:
        yield runtime


def test_the_environment_freezes_only_once_the_invocations_usage_is_delivered(
    frozen_lambda: LambdaRuntime, local_doow: LocalDoow
) -> None:
    frozen_lambda.invoke(usage(0), timeout=10)  # cold start
    local_doow.faults.latency(0.3)
    for n in range(1, 6):
        started_ms = time.time() * 1000
        result = frozen_lambda.invoke(usage(n), timeout=10)
        assert result.ok, frozen_lambda.log()
        # the response was posted without waiting for Doow's 0.3 s ...
        assert result.posted_ms - started_ms < 300, result
        # ... and the environment froze only once Doow had this invocation's usage: it is
        # stored now, while the runtime and the extension are stopped
        expected = expected_totals(range(n + 1))
        assert stored(local_doow, expected) == expected, frozen_lambda.log()[-3000:]


def test_with_doow_down_the_environment_freezes_at_once_and_delivers_when_back(
    frozen_lambda: LambdaRuntime, local_doow: LocalDoow
) -> None:
    frozen_lambda.invoke(usage(0), timeout=10)
    local_doow.faults.fail_next(status=503, fraction=1.0)
    for n in range(1, 6):
        result = frozen_lambda.invoke(usage(n), timeout=10)
        assert result.ended_ms is not None
        # the queue keeps the usage on disk: no wait for the 2 s drain_timeout
        assert result.ended_ms - result.posted_ms < 2000, result
    assert local_doow.total("invocations", "lic_1") == 0
    local_doow.faults.clear()
    expected = expected_totals(range(6))
    end = time.monotonic() + 30
    while stored(local_doow, expected) != expected and time.monotonic() < end:
        time.sleep(0.2)  # frozen meanwhile; the retries run while the next invocation does
        frozen_lambda.invoke({"track": []}, timeout=10)
    assert stored(local_doow, expected) == expected, frozen_lambda.log()[-3000:]
