"""The real AWS Lambda Runtime Interface Emulator with the otelcol-doow extension layer:
the fixtures and helpers tests/serverless/test_lambda_extension.py and
tests/collector/test_lambda_gateway.py share (see the former's docstring)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from doow_otel_testing import LocalDoow
from helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
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
