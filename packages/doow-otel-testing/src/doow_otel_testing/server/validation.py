"""What the local server rejects in an event of a batch, by the model's own field checks
(doow_otel.model.fields), so the client and the server never disagree about what is valid.
"""

from __future__ import annotations

from collections.abc import Mapping

from doow_otel.model.fields import (
    attributes_problem,
    event_id_problem,
    kind_problem,
    license_problem,
    metric_problem,
    quantity_problem,
    unit_problem,
)
from doow_otel.model.times import parse_time

__all__ = ["check_wire_event"]


def check_wire_event(event: object) -> str | None:
    """The reason Doow would reject one event of a batch, or None when it is valid."""
    if not isinstance(event, (dict, Mapping)):
        return "event must be a JSON object"
    kind = event.get("kind", "USAGE")
    checks: list[tuple[str, str | None]] = [
        ("kind", kind_problem(kind)),
        ("event_id", event_id_problem(event.get("event_id"))),
        ("license_id", license_problem(event.get("license_id"))),
        ("unit", unit_problem(event.get("unit"))),
        ("attribution", attributes_problem(event.get("attribution") or {})),
    ]
    if not isinstance(event.get("metadata") or {}, (dict, Mapping)):
        checks.append(("metadata", "must be an object"))
    source = event.get("source_system", "sdk")
    if not isinstance(source, str) or not source:
        checks.append(("source_system", "must be a non-empty string"))
    occurred_at = event.get("occurred_at")
    if not isinstance(occurred_at, str):
        checks.append(("occurred_at", "is required, ISO 8601 in UTC"))
    else:
        try:
            parse_time(occurred_at)
        except ValueError as exc:
            checks.append(("occurred_at", str(exc)))
    for name, problem in checks:
        if problem:
            return f"{name}: {problem}"
    measurements = event.get("measurements")
    if not isinstance(measurements, list) or not measurements:
        return "measurements: at least one measurement is required"
    for i, measurement in enumerate(measurements):
        if not isinstance(measurement, (dict, Mapping)):
            return f"measurements[{i}]: must be an object"
        problem = metric_problem(measurement.get("metric_name"))
        if problem:
            return f"measurements[{i}].metric_name: {problem}"
        problem = quantity_problem(measurement.get("quantity"), str(kind))
        if problem:
            return f"measurements[{i}].quantity: {problem}"
    return None
