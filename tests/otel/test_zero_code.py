"""`opentelemetry-instrument` with OTEL_*_EXPORTER=doow (issue 9, item 15): the export at
exit delivers everything, the cardinality limit is DoowTracker's, an unset
OTEL_LOGS_EXPORTER does not abort the setup, DOOW_TRACK_FLUSH_INTERVAL applies, and the
exporters share one client. Judged by what the local server stored."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from doow_otel_testing import LocalDoow
from helpers import child_env

INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"

MANY_LICENSES_APP = textwrap.dedent(
    """
    from opentelemetry import metrics, trace

    calls = metrics.get_meter("app").create_counter("api_calls")
    for i in range(3000):  # past the SDK's default cardinality limit (2000)
        calls.add(1, {"doow.license_id": f"lic_{i}"})
    with trace.get_tracer("app").start_as_current_span("work") as span:
        span.add_event("doow.usage", {"doow.metric": "pages", "doow.quantity": 4,
                                      "doow.license_id": "lic_0"})
    print("done")
    """
)


def _run(app: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "app.py"
    script.write_text(app)
    return subprocess.run(
        [str(INSTRUMENT), sys.executable, str(script)],
        env=child_env({"DOOW_SPOOL_DIR": str(tmp_path / "spool"), **env}),
        capture_output=True,
        text=True,
        timeout=120,
    )


# 3,000 licenses are 3,000 streams, one event each: three minutes of Doow's budget at once
@pytest.mark.local_doow(events_per_minute=0)
def test_the_export_at_exit_delivers_thousands_of_licenses(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    run = _run(
        MANY_LICENSES_APP,
        {
            "OTEL_METRICS_EXPORTER": "doow",
            "OTEL_TRACES_EXPORTER": "doow",
            # OTEL_LOGS_EXPORTER left unset
            "DOOW_TRACK_API_KEY": local_doow.api_key,
            "DOOW_TRACK_ENDPOINT": local_doow.url,
            # 3,000 events at once are more than Doow's budget of a minute (1,000), which
            # this test is not about: an organization with a larger one
            "DOOW_TRACK_EVENTS_PER_MINUTE": "10000",
        },
        tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "done" in run.stdout
    assert local_doow.total("api_calls") == 3000
    assert len(local_doow.usage(metric="api_calls")) == 3000
    assert local_doow.total("pages", "lic_0") == 4


def test_flush_interval_applies_and_the_exporters_share_one_client(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    app = textwrap.dedent(
        """
        import gc, json, os, time, urllib.request
        from opentelemetry import metrics

        calls = metrics.get_meter("app").create_counter("api_calls")
        calls.add(3, {"doow.license_id": "lic_a"})
        clients = [o for o in gc.get_objects() if type(o).__name__ == "DoowClient"]
        print("clients", len(clients))
        url = os.environ["DOOW_TRACK_ENDPOINT"] + "/api/usage?metric=api_calls"
        request = urllib.request.Request(
            url, headers={"Authorization": "Bearer " + os.environ["DOOW_TRACK_API_KEY"]}
        )
        end = time.monotonic() + 20
        while time.monotonic() < end:  # the periodic export, long before the exit's
            try:
                usage = json.load(urllib.request.urlopen(request, timeout=5))
            except OSError:  # the local server under load: ask again
                usage = {}
            if usage.get("usage"):
                print("exported while running")
                break
            time.sleep(0.05)
        """
    )
    run = _run(
        app,
        {
            "OTEL_METRICS_EXPORTER": "doow",
            "OTEL_TRACES_EXPORTER": "doow",
            "OTEL_LOGS_EXPORTER": "doow",
            "DOOW_TRACK_FLUSH_INTERVAL": "250",
            "DOOW_TRACK_API_KEY": local_doow.api_key,
            "DOOW_TRACK_ENDPOINT": local_doow.url,
        },
        tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "exported while running" in run.stdout, run.stdout
    assert "clients 1" in run.stdout, run.stdout
    assert local_doow.total("api_calls", "lic_a") == 3


def test_a_missing_key_does_not_abort_the_instrumented_app(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    run = _run(
        MANY_LICENSES_APP,
        {
            "OTEL_METRICS_EXPORTER": "doow",
            "OTEL_TRACES_EXPORTER": "doow",
            "DOOW_TRACK_ENDPOINT": local_doow.url,
        },
        tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "done" in run.stdout
    assert "DOOW_TRACK_API_KEY" in run.stderr
