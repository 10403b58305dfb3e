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

import logging
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from doow_otel.serverless import lambda_extension
from doow_otel_testing import LocalDoow
from doow_otel_testing.lambda_runtime import LambdaRuntime
from helpers import free_port
from lambda_emulator import (
    HANDLER,
    Emulator,
    await_totals,
    emulator,
    expected_totals,
    opt,
    rie,
    stored,
    usage,
)

__all__ = ["emulator", "opt", "rie"]  # fixtures, from lambda_emulator


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
