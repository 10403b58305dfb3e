"""Usage records: one seed-shaped JSON object per usage event, with its own identity.

The format of a line given to `doow-otel send`, of a line the sidecar tails from a file
or reads over TCP, and of the body of a `doow.usage` log record (docs/conversion.md,
"Usage records"). One function reads them all (`record_event`); the Go exporter holds the
same rules (records.go) and tests/vectors/ keeps the two alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from doow_otel.errors import BadRecord
from doow_otel.model.event import UsageEvent
from doow_otel.model.fields import (
    HINT_KEYS,
    MAX_IDEMPOTENCY_KEY_LEN,
    MAX_SOURCE_LEN,
    NOT_UTF8,
    UUID_RE,
    AttributeValue,
    attributes_problem,
    hint_problem,
    kind_problem,
    license_problem,
    metric_problem,
    not_utf8,
    quantity_problem,
    unit_problem,
)
from doow_otel.model.ids import NS_IDEMPOTENCY, encode_str, name_id
from doow_otel.model.times import parse_time

__all__ = ["FIELDS", "idempotency_event_id", "parse_line", "parse_timestamp", "record_event"]

FIELDS = frozenset(
    {
        "metric", "quantity", "license_id", "unit", "kind", "timestamp", "occurred_at",
        "attribution", "metadata", "source_system", "metric_tuple_hint", "event_id",
        "idempotency_key",
    }
)  # fmt: skip


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_line(text: str) -> dict[str, Any]:
    """A line's JSON object; anything else is a `BadRecord` with the code `not_json`."""
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise BadRecord("not_json", "line", f"not JSON ({exc.msg} at column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # NaN, nesting too deep, a number too long
        raise BadRecord("not_json", "line", f"not JSON ({str(exc)[:80]})") from None
    if not isinstance(data, dict):
        raise BadRecord("not_json", "line", f"must be a JSON object, got {type(data).__name__}")
    return data


def parse_timestamp(value: object) -> datetime:
    """RFC 3339 with a timezone, between 2000 and 2100; a `BadRecord` naming the field else."""
    try:
        return parse_time(value)
    except ValueError as exc:
        raise BadRecord("invalid_time", "timestamp", str(exc)) from None


def idempotency_event_id(license_id: str, metric: str, key: str) -> str:
    """The id an idempotency key gives: one per (license, metric, key), from any process."""
    return name_id(NS_IDEMPOTENCY, encode_str(license_id), encode_str(metric), encode_str(key))


def _optional(data: Mapping[str, Any], key: str) -> Any:
    return data.get(key)  # null is absent


def _scalars(data: Mapping[str, Any], key: str) -> dict[str, AttributeValue]:
    value = _optional(data, key)
    if value is None:
        return {}
    problem = attributes_problem(value)
    if problem or not isinstance(value, Mapping):
        raise BadRecord("invalid_field", key, problem or "must be an object")
    return dict(value)


def _sorted(mapping: Mapping[str, AttributeValue]) -> dict[str, AttributeValue]:
    return {key: mapping[key] for key in sorted(mapping, key=str.encode)}


def record_event(
    data: Mapping[str, Any],
    *,
    license_id: str | None = None,
    attribution: Mapping[str, AttributeValue] | None = None,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
) -> UsageEvent:
    """The usage event of one record, or a `BadRecord` naming the field and its code.

    The keywords are what the record's context supplies when the record does not: a
    license (the log record's, the resource's, the default), attribution under the
    record's own (the resource's), a time (the log record's) and an id (its position).
    Checks run in the order of docs/conversion.md; the first that fails decides.
    """
    unknown = sorted(set(data) - FIELDS, key=str)
    if unknown:
        raise BadRecord(
            "invalid_field", str(unknown[0]), f"is not a usage event field; known: {sorted(FIELDS)}"
        )
    kind = _optional(data, "kind")
    kind = "USAGE" if kind is None else kind
    if problem := kind_problem(kind):
        raise BadRecord("invalid_kind", "kind", problem)
    metric = _optional(data, "metric")
    if metric is None:
        raise BadRecord("missing_metric", "metric", "is required")
    if problem := metric_problem(metric):
        raise BadRecord("invalid_metric_name", "metric", problem)
    quantity = _optional(data, "quantity")
    if quantity is None:
        raise BadRecord("missing_quantity", "quantity", "is required")
    if problem := quantity_problem(quantity, kind):
        raise BadRecord("invalid_quantity", "quantity", problem)
    own_license = _optional(data, "license_id")
    license_id = license_id if own_license is None else own_license
    if license_id is None:
        raise BadRecord("missing_license", "license_id", "is required")
    if problem := license_problem(license_id):
        raise BadRecord("invalid_license", "license_id", problem)
    stamp = _optional(data, "timestamp")
    if stamp is None:
        stamp = _optional(data, "occurred_at")
    moment = occurred_at if stamp is None else parse_timestamp(stamp)
    if moment is None:
        raise BadRecord("missing_time", "timestamp", "is required here (RFC 3339)")
    unit = _optional(data, "unit")
    if problem := unit_problem(unit):
        raise BadRecord("invalid_field", "unit", problem)
    source = _optional(data, "source_system")
    if source is not None and not isinstance(source, str):
        raise BadRecord("invalid_field", "source_system", "must be a string")
    if source is not None and len(source) > MAX_SOURCE_LEN:
        raise BadRecord("invalid_field", "source_system", f"at most {MAX_SOURCE_LEN} characters")
    if source is not None and not_utf8(source):
        raise BadRecord("invalid_field", "source_system", NOT_UTF8)
    hint = _hint(_optional(data, "metric_tuple_hint"))
    merged = dict(attribution or {})
    merged.update(_scalars(data, "attribution"))
    metadata = _scalars(data, "metadata")
    given_id = _optional(data, "event_id")
    if given_id is not None and not (isinstance(given_id, str) and UUID_RE.fullmatch(given_id)):
        raise BadRecord("invalid_field", "event_id", "must be a UUID (8-4-4-4-12 hex digits)")
    key = _optional(data, "idempotency_key")
    if key is not None and not (isinstance(key, str) and 0 < len(key) <= MAX_IDEMPOTENCY_KEY_LEN):
        raise BadRecord(
            "invalid_field",
            "idempotency_key",
            f"must be a string of 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters",
        )
    if key is not None and not_utf8(key):
        raise BadRecord("invalid_field", "idempotency_key", NOT_UTF8)
    if given_id is not None:
        event_id = given_id.lower()
    elif key is not None:
        event_id = idempotency_event_id(license_id, metric, key)
    return UsageEvent.checked(
        metric=metric,
        quantity=quantity,
        license_id=license_id,
        unit=unit or None,
        kind="ADJUSTMENT" if kind == "ADJUSTMENT" else "USAGE",
        occurred_at=moment,
        attribution=_sorted(merged),
        metadata=_sorted(metadata),
        source_system=source if source and source.strip() else "sdk",
        metric_tuple_hint=hint,
        event_id=event_id,
    )


def _hint(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if problem := hint_problem(value):
        raise BadRecord("invalid_field", "metric_tuple_hint", problem)
    assert isinstance(value, Mapping)
    return {key: value[key] for key in HINT_KEYS if key in value} or None
