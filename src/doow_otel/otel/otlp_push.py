"""The collector route: a sealed window pushed as OTLP/HTTP (JSON) to a collector.

`DoowTracker(route="collector")` keeps its usage in the same journal and windows as the
direct route; a sealed window goes to an OpenTelemetry Collector with the doow exporter
(a Lambda extension on localhost, a gateway) as what the collector reads best: a delta
Sum point per metric and route (scope `doow_otel`, license in `doow.license_id`,
attribution as attributes) and a `doow.usage` log record per usage record (its id in
its body). The points are named by the window alone (the journal in the resource, the
window's start as their start and, one millisecond on, their time), so a window pushed
again after a failure or by a successor after a crash gives the collector the same
points: the same event ids, billed once. The window's file stays until the collector
answered 2xx to both pushes.

OTLP/JSON (the OTLP specification's JSON encoding, which every collector's otlp receiver
takes) on the package's own transport: no protobuf, no OTLP exporter package, the same
bytes on every OpenTelemetry SDK release.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from doow_otel._version import __version__
from doow_otel.delivery.journal import WindowContent
from doow_otel.delivery.reports import Reporter
from doow_otel.delivery.transport.base import Transport
from doow_otel.errors import TransportError
from doow_otel.otel.conversion import TRACKER_SCOPE, USAGE_EVENT_NAME

__all__ = ["DEFAULT_COLLECTOR", "CollectorSink", "collector_urls"]

logger = logging.getLogger("doow_otel")

DEFAULT_COLLECTOR = "http://localhost:4318"
_DELTA = 1  # AGGREGATION_TEMPORALITY_DELTA
_INFO = 9  # SEVERITY_NUMBER_INFO
_POINT_LENGTH_NS = 1_000_000


def collector_urls(endpoint: str | None) -> tuple[str, str]:
    """The metrics and logs URLs: `endpoint` (a base URL), else OpenTelemetry's
    OTEL_EXPORTER_OTLP_{METRICS,LOGS}_ENDPOINT (full URLs) and OTEL_EXPORTER_OTLP_ENDPOINT
    (a base URL), as OTLP/HTTP exporters read them, else http://localhost:4318."""
    env = os.environ
    if endpoint is not None:
        base = endpoint.rstrip("/")
        return f"{base}/v1/metrics", f"{base}/v1/logs"
    base = (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_COLLECTOR).rstrip("/")
    return (
        env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or f"{base}/v1/metrics",
        env.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") or f"{base}/v1/logs",
    )


class CollectorSink:
    """`WindowSink` to a collector: every sealed window goes at once (the collector paces
    Doow's budget; its gateway aggregates a fleet's usage)."""

    def __init__(
        self,
        endpoint: str | None,
        *,
        timeout: float,
        report: Reporter,
        transport: Transport | None = None,
        on_disk: bool = True,
    ) -> None:
        """`on_disk`: whether the windows it is handed are in a journal on disk (a spool
        directory), so that one it cannot push survives this process."""
        self.metrics_url, self.logs_url = collector_urls(endpoint)
        self.timeout = timeout
        self.report = report
        self.on_disk = on_disk
        self._transport = transport
        self._reported_failure = False

    def may_seal(self, events: int, deadline: float) -> bool:
        return True

    def budget(self) -> str:
        return ""

    def drain(self, deadline: float) -> bool:
        return True

    def deliver(self, journal_id: str, window: WindowContent, deadline: float) -> bool:
        resource = {"doow.journal": journal_id, **window.resource}
        pushes = []
        if window.sums:
            pushes.append((self.metrics_url, metrics_request(resource, window)))
        if window.records:
            pushes.append((self.logs_url, logs_request(resource, window)))
        for url, body in pushes:
            if not self._push(url, body, deadline):
                return False
        self._reported_failure = False
        return True

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def _push(self, url: str, body: dict[str, Any], deadline: float) -> bool:
        timeout = min(self.timeout, max(0.05, deadline - time.monotonic()))
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"doow-otel-python/{__version__}",
        }
        try:
            answer = self._transport_().post(url, data, headers, timeout)
        except TransportError as exc:
            return self._failed(url, exc.message)
        if 200 <= answer.status < 300:
            return True
        return self._failed(url, f"HTTP {answer.status}")

    def _failed(self, url: str, why: str) -> bool:
        if not self._reported_failure:  # once per outage, not per window
            self._reported_failure = True
            kept = (
                "it stays in the journal on disk and goes again with the next flush (a "
                "successor process on the same spool directory sends it if this one stops)"
                if self.on_disk
                else "it is kept in memory and goes again with the next flush (there is no "
                "spool directory: if the process ends first, it is reported as dropped)"
            )
            self.report(
                "network", f"the collector at {url} did not take a window of usage ({why}); {kept}"
            )
        return False

    def _transport_(self) -> Transport:
        if self._transport is None:
            from doow_otel.delivery.transport.http import HTTPTransport

            self._transport = HTTPTransport()
        return self._transport


def _attributes(values: Mapping[str, object]) -> list[dict[str, Any]]:
    return [{"key": key, "value": _value(value)} for key, value in values.items()]


def _value(value: object) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}  # int64 travels as a string in OTLP/JSON
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": _attributes(value)}}
    return {"stringValue": str(value)}


def _resource(resource: Mapping[str, str]) -> dict[str, Any]:
    return {"attributes": _attributes(resource)}


def metrics_request(resource: Mapping[str, str], window: WindowContent) -> dict[str, Any]:
    """The window's sums as delta Sum points, one metric per (metric, unit)."""
    start = window.start_ns
    metrics: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for route, total in window.sums.items():
        point: dict[str, Any] = {
            "attributes": _attributes({"doow.license_id": route.license_id, **route.attribution}),
            "startTimeUnixNano": str(start),
            "timeUnixNano": str(start + _POINT_LENGTH_NS),
        }
        if type(total) is int:
            point["asInt"] = str(total)
        else:
            point["asDouble"] = total
        metrics.setdefault((route.metric, route.unit or ""), []).append(point)
    return {
        "resourceMetrics": [
            {
                "resource": _resource(resource),
                "scopeMetrics": [
                    {
                        "scope": {"name": TRACKER_SCOPE, "version": __version__},
                        "metrics": [
                            {
                                "name": name,
                                "unit": unit,
                                "sum": {
                                    "aggregationTemporality": _DELTA,
                                    "isMonotonic": True,
                                    "dataPoints": points,
                                },
                            }
                            for (name, unit), points in metrics.items()
                        ],
                    }
                ],
            }
        ]
    }


def logs_request(resource: Mapping[str, str], window: WindowContent) -> dict[str, Any]:
    """The window's usage records as `doow.usage` log records, each its body."""
    at = str(window.start_ns)
    return {
        "resourceLogs": [
            {
                "resource": _resource(resource),
                "scopeLogs": [
                    {
                        "scope": {"name": TRACKER_SCOPE, "version": __version__},
                        "logRecords": [
                            {
                                "timeUnixNano": at,
                                "observedTimeUnixNano": at,
                                "severityNumber": _INFO,
                                "eventName": USAGE_EVENT_NAME,
                                "attributes": _attributes({"event.name": USAGE_EVENT_NAME}),
                                "body": _value(record),
                            }
                            for record in window.records
                        ],
                    }
                ],
            }
        ]
    }
