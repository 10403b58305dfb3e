"""The Lambda function of bench_budget.py's workloads (b) and (c), run by the in-package
Lambda emulator (`doow_otel_testing.lambda_runtime`): `DoowTracker()` as a user makes it
(configured by the environment: DOOW_TRACK_API_KEY, DOOW_TRACK_ENDPOINT, DOOW_SPOOL_DIR,
and for the extension route DOOW_ROUTE=collector, OTEL_EXPORTER_OTLP_ENDPOINT), the
handler wrapped in `with_lambda`. An event: {"license_id": ..., "track": [[metric,
quantity], ...]} (no "track": an invocation that bills nothing)."""

from __future__ import annotations

from typing import Any

from doow_otel import DoowTracker

meter = DoowTracker()


@meter.with_lambda
def handler(event: dict[str, Any], context: Any) -> dict[str, bool]:
    for metric, quantity in event.get("track", []):
        meter.track(metric=metric, quantity=quantity, license_id=event["license_id"])
    return {"ok": True}
