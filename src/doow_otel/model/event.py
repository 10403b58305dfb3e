"""`UsageEvent`: the validated unit of billing.

Validation happens once, at construction, with an error that names the field and the
fix (the checks are `doow_otel.model.fields`'); attribution and metadata pass the
attribution policy. `UsageEvent.converted` is the conversion's trusted constructor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NoReturn

from doow_otel.errors import InvalidEvent
from doow_otel.model.attribution import DEFAULT_POLICY
from doow_otel.model.fields import (
    AttributeValue,
    Kind,
    attributes_problem,
    event_id_problem,
    hint_problem,
    kind_problem,
    license_problem,
    metric_problem,
    quantity_problem,
    source_problem,
    unit_problem,
)
from doow_otel.model.ids import random_id
from doow_otel.model.times import format_time, parse_time

__all__ = ["NO_VALUES", "UsageEvent"]


class _Empty(dict[str, Any]):
    """The attribution or metadata of a converted event that has none: one shared, read-only
    value (an event's mappings are never changed), so that the conversion makes one object
    per data point, not three."""

    __slots__ = ()

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("a usage event's attribution and metadata are read-only")

    __setitem__ = __delitem__ = __ior__ = _read_only
    update = setdefault = pop = popitem = clear = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        return (_empty, ())  # unpickled as the shared one


def _empty() -> _Empty:
    return NO_VALUES


NO_VALUES = _Empty()


_CHECKED = (
    "kind",
    "metric",
    "quantity",
    "license_id",
    "unit",
    "attribution",
    "metadata",
    "event_id",
    "source_system",
    "metric_tuple_hint",
)


@dataclass(frozen=True)
class UsageEvent:
    """One usage record for Doow. Invalid input raises `InvalidEvent` naming the field."""

    metric: str
    quantity: int | float
    license_id: str
    unit: str | None = None
    kind: Kind = "USAGE"
    occurred_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    attribution: Mapping[str, AttributeValue] = field(default_factory=dict)
    metadata: Mapping[str, AttributeValue] = field(default_factory=dict)
    event_id: str = field(default_factory=random_id)
    source_system: str = "sdk"
    metric_tuple_hint: Mapping[str, str] | None = None
    further_measurements: tuple[tuple[str, int | float], ...] = ()
    """A packed event's measurements after the first (`metric`, `quantity`): every metric of
    one stream in one event (doow_otel.model.packing)."""

    @property
    def measurements(self) -> tuple[tuple[str, int | float], ...]:
        """Every (metric, quantity) the event carries, the first being (metric, quantity)."""
        return ((self.metric, self.quantity), *self.further_measurements)

    def __post_init__(self) -> None:
        problems = (  # in the order of _CHECKED
            kind_problem(self.kind),
            metric_problem(self.metric),
            quantity_problem(self.quantity, self.kind),
            license_problem(self.license_id),
            unit_problem(self.unit),
            attributes_problem(self.attribution),
            attributes_problem(self.metadata),
            event_id_problem(self.event_id),
            source_problem(self.source_system),
            hint_problem(self.metric_tuple_hint),
        )
        if any(problems):
            name, problem = next((n, p) for n, p in zip(_CHECKED, problems, strict=True) if p)
            raise InvalidEvent(name, problem)
        for i, (metric, quantity) in enumerate(self.further_measurements, 1):
            trouble = metric_problem(metric) or quantity_problem(quantity, self.kind)
            if trouble:
                raise InvalidEvent(f"measurements[{i}]", trouble)
        occurred_at: object = self.occurred_at
        if isinstance(occurred_at, str):
            try:
                occurred_at = parse_time(occurred_at)
            except ValueError as exc:
                raise InvalidEvent("occurred_at", str(exc)) from None
        if not isinstance(occurred_at, datetime):
            raise InvalidEvent("occurred_at", "must be a datetime (timezone-aware) or ISO string")
        if occurred_at.tzinfo is None:
            raise InvalidEvent(
                "occurred_at",
                "is a naive datetime; pass a timezone-aware one, e.g. datetime.now(timezone.utc)",
            )
        try:
            in_utc = occurred_at.astimezone(timezone.utc)
        except OverflowError:
            raise InvalidEvent("occurred_at", f"{occurred_at} is out of range in UTC") from None
        if in_utc is not self.occurred_at:  # a str, or another timezone
            object.__setattr__(self, "occurred_at", in_utc)
        object.__setattr__(self, "attribution", DEFAULT_POLICY.clean(self.attribution))
        object.__setattr__(self, "metadata", DEFAULT_POLICY.clean(self.metadata))

    @classmethod
    def converted(
        cls,
        metric: str,
        quantity: int | float,
        license_id: str,
        unit: str | None,
        occurred_at: datetime,
        attribution: Mapping[str, AttributeValue],
        event_id: str,
    ) -> UsageEvent:
        """A USAGE event made by the conversion rules (one per data point), equal to what the
        constructor makes of the same values, at a third of its cost.

        The fields whose values the rules do not decide on their own (metric, quantity,
        license_id, attribution) get the constructor's checks, in its order, with its
        errors, and the attribution its policy. The rest is the caller's promise:
        `occurred_at` an aware datetime in UTC, `event_id` a canonical UUID, `unit` None or
        at most 64 characters (tests/otel/test_conversion_sdk.py holds every converted event
        equal to the constructor's). No attribution, and the metadata, are the shared
        read-only `NO_VALUES`: the event is one object, which keeps the garbage collector's
        work per export small.
        """
        if problem := metric_problem(metric):
            raise InvalidEvent("metric", problem)
        if problem := quantity_problem(quantity, "USAGE"):
            raise InvalidEvent("quantity", problem)
        if problem := license_problem(license_id):
            raise InvalidEvent("license_id", problem)
        if attribution and (problem := attributes_problem(attribution)):
            raise InvalidEvent("attribution", problem)
        event = object.__new__(cls)
        # Frozen: each field is set once, here, as __init__ sets it (one by one, so that the
        # values stay inline in the object, with no dict of their own). Fields at their
        # default (kind USAGE, source sdk, no hint, no unit) read the class's default, as
        # a dataclass field's default is a class attribute.
        set_field = object.__setattr__
        set_field(event, "metric", metric)
        set_field(event, "quantity", quantity)
        set_field(event, "license_id", license_id)
        if unit is not None:
            set_field(event, "unit", unit)
        set_field(event, "occurred_at", occurred_at)
        set_field(
            event, "attribution", DEFAULT_POLICY.clean(attribution) if attribution else NO_VALUES
        )
        set_field(event, "metadata", NO_VALUES)
        set_field(event, "event_id", event_id)
        return event

    @classmethod
    def checked(
        cls,
        *,
        metric: str,
        quantity: int | float,
        license_id: str,
        unit: str | None,
        kind: Kind,
        occurred_at: datetime,
        attribution: Mapping[str, AttributeValue],
        metadata: Mapping[str, AttributeValue],
        source_system: str,
        metric_tuple_hint: Mapping[str, str] | None,
        event_id: str | None,
        further_measurements: tuple[tuple[str, int | float], ...] = (),
    ) -> UsageEvent:
        """An event whose every field its maker has already checked with the checks of
        `doow_otel.model.fields` (a usage record: `doow_otel.model.records`), so that a
        record is validated once; attribution and metadata still pass the policy.
        `occurred_at` must be timezone-aware; `event_id` None makes a random one."""
        event = object.__new__(cls)
        set_field = object.__setattr__
        set_field(event, "metric", metric)
        set_field(event, "quantity", quantity)
        set_field(event, "license_id", license_id)
        set_field(event, "unit", unit)
        set_field(event, "kind", kind)
        set_field(event, "occurred_at", occurred_at.astimezone(timezone.utc))
        set_field(event, "attribution", DEFAULT_POLICY.clean(attribution))
        set_field(event, "metadata", DEFAULT_POLICY.clean(metadata))
        set_field(event, "event_id", event_id if event_id is not None else random_id())
        set_field(event, "source_system", source_system)
        set_field(event, "metric_tuple_hint", metric_tuple_hint)
        if further_measurements:
            set_field(event, "further_measurements", further_measurements)
        return event

    def to_wire(self) -> dict[str, Any]:
        """The event as Doow's ingest API takes it (`POST /telemetry/events`)."""
        wire: dict[str, Any] = {
            "event_id": self.event_id,
            "license_id": self.license_id,
            "occurred_at": format_time(self.occurred_at),
            "source_system": self.source_system,
            "kind": self.kind,
            "attribution": dict(self.attribution),
            "metadata": dict(self.metadata),
            "measurements": [
                {"metric_name": metric, "quantity": quantity}
                for metric, quantity in self.measurements
            ],
        }
        if self.unit:
            wire["unit"] = self.unit
        if self.metric_tuple_hint:
            hint = dict(self.metric_tuple_hint)
            wire["measurements"][0]["metric_tuple_hint"] = hint
            wire["metric_tuple_hint"] = hint
        return wire
