"""Packing: one event carries every measurement of its stream (docs/conversion.md, rule P).

Doow counts events against an organization's budget (1,000 a minute), and one event may
carry several measurements. So the events of one conversion that belong to one stream
(license, unit, attribution, time) travel as one event. Only aggregates are packed (a
metric's data points): span events and usage records keep their own identity.

The packing of a set of events depends on that set alone, never on what else travels
with it, so a retry, a replay or a re-read of the same input packs alike: the same ids,
the same content. One member: the member unchanged. Two or more: an id derived from the
members' ids. tests/vectors/packing/ holds this module and the Go exporter alike.

Rule R, the other half (a 207 that rejects one measurement of a packed event), is
ingest-answer handling: `doow_otel.delivery.wire.without_measurement`.
"""

from __future__ import annotations

from collections.abc import Sequence

from doow_otel.model.event import UsageEvent
from doow_otel.model.ids import NS_PACKED, encode_attributes, encode_str, name_id
from doow_otel.model.times import format_time

__all__ = ["MAX_MEASUREMENTS", "pack", "packable"]

MAX_MEASUREMENTS = 100
"""Measurements in one event at most (Doow publishes no limit; this keeps events small)."""

_Key = tuple[str, str, str, str]


def packable(event: UsageEvent) -> bool:
    """Whether `event` may share an event with others (its origin must say so too)."""
    return (
        event.kind == "USAGE"
        and event.source_system == "sdk"
        and not event.metadata
        and not event.metric_tuple_hint
        and not event.further_measurements
    )


def pack(events: Sequence[tuple[UsageEvent, bool]]) -> list[UsageEvent]:
    """The events of one conversion, packed: each `(event, aggregate)` pair marks whether
    the event is an aggregate (a metric's data point) that may be packed."""
    members_of: dict[_Key, list[UsageEvent]] = {}
    position: dict[int, int] = {}  # id(member) -> its place in `events`
    for place, (event, aggregate) in enumerate(events):
        if aggregate and packable(event):
            members_of.setdefault(_key(event), []).append(event)
            position[id(event)] = place
    if not members_of:
        return [event for event, _ in events]
    placed: dict[int, UsageEvent | None] = {}  # id(member) -> its event there, or None
    for members in members_of.values():
        for held in _fill(members):
            earliest = min(held, key=lambda m: position[id(m)])
            packed = _packed(held)
            for member in held:
                placed[id(member)] = packed if member is earliest else None
    out: list[UsageEvent] = []
    for event, _ in events:
        if id(event) not in placed:
            out.append(event)
        elif (packed_event := placed[id(event)]) is not None:
            out.append(packed_event)
    return out


def _key(event: UsageEvent) -> _Key:
    return (
        event.license_id,
        event.unit or "",
        encode_attributes(event.attribution),
        format_time(event.occurred_at),
    )


def _fill(members: list[UsageEvent]) -> list[list[UsageEvent]]:
    """Members in (metric, id) order, each into the first event without its metric and
    with room; else a new one."""
    events: list[list[UsageEvent]] = []
    metrics: list[set[str]] = []
    for member in sorted(members, key=lambda m: (m.metric.encode(), m.event_id)):
        for held, names in zip(events, metrics, strict=True):
            if member.metric not in names and len(held) < MAX_MEASUREMENTS:
                held.append(member)
                names.add(member.metric)
                break
        else:
            events.append([member])
            metrics.append({member.metric})
    return events


def _packed(members: list[UsageEvent]) -> UsageEvent:
    if len(members) == 1:
        return members[0]
    ids = "".join(encode_str(m.event_id) for m in sorted(members, key=lambda m: m.event_id))
    measurements = sorted(((m.metric, m.quantity) for m in members), key=lambda p: p[0].encode())
    return _with_measurements(members[0], name_id(NS_PACKED, ids), measurements)


def _with_measurements(
    like: UsageEvent, event_id: str, measurements: list[tuple[str, int | float]]
) -> UsageEvent:
    (metric, quantity), *further = measurements
    return UsageEvent.checked(
        metric=metric,
        quantity=quantity,
        license_id=like.license_id,
        unit=like.unit,
        kind=like.kind,
        occurred_at=like.occurred_at,
        attribution=like.attribution,
        metadata=like.metadata,
        source_system=like.source_system,
        metric_tuple_hint=like.metric_tuple_hint,
        event_id=event_id,
        further_measurements=tuple(further),
    )
