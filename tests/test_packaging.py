"""What users deploy: the runtime package holds runtime code, and no route needs the
OTLP/HTTP exporter's dependencies (protobuf, requests)."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from doow_otel import DoowClient, UsageEvent, cli
from doow_otel.tracker import DoowTracker
from doow_otel_testing import LocalDoow

ROOT = Path(__file__).resolve().parent.parent
OTLP_HTTP = "opentelemetry.exporter.otlp.proto.http.metric_exporter"


def test_route_collector_needs_no_otlp_exporter_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector route pushes OTLP/JSON on the package's own transport: neither
    OpenTelemetry's OTLP exporter nor protobuf is needed (the [collector] extra is empty)."""
    for name in (OTLP_HTTP, "google.protobuf", "opentelemetry.proto"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    tracker = DoowTracker(route="collector", handle_sigterm=False, spool=None)
    tracker.track(metric="api_calls", quantity=1, license_id="lic_a")
    tracker.shutdown(timeout=0.1)  # no collector listens: reported, never raised


def test_the_runtime_cli_points_to_the_local_server_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "doow-local serve" in capsys.readouterr().out


def test_the_runtime_package_has_no_test_helpers_and_no_otlp_http_dependency() -> None:
    required = [r for r in metadata.requires("doow-otel") or [] if "extra ==" not in r]
    assert not [r for r in required if "otlp-proto-http" in r or "requests" in r]
    assert not [r for r in required if r.startswith(("httpx", "certifi"))], required
    extra = [r for r in metadata.requires("doow-otel") or [] if 'extra == "httpx"' in r]
    assert [r.split(";")[0].split(">")[0] for r in extra] == ["httpx"]  # doow-otel[httpx]
    plugins = {e.value for e in metadata.distribution("doow-otel").entry_points}
    assert not [p for p in plugins if "testing" in p]
    shipped = {p.name for p in (ROOT / "src" / "doow_otel").iterdir()}
    assert not shipped & {"server", "testing.py", "testing_lambda.py", "demo.py"}


@pytest.mark.slow
def test_the_default_route_delivers_without_loading_what_it_does_not_use(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    script = f"""
import sys
from doow_otel import DoowTracker
meter = DoowTracker({local_doow.api_key!r}, endpoint={local_doow.url!r}, handle_sigterm=False)
meter.track(metric="pkg_default_route", quantity=2, license_id="lic_1")
assert meter.flush()
meter.shutdown()
unused = ("requests", "{OTLP_HTTP}", "opentelemetry.sdk._logs", "httpx", "httpcore", "certifi")
loaded = [m for m in unused if m in sys.modules]
assert not loaded, loaded
"""
    env = {**os.environ, "DOOW_SPOOL_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert local_doow.total("pkg_default_route", "lic_1") == 2


@pytest.mark.parametrize(
    ("endpoint", "verified"),
    [
        ("https://api.doow.example", True),
        ("HTTPS://api.doow.example", True),
        ("http://127.0.0.1:1", False),
    ],
)
def test_certificates_are_verified_on_every_endpoint_that_uses_tls(
    endpoint: str, verified: bool, tmp_path: Path
) -> None:
    """Over http:// no TLS context is made (loading the trust store costs a cold start)."""
    client = DoowClient("dk_test_0123456789", endpoint=endpoint, spool=tmp_path, max_retries=0)
    try:
        transport = client._transport()  # the one the send uses (even if it is abandoned)
        client.send([UsageEvent(metric="m", quantity=1, license_id="lic_1")], timeout=0.5)
        context = transport._context  # type: ignore[attr-defined]
        assert (context is not None) is verified
        if context is not None:
            assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    finally:
        client.close()
