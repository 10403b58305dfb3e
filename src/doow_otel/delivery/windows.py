"""A window's events: one per stream, every metric of the stream in it (rule W).

A window is the usage of one journal between two seals. Its routes group into streams
(license, unit, attribution); each stream becomes one event whose measurements are its
metrics' sums (docs/conversion.md, "Windows"), at the window's start. An event's id is
named by the journal, the window and the stream, so a window sealed again after a crash
(the same file, the same content) has the same ids, and Doow deduplicates it. Usage
records keep their own ids. No OpenTelemetry: the tracker's windows and a recovered
journal's are sealed alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

from doow_otel.delivery.journal import Route, WindowContent
from doow_otel.errors import BadRecord
from doow_otel.model.event import UsageEvent
from doow_otel.model.fields import MAX_INT_QUANTITY
from doow_otel.model.ids import (
    NS_WINDOW,
    encode_attributes,
    encode_int,
    encode_str,
    name_id,
)
from doow_otel.model.packing import MAX_MEASUREMENTS
from doow_otel.model.records import record_event

__all__ = ["stream_count", "window_events"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _stream(route: Route) -> tuple[str, str, str]:
    return route.license_id, route.unit or "", encode_attributes(route.attribution)


def stream_count(content: WindowContent) -> int:
    """The events the window makes (one per stream, more past 100 metrics or int64)."""
    return len({_stream(route) for route in content.sums}) + len(content.records)


def window_events(journal_id: str, content: WindowContent) -> tuple[list[UsageEvent], int]:
    """The window's events, in a fixed order (streams by their encoding, then the records
    as recorded), and the number of records that no longer make an event (dropped)."""
    start = _EPOCH + timedelta(microseconds=content.start_ns // 1000)
    streams: dict[tuple[str, str, str], dict[str, int | float]] = {}
    like: dict[tuple[str, str, str], Route] = {}  # a route of each stream: its unit, attribution
    for route, total in content.sums.items():
        key = _stream(route)
        sums = streams.setdefault(key, {})
        like.setdefault(key, route)
        sums[route.metric] = sums.get(route.metric, 0) + total  # equal maps, other key order
    events: list[UsageEvent] = []
    identity = encode_str(journal_id) + encode_int(content.window)
    for key in sorted(streams):
        license_id, unit, attribution = key
        first = like[key]
        named = identity + encode_str(license_id) + encode_str(unit) + attribution
        for part, measurements in enumerate(_chunks(streams[key])):
            (metric, quantity), *further = measurements
            events.append(
                UsageEvent.checked(
                    metric=metric,
                    quantity=quantity,
                    license_id=license_id,
                    unit=first.unit,
                    kind="USAGE",
                    occurred_at=start,
                    attribution=first.attribution,
                    metadata={},
                    source_system="sdk",
                    metric_tuple_hint=None,
                    event_id=name_id(NS_WINDOW, named, encode_int(part)),
                    further_measurements=tuple(further),
                )
            )
    dropped = 0
    for fields in content.records:
        try:
            events.append(record_event(fields, occurred_at=start))
        except BadRecord:  # checked when tracked: only a damaged journal gets here
            dropped += 1
    return events, dropped


def _chunks(sums: dict[str, int | float]) -> Iterator[list[tuple[str, int | float]]]:
    """The stream's measurements, metric by metric (UTF-8 order), into events of at most
    MAX_MEASUREMENTS, each metric once per event; a sum past int64 in parts, a part per
    event."""
    queues = [(metric, list(_int64_parts(sums[metric]))) for metric in sorted(sums, key=str.encode)]
    while any(parts for _, parts in queues):
        chunk = [(metric, parts.pop(0)) for metric, parts in queues if parts]
        for start in range(0, len(chunk), MAX_MEASUREMENTS):
            yield chunk[start : start + MAX_MEASUREMENTS]


def _int64_parts(total: int | float) -> Iterator[int | float]:
    if type(total) is not int or total <= MAX_INT_QUANTITY:
        yield total
        return
    while total > 0:
        part = min(total, MAX_INT_QUANTITY)
        yield part
        total -= part
