"""What the test files share: child-process environments, the otelcol-doow collector binary
(started on the repository's config, or any other), and (from doow_otel_testing) free
ports and bounded waits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from doow_otel_testing import LocalDoow
from doow_otel_testing.gateway_credentials import fleet_credentials
from doow_otel_testing.processes import free_port, listening, wait_for

__all__ = [
    "COLLECTOR_CONFIG",
    "OTELCOL",
    "ROOT",
    "Collector",
    "child_env",
    "free_port",
    "listening",
    "require_otelcol",
    "run_app",
    "run_restored_copies",
    "running_gateway",
    "running_collector",
    "start_otelcol",
    "stop_process",
    "wait_for",
]

ROOT = Path(__file__).resolve().parents[1]
# another build of the distribution can be tested with OTELCOL_DOOW_BINARY
OTELCOL = Path(
    os.environ.get("OTELCOL_DOOW_BINARY") or ROOT / "collector" / "_build" / "otelcol-doow"
)
COLLECTOR_CONFIG = ROOT / "otel-collector-config.yaml"


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child, without DOOW_* and OTEL_* (the child's
    configuration is the test's alone), plus `extra`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DOOW_", "OTEL_"))}
    return {**base, **(extra or {})}


def run_app(source: str, env: dict[str, str], tmp_path: Path) -> None:
    """Run `source` as a script in a child Python with `env` added; it must succeed."""
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(source))
    result = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def run_restored_copies(
    source: str, doow: LocalDoow, tmp_path: Path, copies: int = 3
) -> tuple[list[list[str]], str]:
    """Run a Lambda SnapStart simulation (tests/*/test_snapstart*.py): `source` runs the
    runtime's hooks and makes raw copies of its process, each printing one line
    `copy <n> ... <ok>` in one write; every copy must say ok. Returns the copies' lines,
    split, and the whole output."""
    script = tmp_path / "app.py"
    script.write_text(source)
    env = child_env(
        {
            "DOOW_TRACK_API_KEY": doow.api_key,
            "DOOW_TRACK_ENDPOINT": doow.url,
            "DOOW_SPOOL_DIR": str(tmp_path / "tmp" / "doow-spool"),
        }
    )
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines() if line.startswith("copy")]
    assert len(lines) == copies and all(ok == "True" for *_, ok in lines), done.stdout
    return lines, done.stdout


# --- the collector binary ---


@contextmanager
def running_gateway(
    doow: LocalDoow, tmp_path: Path, *, window: str
) -> Iterator[tuple[int, dict[str, str]]]:
    """A gateway on collector/gateway.yaml, on loopback, delivering to `doow` and
    aggregating per `window`: its OTLP/HTTP port, and the environment its senders need
    (the fleet's token and CA)."""
    require_otelcol()
    gateway_env, sender = fleet_credentials(tmp_path)
    port = free_port()
    env = {
        "DOOW_API_KEY": doow.api_key,
        "DOOW_ENDPOINT": doow.url,
        "DOOW_QUEUE_DIR": str(tmp_path / "gateway"),
        "OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
        "OTLP_HTTP_ENDPOINT": f"127.0.0.1:{port}",
        "HEALTH_CHECK_ENDPOINT": f"127.0.0.1:{free_port()}",
        "OTELCOL_METRICS_PORT": str(free_port()),
        "DOOW_AGGREGATION_WINDOW": window,
        "DOOW_AGGREGATION_GRACE": "0s",
        **gateway_env,
    }
    log = tmp_path / "gateway.log"
    process = start_otelcol(ROOT / "collector" / "gateway.yaml", env, log)
    try:
        assert wait_for(lambda: listening(port)), log.read_text()
        yield port, sender
    finally:
        stop_process(process)


def require_otelcol() -> None:
    if not OTELCOL.exists():
        pytest.fail("collector/_build/otelcol-doow is missing: run ./dev test (it builds it)")


def start_otelcol(config: Path, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """otelcol-doow on `config`, with `env` added to this process's, its output in `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(OTELCOL), "--config", str(config)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_process(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(sig)
        process.wait(timeout=30)


@dataclass
class Collector:
    """otelcol-doow on the repository's config, delivering to a local server; restartable
    on the same ports (chosen at the first start) and queue."""

    doow: LocalDoow
    queue_dir: Path
    log: Path
    api_key: str | None = None  # the server's key unless given
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> Collector:
        # ports chosen once: a restart listens where the apps already send
        self.http_port = self.http_port or free_port()
        self.grpc_port = self.grpc_port or free_port()
        self.metrics_port = self.metrics_port or free_port()
        env = {
            "DOOW_API_KEY": self.api_key or self.doow.api_key,
            "DOOW_ENDPOINT": self.doow.url,
            "DOOW_QUEUE_DIR": str(self.queue_dir),
            "OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.http_port}",
            "OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.grpc_port}",
            # aggregation windows of a second: usage arrives within a test's patience
            "DOOW_AGGREGATION_WINDOW": "1s",
            "DOOW_AGGREGATION_GRACE": "0s",
            # the collector's own metrics and health check: ports of its own, next to
            # other collectors
            "OTELCOL_METRICS_PORT": str(self.metrics_port),
            "HEALTH_CHECK_ENDPOINT": f"127.0.0.1:{free_port()}",
        }
        process = self.process = start_otelcol(COLLECTOR_CONFIG, env, self.log)

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"otelcol-doow exited:\n{self.log.read_text()[-3000:]}")
            return listening(self.http_port)

        if not wait_for(up, seconds=30):
            raise AssertionError(f"otelcol-doow did not start:\n{self.log.read_text()[-3000:]}")
        return self

    def own_metrics(self) -> dict[str, float]:
        """The collector's own metrics as its Prometheus endpoint exposes them: each
        series (`name` or `name{label="value",...}`) and its value."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
        series = (line.rsplit(" ", 1) for line in text.splitlines() if line and line[0] != "#")
        return {name: float(value) for name, value in series}

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.process, sig)
        self.process = None


@contextmanager
def running_collector(doow: LocalDoow, tmp_path: Path) -> Iterator[Collector]:
    """A collector with a fresh queue under `tmp_path`, stopped at the end."""
    require_otelcol()
    queue = tmp_path / "queue"
    queue.mkdir()
    running = Collector(doow, queue, tmp_path / "collector.log").start()
    try:
        yield running
    finally:
        running.stop()
