"""Usage records: one seed-shaped JSON object per usage event, with its own identity.

The format of a line given to `doow-otel send`, of a line the sidecar tails from a file
or reads over TCP, and of the body of a `doow.usage` log record (docs/conversion.md,
"Usage records"). One function reads them all (`record_event`); the Go exporter holds the
same rules (records.go) and tests/vectors/ keeps the two alike.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from doow_otel.events import (
    NOT_UTF8,
    AttributeValue,
    InvalidEvent,
    UsageEvent,
    attributes_problem,
    hint_problem,
    kind_problem,
    license_problem,
    metric_problem,
    not_utf8,
    quantity_problem,
    unit_problem,
)

__all__ = ["BadRecord", "idempotency_event_id", "parse_line", "record_event"]

NS_IDEMPOTENCY = uuid.UUID("9f0e5b1d-6f1c-4d7a-8b10-3c522d7a9b10")
NS_LINE = uuid.UUID("4c8e9f0e-2d7a-4b10-8c52-6f1c5b1d3c52")

FIELDS = frozenset(
    {
        "metric", "quantity", "license_id", "unit", "kind", "timestamp", "occurred_at",
        "attribution", "metadata", "source_system", "metric_tuple_hint", "event_id",
        "idempotency_key",
    }
)  # fmt: skip
HINT_KEYS = ("app_name", "license_name", "metric_name")
MAX_SOURCE_LEN = 64
MAX_KEY_LEN = 256
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|([+-])(\d{2}):(\d{2}))"
)
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


class BadRecord(InvalidEvent):
    """A record that is not a usage event; `code` is its reason code (docs/conversion.md)."""

    def __init__(self, code: str, field_name: str, problem: str) -> None:
        self.code = code
        super().__init__(field_name, problem)


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
    match = _TIME_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise BadRecord(
            "invalid_time",
            "timestamp",
            f"{str(value)[:40]!r} is not RFC 3339 with a timezone, e.g. 2026-11-24T10:15:00.123Z",
        )
    year, month, day, hour, minute, second, fraction, zone, sign, oh, om = match.groups()
    try:
        offset = timedelta(0) if zone == "Z" else timedelta(hours=int(oh), minutes=int(om))
        tz = timezone(-offset if sign == "-" else offset)
        micros = int((fraction or "0")[:6].ljust(6, "0"))
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tz
        ).astimezone(timezone.utc)
    except (ValueError, OverflowError) as exc:
        raise BadRecord("invalid_time", "timestamp", f"{value!r}: {exc}") from None
    if not EARLIEST <= moment < LATEST:
        raise BadRecord("invalid_time", "timestamp", f"{value!r} is not between 2000 and 2100")
    return moment


def idempotency_event_id(license_id: str, metric: str, key: str) -> str:
    """The id an idempotency key gives: one per (license, metric, key), from any process."""
    name = "".join(f"s{len(part.encode())}:{part}" for part in (license_id, metric, key))
    return str(uuid.uuid5(NS_IDEMPOTENCY, name))


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
    if given_id is not None and not (isinstance(given_id, str) and _UUID_RE.fullmatch(given_id)):
        raise BadRecord("invalid_field", "event_id", "must be a UUID (8-4-4-4-12 hex digits)")
    key = _optional(data, "idempotency_key")
    if key is not None and not (isinstance(key, str) and 0 < len(key) <= MAX_KEY_LEN):
        raise BadRecord(
            "invalid_field", "idempotency_key", f"must be a string of 1 to {MAX_KEY_LEN} characters"
        )
    if key is not None and not_utf8(key):
        raise BadRecord("invalid_field", "idempotency_key", NOT_UTF8)
    if given_id is not None:
        event_id = given_id.lower()
    elif key is not None:
        event_id = idempotency_event_id(license_id, metric, key)
    extra: dict[str, Any] = {} if event_id is None else {"event_id": event_id}
    return UsageEvent(
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
        **extra,
    )


def _hint(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if problem := hint_problem(value):
        raise BadRecord("invalid_field", "metric_tuple_hint", problem)
    assert isinstance(value, Mapping)
    return {key: value[key] for key in HINT_KEYS if key in value} or None
